"""Territory rules: an ordered list, first match wins, a default queue when none does.

A rule is pure data (TOML) compiled once into a list of predicates. Every
criterion works on normalised values: countries as ISO 3166-1 alpha-2
(aliases such as "UK" or "England" resolved), regions as ISO 3166-2 with
their ancestors (a rule for ``GB-ENG`` matches a lead in ``GB-KHL``), postal
codes without spaces, interests and sources case-insensitively.

Rules are compiled into a per-country index (rules that could match a lead
from that country, in their order) so that 50 territories cost a few
predicate calls per lead, not 50.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import attrs

from corecrm.models import Lead
from corecrm_plugins.routing_geo import geo
from corecrm_plugins.routing_geo.model import Directory, err

RULE_KEYS = (
    "name", "country", "not_country", "region", "postal_prefix", "postal_pattern", "postal_range",
    "interests", "interests_all", "source", "min_score", "max_score", "grade", "language", "where",
    "team", "queue", "strategy", "sla_minutes", "enabled",
)
OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "regex", "exists", "missing")


@attrs.define(slots=True)
class Condition:
    """A generic ``where`` test on any lead field or ``attributes.<key>``."""

    field: str
    op: str
    value: Any = None

    def test(self, lead: Lead) -> bool:
        v = lead.get(self.field)
        op = self.op
        if op == "exists":
            return v not in (None, "", [], {})
        if op == "missing":
            return v in (None, "", [], {})
        if v is None:
            return op in ("ne", "not_in")
        if isinstance(v, str):
            v_cmp: Any = v.lower()
        else:
            v_cmp = v
        target = self.value
        if op == "eq":
            return v_cmp == (target.lower() if isinstance(target, str) else target)
        if op == "ne":
            return v_cmp != (target.lower() if isinstance(target, str) else target)
        if op in ("in", "not_in"):
            if isinstance(v, list):
                hit = any((x.lower() if isinstance(x, str) else x) in target for x in v)
            else:
                hit = v_cmp in target
            return hit if op == "in" else not hit
        if op == "contains":
            if isinstance(v, list):
                return any(isinstance(x, str) and x.lower() == target for x in v)
            return isinstance(v, str) and target in v_cmp
        if op == "regex":
            return isinstance(v, str) and target.search(v) is not None
        try:
            num = float(v)
        except (TypeError, ValueError):
            return False
        return {"gt": num > target, "gte": num >= target, "lt": num < target, "lte": num <= target}[op]


@attrs.define(slots=True)
class Rule:
    name: str
    index: int
    team: str | None = None
    queue: str | None = None
    countries: frozenset[str] | None = None
    not_countries: frozenset[str] = frozenset()
    regions: frozenset[str] | None = None
    postal_prefixes: tuple[str, ...] = ()
    postal_patterns: tuple[re.Pattern[str], ...] = ()
    postal_ranges: tuple[tuple[int, int], ...] = ()
    interests: frozenset[str] = frozenset()
    interests_all: frozenset[str] = frozenset()
    sources: frozenset[str] | None = None
    min_score: float | None = None
    max_score: float | None = None
    grades: frozenset[str] | None = None
    languages: frozenset[str] | None = None
    where: tuple[Condition, ...] = ()
    strategy: str | None = None
    sla_minutes: float | None = None
    raw: dict[str, Any] = attrs.field(factory=dict)

    @property
    def target(self) -> str:
        return (self.team or self.queue)  # type: ignore[return-value]

    def has_postal(self) -> bool:
        return bool(self.postal_prefixes or self.postal_patterns or self.postal_ranges)


def _lower_set(value: Any, key: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise err(key, f"expected a non-empty list of strings, got {value!r}")
    out = set()
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v.strip():
            raise err(f"{key}[{i}]", f"expected a non-empty string, got {v!r}")
        out.add(v.strip().lower())
    return frozenset(out)


def _countries(value: Any, key: str, aliases: tuple[tuple[str, str], ...]) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise err(key, f"expected a list of countries, got {value!r}")
    out = set()
    for i, v in enumerate(value):
        code = geo.country_code(v, aliases) if isinstance(v, str) else None
        if code is None:
            raise err(f"{key}[{i}]", f"unknown country {v!r} (use ISO 3166-1 codes such as 'GB', or a name pycountry knows)")
        out.add(code)
    return frozenset(out)


def parse_rule(item: Any, index: int, key: str, aliases: tuple[tuple[str, str], ...] = ()) -> Rule:
    if not isinstance(item, Mapping):
        raise err(key, f"expected a table describing a rule, got {item!r}")
    for k in item:
        if k not in RULE_KEYS:
            raise err(f"{key}.{k}", f"unknown rule key (valid: {', '.join(sorted(RULE_KEYS))})")
    name = item.get("name", f"rule{index + 1}")
    if not isinstance(name, str) or not name.strip():
        raise err(f"{key}.name", f"expected a non-empty string, got {name!r}")
    r = Rule(name=name.strip(), index=index, raw=dict(item))
    has_team, has_queue = "team" in item, "queue" in item
    if has_team == has_queue:
        raise err(key, "a rule targets exactly one of 'team' or 'queue'")
    tgt = item["team"] if has_team else item["queue"]
    if not isinstance(tgt, str) or not tgt.strip():
        raise err(f"{key}.{'team' if has_team else 'queue'}", f"expected a team or queue name, got {tgt!r}")
    if has_team:
        r.team = tgt.strip()
    else:
        r.queue = tgt.strip()
    if "country" in item:
        r.countries = _countries(item["country"], f"{key}.country", aliases)
    if "not_country" in item:
        r.not_countries = _countries(item["not_country"], f"{key}.not_country", aliases)
    if "region" in item:
        vals = [item["region"]] if isinstance(item["region"], str) else item["region"]
        if not isinstance(vals, list) or not vals:
            raise err(f"{key}.region", "expected a list of ISO 3166-2 codes such as 'GB-ENG'")
        regions = set()
        for i, v in enumerate(vals):
            code = v.strip().upper() if isinstance(v, str) else None
            if code is None or not geo.is_subdivision(code):
                raise err(f"{key}.region[{i}]", f"unknown ISO 3166-2 subdivision {v!r} (e.g. 'GB-ENG', 'US-CA', 'DE-BY')")
            regions.add(code)
        r.regions = frozenset(regions)
    if "postal_prefix" in item:
        r.postal_prefixes = tuple(sorted({geo.postal_key(p) or "" for p in _lower_set(item["postal_prefix"], f"{key}.postal_prefix")} - {""}))
    if "postal_pattern" in item:
        pats = []
        vals = [item["postal_pattern"]] if isinstance(item["postal_pattern"], str) else item["postal_pattern"]
        if not isinstance(vals, list) or not vals:
            raise err(f"{key}.postal_pattern", "expected a regular expression or a list of them")
        for i, p in enumerate(vals):
            try:
                pats.append(re.compile(p, re.IGNORECASE))
            except (re.error, TypeError) as exc:
                raise err(f"{key}.postal_pattern[{i}]", f"invalid regular expression {p!r}: {exc}") from None
        r.postal_patterns = tuple(pats)
    if "postal_range" in item:
        vals = [item["postal_range"]] if isinstance(item["postal_range"], str) else item["postal_range"]
        if not isinstance(vals, list) or not vals:
            raise err(f"{key}.postal_range", "expected ranges such as '90000-96199'")
        ranges = []
        for i, v in enumerate(vals):
            m = re.match(r"^\s*(\d+)\s*-\s*(\d+)\s*$", v) if isinstance(v, str) else None
            if not m or int(m.group(1)) > int(m.group(2)):
                raise err(f"{key}.postal_range[{i}]", f"expected a numeric range 'LOW-HIGH', got {v!r}")
            ranges.append((int(m.group(1)), int(m.group(2))))
        r.postal_ranges = tuple(ranges)
    if "interests" in item:
        r.interests = _lower_set(item["interests"], f"{key}.interests")
    if "interests_all" in item:
        r.interests_all = _lower_set(item["interests_all"], f"{key}.interests_all")
    if "source" in item:
        r.sources = _lower_set(item["source"], f"{key}.source")
    for k in ("min_score", "max_score", "sla_minutes"):
        if k in item:
            v = item[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise err(f"{key}.{k}", f"expected a number, got {v!r}")
            setattr(r, k, float(v))
    if "grade" in item:
        r.grades = frozenset(g.upper() for g in _lower_set(item["grade"], f"{key}.grade"))
    if "language" in item:
        r.languages = _lower_set(item["language"], f"{key}.language")
    if "strategy" in item:
        from corecrm_plugins.routing_geo.model import STRATEGIES

        if item["strategy"] not in STRATEGIES:
            raise err(f"{key}.strategy", f"unknown strategy {item['strategy']!r} (valid: {', '.join(STRATEGIES)})")
        r.strategy = item["strategy"]
    if "enabled" in item and not isinstance(item["enabled"], bool):
        raise err(f"{key}.enabled", "expected true or false")
    if "where" in item:
        r.where = tuple(_parse_where(item["where"], f"{key}.where"))
    return r


def _parse_where(value: Any, key: str) -> list[Condition]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise err(key, "expected a list of {field, op, value} tables")
    out = []
    for i, c in enumerate(value):
        k = f"{key}[{i}]"
        if not isinstance(c, Mapping):
            raise err(k, "expected a table {field = ..., op = ..., value = ...}")
        for ck in c:
            if ck not in ("field", "op", "value"):
                raise err(f"{k}.{ck}", "unknown key (valid: field, op, value)")
        fld = c.get("field")
        if not isinstance(fld, str) or not fld:
            raise err(f"{k}.field", "expected a lead field or 'attributes.<key>'")
        if not fld.startswith("attributes.") and fld not in Lead.__attrs_attrs__.__dict__ and fld not in {a.name for a in Lead.__attrs_attrs__}:
            raise err(f"{k}.field", f"unknown lead field {fld!r} (use 'attributes.<key>' for industry data)")
        op = c.get("op", "eq")
        if op not in OPS:
            raise err(f"{k}.op", f"unknown operator {op!r} (valid: {', '.join(OPS)})")
        val = c.get("value")
        if op in ("exists", "missing"):
            val = None
        elif "value" not in c:
            raise err(f"{k}.value", f"operator {op!r} needs a value")
        elif op in ("in", "not_in"):
            if not isinstance(val, list):
                raise err(f"{k}.value", f"operator {op!r} needs a list")
            val = frozenset(v.lower() if isinstance(v, str) else v for v in val)
        elif op in ("gt", "gte", "lt", "lte"):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise err(f"{k}.value", f"operator {op!r} needs a number, got {val!r}")
            val = float(val)
        elif op == "regex":
            try:
                val = re.compile(val)
            except (re.error, TypeError) as exc:
                raise err(f"{k}.value", f"invalid regular expression {val!r}: {exc}") from None
        elif op == "contains":
            if not isinstance(val, str):
                raise err(f"{k}.value", "operator 'contains' needs a string")
            val = val.lower()
        out.append(Condition(fld, op, val))
    return out


# --------------------------------------------------------------------------- normalised lead view


@attrs.define(slots=True)
class LeadGeo:
    """The normalised values rules test, computed once per lead."""

    country: str | None
    regions: frozenset[str]
    postal: str | None
    interests: frozenset[str]
    source: str | None
    language: str | None


def lead_geo(lead: Lead, aliases: tuple[tuple[str, str], ...] = ()) -> LeadGeo:
    country = geo.country_code(lead.country, aliases) if lead.country else None
    region = geo.region_code(lead.region, country) if lead.region else None
    if region is None and lead.country:
        region = geo.country_from_alias_region(lead.country)  # "England" as a country
    if country is None and region:
        country = region.split("-", 1)[0]
    regions = geo.region_ancestors(region) if region else frozenset()
    interests = frozenset(str(i).strip().lower() for i in (lead.interests or ()) if i)
    lang = lead.language.split("-")[0].split("_")[0].lower() if lead.language else None
    return LeadGeo(
        country=country,
        regions=regions,
        postal=geo.postal_key(lead.postal_code),
        interests=interests,
        source=lead.source.strip().lower() if lead.source else None,
        language=lang,
    )


def explain_miss(rule: Rule, lead: Lead, g: LeadGeo) -> str | None:
    """Why ``rule`` does not match (``None`` when it matches). Used for explanations and tests."""
    if rule.countries is not None and g.country not in rule.countries:
        return f"country {g.country or 'unknown'} not in {sorted(rule.countries)}"
    if g.country in rule.not_countries:
        return f"country {g.country} excluded"
    if rule.regions is not None and not (g.regions & rule.regions):
        return f"region {lead.region or 'unknown'} not in {sorted(rule.regions)}"
    if rule.has_postal():
        p = g.postal
        ok = False
        if p:
            ok = any(p.startswith(x) for x in rule.postal_prefixes) or any(x.search(p) for x in rule.postal_patterns)
            if not ok and rule.postal_ranges:
                digits = re.match(r"\d+", p)
                if digits:
                    n = int(digits.group(0)[:5]) if len(digits.group(0)) >= 5 else int(digits.group(0))
                    ok = any(lo <= n <= hi for lo, hi in rule.postal_ranges)
        if not ok:
            return f"postal code {lead.postal_code or 'unknown'} outside the rule's postal areas"
    if rule.interests and not (g.interests & rule.interests):
        return f"interests {sorted(g.interests)} share none of {sorted(rule.interests)}"
    if rule.interests_all and not rule.interests_all <= g.interests:
        return f"interests {sorted(g.interests)} lack {sorted(rule.interests_all - g.interests)}"
    if rule.sources is not None and g.source not in rule.sources:
        return f"source {g.source or 'unknown'} not in {sorted(rule.sources)}"
    if rule.min_score is not None and (lead.score is None or lead.score < rule.min_score):
        return f"score {lead.score} below {rule.min_score:g}"
    if rule.max_score is not None and (lead.score is None or lead.score > rule.max_score):
        return f"score {lead.score} above {rule.max_score:g}"
    if rule.grades is not None and (lead.grade or "").upper() not in rule.grades:
        return f"grade {lead.grade or 'none'} not in {sorted(rule.grades)}"
    if rule.languages is not None and g.language not in rule.languages:
        return f"language {g.language or 'unknown'} not in {sorted(rule.languages)}"
    for c in rule.where:
        if not c.test(lead):
            return f"{c.field} {c.op} {c.value if not isinstance(c.value, (frozenset, re.Pattern)) else getattr(c.value, 'pattern', sorted(map(str, c.value)))} is false"
    return None


#: Distinct lead keys remembered by :meth:`Ruleset.decide` before the cache starts over.
DECISION_CACHE_SIZE = 10_000


def decision_key(lead: Lead) -> tuple[Any, ...] | None:
    """Every lead field that rule matching and its explanation read (``where`` aside).

    ``None`` (do not cache) for values that are not plain strings: ``1``, ``1.0`` and ``True`` are
    equal keys but print differently in an explanation.
    """
    score = lead.score
    interests = tuple(lead.interests) if lead.interests else ()
    key = (lead.country, lead.region, lead.postal_code, lead.source, lead.language, lead.grade, *interests)
    for v in key:
        if v is not None and type(v) is not str:
            return None
    if score is not None and type(score) is not int and type(score) is not float:
        return None
    return (len(interests), type(score), score, *key)


class Decision:
    """The rule a lead matches, its normalised values and why earlier rules missed (shared, read-only)."""

    __slots__ = ("rule", "g", "earlier", "prefix")

    def __init__(self, rule: Rule | None, g: LeadGeo, earlier: list[dict[str, str]] | None) -> None:
        self.rule, self.g, self.earlier = rule, g, earlier
        #: (directory, explanation fields that depend only on the rule) filled in by the router
        self.prefix: tuple[Any, dict[str, Any]] | None = None


class Ruleset:
    """The ordered rules and the default queue, with a per-country index."""

    def __init__(self, rules: Sequence[Rule], default_queue: str, aliases: tuple[tuple[str, str], ...] = ()) -> None:
        self.rules = list(rules)
        self.default_queue = default_queue
        self.aliases = aliases
        self._by_country: dict[str | None, list[Rule]] = {}
        #: lead key → :class:`Decision`; only when no rule has ``where`` conditions (those may read any field)
        self._decisions: dict[tuple[Any, ...], Decision] | None = None if any(r.where for r in self.rules) else {}

    def _candidates(self, country: str | None) -> list[Rule]:
        hit = self._by_country.get(country)
        if hit is None:
            hit = [
                r for r in self.rules
                if (r.countries is None or country in r.countries)
                and country not in r.not_countries
                and (r.regions is None or country is None or any(x.startswith(country + "-") for x in r.regions))
            ]
            self._by_country[country] = hit
        return hit

    def match(self, lead: Lead, g: LeadGeo | None = None) -> tuple[Rule | None, LeadGeo]:
        g = g or lead_geo(lead, self.aliases)
        for rule in self._candidates(g.country):
            if explain_miss(rule, lead, g) is None:
                return rule, g
        return None, g

    def decide(self, lead: Lead) -> Decision:
        """:meth:`match` and :meth:`misses` for ``lead``, shared by every lead with the same routing fields.

        Matching reads only the fields in :func:`decision_key`, so leads that agree on them match the
        same rule for the same reasons: the first such lead pays, the others reuse its (read-only)
        result. Rulesets with ``where`` conditions, which may read any field, are not cached.
        """
        cache = self._decisions
        key = decision_key(lead) if cache is not None else None
        if key is not None:
            hit = cache.get(key)  # type: ignore[union-attr]
            if hit is not None:
                return hit
        rule, g = self.match(lead)
        d = Decision(rule, g, self.misses(lead, g, rule) if rule is not None and rule.index else None)
        if key is not None:
            if len(cache) >= DECISION_CACHE_SIZE:  # type: ignore[arg-type]
                cache.clear()  # type: ignore[union-attr]
            cache[key] = d  # type: ignore[index]
        return d

    def misses(self, lead: Lead, g: LeadGeo, upto: Rule | None) -> list[dict[str, str]]:
        """Why each earlier rule that could apply to the lead's country did not match (for ``corecrm explain``).

        Rules for other countries are summarised in one entry rather than listed.
        """
        out = []
        considered = 0
        for rule in self._candidates(g.country):
            if upto is not None and rule.index >= upto.index:
                break
            considered += 1
            why = explain_miss(rule, lead, g)
            if why:
                out.append({"rule": rule.name, "why": why})
        before = upto.index if upto is not None else len(self.rules)
        others = before - considered
        if others > 0:
            out.append({"rule": f"{others} other rule(s)", "why": f"for other countries than {g.country or 'unknown'}"})
        return out


def parse_rules(value: Any, prefix: str, aliases: tuple[tuple[str, str], ...] = ()) -> list[Rule]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise err(prefix, "expected a list of rule tables ([[plugins.routing_geo.rules]])")
    out: list[Rule] = []
    names: dict[str, int] = {}
    for i, item in enumerate(value):
        r = parse_rule(item, i, f"{prefix}[{i}]", aliases)
        r.raw["_pos"] = i
        if r.name in names:
            raise err(f"{prefix}[{i}].name", f"rule name {r.name!r} already used by rules[{names[r.name]}]")
        names[r.name] = i
        if item.get("enabled", True):
            out.append(r)
    for j, r in enumerate(out):
        r.index = j
    return out


def check_targets(rules: Sequence[Rule], directory: Directory, default_queue: str, prefix: str) -> None:
    for r in rules:
        tgt = r.target
        pos = r.raw.get("_pos", r.index)
        if tgt not in directory.teams and tgt != default_queue:
            kind = "team" if r.team else "queue"
            raise err(f"{prefix}[{pos}].{kind}", f"unknown {kind} {tgt!r} (declared: {', '.join(sorted(directory.teams)) or 'none'})")
        if r.team and directory.teams[r.team].is_queue:
            raise err(f"{prefix}[{pos}].team", f"{r.team!r} is a queue: write queue = {r.team!r}")


# --------------------------------------------------------------------------- shadowing


def _covers_set(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    """Does criterion ``a`` (earlier rule) accept everything ``b`` (later rule) accepts?"""
    if a is None:
        return True
    if b is None:
        return False
    return b <= a


def shadowed_by(earlier: Rule, later: Rule) -> bool:
    """True when every lead ``later`` matches is already taken by ``earlier`` (a sound, conservative check)."""
    if earlier.where and not all(c in later.where for c in earlier.where):
        return False
    if not _covers_set(earlier.countries, later.countries):
        # a later rule limited to regions of the earlier rule's countries is still covered
        if not (earlier.countries is not None and later.countries is None and later.regions is not None
                and all(x.split("-", 1)[0] in earlier.countries for x in later.regions)):
            return False
    if earlier.not_countries and not (later.countries is not None and not (later.countries & earlier.not_countries)):
        return False
    if earlier.regions is not None:
        if later.regions is None:
            return False
        if not all(geo.region_ancestors(x) & earlier.regions for x in later.regions):
            return False
    if earlier.has_postal():
        if not later.has_postal() or later.postal_patterns or later.postal_ranges or earlier.postal_patterns or earlier.postal_ranges:
            if (earlier.postal_prefixes, earlier.postal_patterns, earlier.postal_ranges) != (later.postal_prefixes, later.postal_patterns, later.postal_ranges):
                return False
        elif not all(any(lp.startswith(ep) for ep in earlier.postal_prefixes) for lp in later.postal_prefixes):
            return False
    if earlier.interests:
        # every lead of the later rule must carry one of the earlier rule's interests
        if not ((later.interests and later.interests <= earlier.interests) or (later.interests_all & earlier.interests)):
            return False
    if earlier.interests_all and not earlier.interests_all <= later.interests_all:
        return False
    if not _covers_set(earlier.sources, later.sources):
        return False
    if not _covers_set(earlier.grades, later.grades):
        return False
    if not _covers_set(earlier.languages, later.languages):
        return False
    if earlier.min_score is not None and (later.min_score is None or later.min_score < earlier.min_score):
        return False
    if earlier.max_score is not None and (later.max_score is None or later.max_score > earlier.max_score):
        return False
    return True


def shadow_warnings(rules: Sequence[Rule], prefix: str) -> list[tuple[str, str]]:
    """``(key, message)`` for each rule that can never match because an earlier one takes all its leads."""
    out = []
    for j, later in enumerate(rules):
        for earlier in rules[:j]:
            if shadowed_by(earlier, later):
                out.append((
                    f"{prefix}[{later.raw.get('_pos', later.index)}]",
                    f"rule {later.name!r} is shadowed by earlier rule {earlier.name!r}: every lead it matches goes to {earlier.target!r} first",
                ))
                break
    return out


__all__ = ["Decision", "Rule", "Ruleset", "decision_key", "explain_miss", "lead_geo", "parse_rules", "shadow_warnings"]
