"""Parsing, deep validation and compilation of a scoring ruleset.

A ruleset is the plugin's effective settings for one workspace (the core has
already merged ``[workspaces.W.plugins.scoring_basic]`` over
``[plugins.scoring_basic]``). It is validated once, naming the exact key path
of anything wrong (``plugins.scoring_basic.rules[3].op``), and compiled once
into plain Python closures, so scoring a million leads never re-reads TOML
tables or recompiles a regex.

The ruleset version is a short hash of the canonical JSON of everything that
changes a score, grade or stage: two workspaces with the same effective rules
share a version, and any edit gives a new one.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import math
import re
from typing import Any, Callable, Mapping

import attrs

from corecrm.errors import ConfigError
from corecrm.settings import thaw

#: Settings keys that make up a ruleset (and its version).
RULESET_KEYS: tuple[str, ...] = (
    "rules",
    "groups",
    "max_score",
    "min_score",
    "grades",
    "qualification",
    "free_mail_domains",
    "precision",
)

#: Operators on lead fields ("fit" rules).
FIT_OPS: tuple[str, ...] = (
    "equals",
    "in",
    "contains",
    "regex",
    "exists",
    "missing",
    "range",
    "date_range",
    "email_domain",
    "country",
    "region",
    "interest",
    "source",
    "campaign",
)
#: The operator for engagement rules (events in the lead's history).
EVENT_OP = "event"
ALL_OPS: tuple[str, ...] = FIT_OPS + (EVENT_OP,)

#: Keys every rule may have, and the extra keys each operator accepts.
_COMMON_KEYS = {"name", "op", "points", "group", "negate", "description"}
_OP_KEYS: dict[str, set[str]] = {
    "equals": {"field", "value", "case_sensitive"},
    "in": {"field", "values", "case_sensitive"},
    "contains": {"field", "value", "case_sensitive"},
    "regex": {"field", "pattern"},
    "exists": {"field"},
    "missing": {"field"},
    "range": {"field", "min", "max"},
    "date_range": {"field", "after", "before", "within_days", "older_than_days"},
    "email_domain": {"field", "value", "values"},
    "country": {"field", "values"},
    "region": {"field", "values"},
    "interest": {"values", "match"},
    "source": {"values"},
    "campaign": {"values"},
    "event": {"event", "where", "half_life_days", "within_days", "max_events"},
}
#: Keys each operator requires besides name/op/points.
_OP_REQUIRED: dict[str, tuple[str, ...]] = {
    "equals": ("field", "value"),
    "in": ("field", "values"),
    "contains": ("field", "value"),
    "regex": ("field", "pattern"),
    "exists": ("field",),
    "missing": ("field",),
    "range": ("field",),
    "date_range": ("field",),
    "email_domain": (),
    "country": ("values",),
    "region": ("values",),
    "interest": ("values",),
    "source": ("values",),
    "campaign": ("values",),
    "event": ("event",),
}

#: Lead fields a rule may read (``attributes.<key>[.<key>…]`` reaches industry data).
LEAD_FIELDS: frozenset[str] = frozenset(
    {
        "first_name",
        "last_name",
        "full_name",
        "email",
        "email_domain",
        "phone",
        "company",
        "title",
        "country",
        "region",
        "city",
        "postal_code",
        "source",
        "campaign",
        "language",
        "timezone",
        "interests",
        "note",
        "stage",
        "status",
        "owner",
        "team",
        "created_at",
        "updated_at",
        "assigned_at",
        "first_contact_at",
    }
)

#: Free-mail providers: an address there says nothing about an employer.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    """
    gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr yahoo.de yahoo.es yahoo.it ymail.com rocketmail.com
    hotmail.com hotmail.co.uk hotmail.fr hotmail.de hotmail.it hotmail.es outlook.com outlook.fr outlook.de live.com
    live.co.uk live.fr msn.com aol.com icloud.com me.com mac.com gmx.com gmx.de gmx.net gmx.at gmx.ch web.de
    t-online.de freenet.de mail.com email.com protonmail.com proton.me pm.me tutanota.com tuta.io zoho.com
    yandex.com yandex.ru mail.ru inbox.ru bk.ru list.ru rambler.ru qq.com 163.com 126.com sina.com
    naver.com daum.net hanmail.net orange.fr wanadoo.fr free.fr laposte.net sfr.fr libero.it virgilio.it
    tiscali.it alice.it seznam.cz wp.pl o2.pl onet.pl interia.pl btinternet.com sky.com virginmedia.com
    bigpond.com optusnet.com.au shaw.ca rogers.com sympatico.ca comcast.net verizon.net att.net sbcglobal.net
    bellsouth.net cox.net charter.net earthlink.net juno.com fastmail.com fastmail.fm hushmail.com
    rediffmail.com uol.com.br bol.com.br terra.com.br hey.com skynet.be telenet.be ziggo.nl kpnmail.nl
    home.nl planet.nl bluewin.ch sunrise.ch
    """.split()
)

#: Named country groups usable in ``country`` rules (ISO 3166-1 alpha-2 codes).
COUNTRY_GROUPS: dict[str, frozenset[str]] = {
    "EU": frozenset(
        "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
    ),
    "EEA": frozenset(
        "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO".split()
    ),
    "DACH": frozenset("DE AT CH".split()),
    "BENELUX": frozenset("BE NL LU".split()),
    "NORDICS": frozenset("DK FI IS NO SE".split()),
    "UK_IE": frozenset("GB IE".split()),
    "NORTH_AMERICA": frozenset("US CA MX".split()),
    "LATAM": frozenset("AR BO BR CL CO CR CU DO EC GT HN MX NI PA PE PR PY SV UY VE".split()),
    "ANZ": frozenset("AU NZ".split()),
    "APAC": frozenset("AU NZ CN JP KR IN SG HK TW MY TH ID PH VN".split()),
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


# --------------------------------------------------------------------------- errors


def _err(key: str, message: str) -> ConfigError:
    """One-line error naming the key path (the core adds the file name in front)."""
    return ConfigError(message, key=key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _need_number(value: Any, key: str) -> float:
    if not _is_number(value):
        raise _err(key, f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _need_str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise _err(key, f"expected a non-empty string, got {type(value).__name__} {value!r}")
    return value


def _need_str_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _err(key, f"expected a non-empty list of strings, got {type(value).__name__} {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise _err(f"{key}[{i}]", f"expected a non-empty string, got {type(item).__name__} {item!r}")
    return list(value)


def _need_field(value: Any, key: str) -> str:
    field = _need_str(value, key)
    if field.startswith("attributes.") and len(field) > len("attributes."):
        return field
    if field not in LEAD_FIELDS:
        raise _err(key, f"unknown lead field {field!r} (use a lead field such as title, country, or attributes.<key>)")
    return field


def _parse_date(value: Any, key: str) -> dt.datetime:
    """A TOML date/datetime or an ISO string, as an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _err(key, f"expected a date (YYYY-MM-DD) or date-time, got {value!r}") from None
    else:
        raise _err(key, f"expected a date (YYYY-MM-DD) or date-time, got {type(value).__name__} {value!r}")
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.astimezone(dt.timezone.utc)


# --------------------------------------------------------------------------- validation


def validate_rules(value: Any, key: str) -> list[dict[str, Any]]:
    """Deep validation of the ``rules`` list (``Setting.validate``)."""
    if not isinstance(value, list):
        raise _err(key, f"expected a list of rule tables, got {type(value).__name__}")
    seen: dict[str, int] = {}
    out = []
    for i, rule in enumerate(value):
        rkey = f"{key}[{i}]"
        out.append(validate_rule(rule, rkey))
        name = rule["name"]
        if name in seen:
            raise _err(f"{rkey}.name", f"duplicate rule name {name!r} (also rules[{seen[name]}])")
        seen[name] = i
    return out


def validate_rule(rule: Any, key: str) -> dict[str, Any]:
    if not isinstance(rule, dict):
        raise _err(key, f"expected a table with name, op and points, got {type(rule).__name__}")
    name = rule.get("name")
    if name is None:
        raise _err(f"{key}.name", "missing: every rule needs a name (it is shown in every score explanation)")
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.startswith("cap:"):
        raise _err(f"{key}.name", f"expected a name of letters, digits, '_', '-', '.', ':' (not starting with 'cap:'), got {name!r}")
    op = rule.get("op")
    if op is None:
        # An engagement rule may omit op: ``event = "email_opened"`` says it all.
        op = EVENT_OP if "event" in rule else None
    if op is None:
        raise _err(f"{key}.op", f"missing (valid: {', '.join(ALL_OPS)})")
    if op not in _OP_KEYS:
        raise _err(f"{key}.op", f"unknown operator {op!r} (valid: {', '.join(ALL_OPS)})")
    allowed = _COMMON_KEYS | _OP_KEYS[op]
    for k in rule:
        if k not in allowed:
            raise _err(f"{key}.{k}", f"unknown key for op {op!r} (valid: {', '.join(sorted(allowed))})")
    for k in _OP_REQUIRED[op]:
        if k not in rule:
            raise _err(f"{key}.{k}", f"missing: op {op!r} needs {', '.join(_OP_REQUIRED[op])}")
    if "points" not in rule:
        raise _err(f"{key}.points", "missing: every rule needs points (negative allowed)")
    _need_number(rule["points"], f"{key}.points")
    if "group" in rule:
        _need_str(rule["group"], f"{key}.group")
    for flag in ("negate", "case_sensitive"):
        if flag in rule and not isinstance(rule[flag], bool):
            raise _err(f"{key}.{flag}", f"expected true or false, got {rule[flag]!r}")
    if "description" in rule and not isinstance(rule["description"], str):
        raise _err(f"{key}.description", "expected a string")
    if "field" in rule:
        _need_field(rule["field"], f"{key}.field")

    if op == "equals":
        v = rule["value"]
        if not isinstance(v, (str, int, float, bool)):
            raise _err(f"{key}.value", f"expected a string, number or boolean, got {type(v).__name__}")
    elif op == "in":
        vals = rule["values"]
        if not isinstance(vals, list) or not vals:
            raise _err(f"{key}.values", "expected a non-empty list")
        for j, v in enumerate(vals):
            if not isinstance(v, (str, int, float, bool)):
                raise _err(f"{key}.values[{j}]", f"expected a string, number or boolean, got {type(v).__name__}")
    elif op == "contains":
        if not isinstance(rule["value"], (str, int, float)) or isinstance(rule["value"], bool):
            raise _err(f"{key}.value", f"expected a string or number, got {type(rule['value']).__name__}")
    elif op == "regex":
        pattern = _need_str(rule["pattern"], f"{key}.pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _err(f"{key}.pattern", f"invalid regular expression {pattern!r}: {exc}") from None
    elif op == "range":
        if "min" not in rule and "max" not in rule:
            raise _err(f"{key}.min", "missing: op 'range' needs min, max or both")
        lo = _need_number(rule["min"], f"{key}.min") if "min" in rule else None
        hi = _need_number(rule["max"], f"{key}.max") if "max" in rule else None
        if lo is not None and hi is not None and lo > hi:
            raise _err(f"{key}.max", f"max ({hi:g}) is below min ({lo:g})")
    elif op == "date_range":
        bounds = [k for k in ("after", "before", "within_days", "older_than_days") if k in rule]
        if not bounds:
            raise _err(f"{key}.after", "missing: op 'date_range' needs after, before, within_days or older_than_days")
        after = _parse_date(rule["after"], f"{key}.after") if "after" in rule else None
        before = _parse_date(rule["before"], f"{key}.before") if "before" in rule else None
        if after is not None and before is not None and after > before:
            raise _err(f"{key}.before", "before is earlier than after")
        for k in ("within_days", "older_than_days"):
            if k in rule and (_need_number(rule[k], f"{key}.{k}") < 0):
                raise _err(f"{key}.{k}", "expected a number of days >= 0")
    elif op == "email_domain":
        if ("value" in rule) == ("values" in rule):
            raise _err(f"{key}.value", "op 'email_domain' needs either value = \"free\" | \"company\" or values = [domains]")
        if "value" in rule and rule["value"] not in ("free", "company"):
            raise _err(f"{key}.value", f"expected \"free\" or \"company\", got {rule['value']!r}")
        if "values" in rule:
            _need_str_list(rule["values"], f"{key}.values")
    elif op == "country":
        for j, c in enumerate(_need_str_list(rule["values"], f"{key}.values")):
            cu = c.upper()
            if cu not in COUNTRY_GROUPS and not re.fullmatch(r"[A-Z]{2}", cu):
                groups = ", ".join(sorted(COUNTRY_GROUPS))
                raise _err(f"{key}.values[{j}]", f"expected an ISO 3166-1 alpha-2 code or a group ({groups}), got {c!r}")
    elif op == "region":
        for j, r in enumerate(_need_str_list(rule["values"], f"{key}.values")):
            if not re.fullmatch(r"[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?", r):
                raise _err(f"{key}.values[{j}]", f"expected an ISO 3166-2 code such as 'GB-ENG' or 'US-CA' (or a country code), got {r!r}")
    elif op == "interest":
        _need_str_list(rule["values"], f"{key}.values")
        if rule.get("match", "any") not in ("any", "all"):
            raise _err(f"{key}.match", f"expected \"any\" or \"all\", got {rule.get('match')!r}")
    elif op in ("source", "campaign"):
        _need_str_list(rule["values"], f"{key}.values")
    elif op == EVENT_OP:
        _need_str_list(rule["event"], f"{key}.event")
        if "where" in rule:
            where = rule["where"]
            if not isinstance(where, dict) or not where:
                raise _err(f"{key}.where", "expected a table of event detail keys to values")
            for wk, wv in where.items():
                if isinstance(wv, list):
                    for j, item in enumerate(wv):
                        if not isinstance(item, (str, int, float, bool)):
                            raise _err(f"{key}.where.{wk}[{j}]", "expected a string, number or boolean")
                elif not isinstance(wv, (str, int, float, bool)):
                    raise _err(f"{key}.where.{wk}", "expected a string, number, boolean or a list of them")
        if "half_life_days" in rule and _need_number(rule["half_life_days"], f"{key}.half_life_days") <= 0:
            raise _err(f"{key}.half_life_days", "expected a number of days > 0")
        if "within_days" in rule and _need_number(rule["within_days"], f"{key}.within_days") <= 0:
            raise _err(f"{key}.within_days", "expected a number of days > 0")
        if "max_events" in rule:
            m = rule["max_events"]
            if not isinstance(m, int) or isinstance(m, bool) or m < 1:
                raise _err(f"{key}.max_events", f"expected a whole number >= 1, got {m!r}")
    return rule


def validate_groups(value: Any, key: str) -> dict[str, Any]:
    """``[plugins.scoring_basic.groups.<name>]`` with ``max`` and/or ``min`` caps."""
    if not isinstance(value, dict):
        raise _err(key, "expected a table of groups")
    for name, body in value.items():
        gkey = f"{key}.{name}"
        if not isinstance(body, dict):
            raise _err(gkey, "expected a table with max and/or min")
        for k in body:
            if k not in ("max", "min", "description"):
                raise _err(f"{gkey}.{k}", "unknown key (valid: description, max, min)")
        lo = _need_number(body["min"], f"{gkey}.min") if "min" in body else None
        hi = _need_number(body["max"], f"{gkey}.max") if "max" in body else None
        if lo is not None and hi is not None and lo > hi:
            raise _err(f"{gkey}.max", f"max ({hi:g}) is below min ({lo:g})")
    return value


def validate_optional_number(value: Any, key: str) -> Any:
    if value is None:
        return None
    return _need_number(value, key)


def validate_grades(value: Any, key: str) -> dict[str, Any]:
    """``grades = { A = 80, B = 50, C = 20, D = 0 }``: the minimum score of each grade."""
    if not isinstance(value, dict):
        raise _err(key, "expected a table of grade = minimum score")
    seen: dict[float, str] = {}
    for grade, minimum in value.items():
        if not re.fullmatch(r"[A-Za-z0-9+-]{1,8}", grade):
            raise _err(f"{key}.{grade}", "grade names are 1-8 letters, digits, '+' or '-'")
        m = _need_number(minimum, f"{key}.{grade}")
        if m in seen:
            raise _err(f"{key}.{grade}", f"same minimum as grade {seen[m]!r}")
        seen[m] = grade
    return value


def validate_qualification(value: Any, key: str) -> dict[str, Any]:
    """``mql``, ``sql`` thresholds and the ``nurture_below`` floor."""
    if not isinstance(value, dict):
        raise _err(key, "expected a table with mql, sql and nurture_below")
    for k in value:
        if k not in ("mql", "sql", "nurture_below"):
            raise _err(f"{key}.{k}", "unknown key (valid: mql, nurture_below, sql)")
    nums = {k: _need_number(v, f"{key}.{k}") for k, v in value.items()}
    if "mql" in nums and "sql" in nums and nums["sql"] < nums["mql"]:
        raise _err(f"{key}.sql", f"sql threshold ({nums['sql']:g}) is below the mql threshold ({nums['mql']:g})")
    floor = nums.get("nurture_below")
    if floor is not None:
        lowest = min((nums[k] for k in ("mql", "sql") if k in nums), default=None)
        if lowest is None:
            raise _err(f"{key}.nurture_below", "needs an mql or sql threshold to fall back from")
        if floor > lowest:
            raise _err(f"{key}.nurture_below", f"floor ({floor:g}) is above the qualification threshold ({lowest:g})")
    return value


def validate_domains(value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        raise _err(key, "expected a list of domains")
    for i, d in enumerate(value):
        if not isinstance(d, str) or "." not in d or "@" in d:
            raise _err(f"{key}[{i}]", f"expected a domain such as 'example.com', got {d!r}")
    return value


def validate_precision(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
        raise _err(key, f"expected a whole number of decimals from 0 to 6, got {value!r}")
    return value


def check_cross(settings: Mapping[str, Any], prefix: str) -> None:
    """Checks that span keys (the total floor and cap)."""
    total_lo, total_hi = settings.get("min_score"), settings.get("max_score")
    if total_lo is not None and total_hi is not None and total_lo > total_hi:
        raise _err(f"{prefix}.max_score" if prefix else "max_score", f"max_score ({total_hi:g}) is below min_score ({total_lo:g})")


def validate_ruleset(settings: Mapping[str, Any], prefix: str = "plugins.scoring_basic") -> None:
    """Validate every ruleset key of a settings mapping (used by ``score diff --rules``)."""
    validators: dict[str, Callable[[Any, str], Any]] = {
        "rules": validate_rules,
        "groups": validate_groups,
        "max_score": validate_optional_number,
        "min_score": validate_optional_number,
        "grades": validate_grades,
        "qualification": validate_qualification,
        "free_mail_domains": validate_domains,
        "precision": validate_precision,
    }
    for k, v in settings.items():
        key = f"{prefix}.{k}" if prefix else k
        if k in validators:
            validators[k](v, key)
        else:
            raise _err(key, f"unknown setting (valid: {', '.join(sorted(validators))})")
    check_cross(settings, prefix)


# --------------------------------------------------------------------------- compiled form


@attrs.define(slots=True)
class FitRule:
    name: str
    points: float
    group: str | None
    #: ``(lead, now) -> reason or None``: the reason says what matched, for the explanation.
    test: Callable[[Any, dt.datetime], str | None]


def _compile_where(key: str, value: Any) -> tuple[str, frozenset[Any], re.Pattern[str] | None]:
    """An event-detail filter: exact values, plus string globs (``*/pricing*``) as one regex."""
    values = value if isinstance(value, list) else [value]
    globs = [v for v in values if isinstance(v, str) and any(ch in v for ch in "*?[")]
    rx = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
    return key, frozenset(values), rx


@attrs.define(slots=True)
class EventRule:
    name: str
    points: float
    group: str | None
    types: frozenset[str]
    where: tuple[tuple[str, frozenset[Any], re.Pattern[str] | None], ...]
    half_life_days: float | None
    within_days: float | None
    max_events: int | None


@attrs.define(slots=True)
class Ruleset:
    """A compiled ruleset: what the engine runs."""

    version: str
    fit: tuple[FitRule, ...]
    engagement: tuple[EventRule, ...]
    groups: dict[str, tuple[float | None, float | None]]  #: name -> (min, max)
    min_score: float | None
    max_score: float | None
    grades: tuple[tuple[float, str], ...]  #: (minimum, grade), highest first
    mql: float | None
    sql: float | None
    nurture_below: float | None
    precision: int
    #: Event types any engagement rule reads (lets loaders skip the rest).
    event_types: frozenset[str]

    @property
    def scale(self) -> int:
        return 10**self.precision


def ruleset_version(settings: Mapping[str, Any]) -> str:
    """A short, stable hash of the effective ruleset."""
    doc = {k: settings.get(k) for k in RULESET_KEYS}
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=_canon_default)
    return "sb1-" + hashlib.sha256(canon.encode("utf-8")).hexdigest()[:12]


def _canon_default(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, frozenset, set)):
        return list(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


def compile_ruleset(settings: Mapping[str, Any]) -> Ruleset:
    """Compile effective settings (already validated) into a :class:`Ruleset`."""
    s = {k: thaw(settings.get(k)) for k in RULESET_KEYS}
    free = FREE_MAIL_DOMAINS | frozenset(d.lower() for d in (s.get("free_mail_domains") or []))
    fit: list[FitRule] = []
    engagement: list[EventRule] = []
    for rule in s.get("rules") or []:
        op = rule.get("op") or EVENT_OP
        group = rule.get("group")
        if op == EVENT_OP:
            types = rule["event"] if isinstance(rule["event"], list) else [rule["event"]]
            where = tuple(_compile_where(k, v) for k, v in sorted((rule.get("where") or {}).items()))
            engagement.append(
                EventRule(
                    name=rule["name"],
                    points=float(rule["points"]),
                    group=group,
                    types=frozenset(types),
                    where=where,
                    half_life_days=float(rule["half_life_days"]) if "half_life_days" in rule else None,
                    within_days=float(rule["within_days"]) if "within_days" in rule else None,
                    max_events=rule.get("max_events"),
                )
            )
        else:
            test = _compile_test(op, rule, free)
            if rule.get("negate"):
                test = _negated(test, op)
            fit.append(FitRule(name=rule["name"], points=float(rule["points"]), group=group, test=test))
    groups = {
        name: (
            float(body["min"]) if "min" in body else None,
            float(body["max"]) if "max" in body else None,
        )
        for name, body in (s.get("groups") or {}).items()
    }
    grades = tuple(sorted(((float(m), g) for g, m in (s.get("grades") or {}).items()), reverse=True))
    q = s.get("qualification") or {}
    precision = s.get("precision")
    return Ruleset(
        version=ruleset_version(s),
        fit=tuple(fit),
        engagement=tuple(engagement),
        groups=groups,
        min_score=float(s["min_score"]) if s.get("min_score") is not None else None,
        max_score=float(s["max_score"]) if s.get("max_score") is not None else None,
        grades=grades,
        mql=float(q["mql"]) if "mql" in q else None,
        sql=float(q["sql"]) if "sql" in q else None,
        nurture_below=float(q["nurture_below"]) if "nurture_below" in q else None,
        precision=0 if precision is None else int(precision),
        event_types=frozenset(t for r in engagement for t in r.types),
    )


# --------------------------------------------------------------------------- operator compilers


def _reader(field: str) -> Callable[[Any], Any]:
    """A fast accessor for a lead field (``attributes.a.b`` walks nested tables)."""
    if field.startswith("attributes."):
        parts = field.split(".")[1:]

        def read_attr(lead: Any) -> Any:
            value: Any = lead.attributes
            for p in parts:
                if not isinstance(value, dict):
                    return None
                value = value.get(p)
                if value is None:
                    return None
            return value

        return read_attr
    if field in ("stage",):
        return lambda lead: getattr(lead.stage, "value", lead.stage)
    if field in ("email_domain", "full_name"):
        return lambda lead: getattr(lead, field)
    return lambda lead: getattr(lead, field, None)


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, dict, tuple, set)):
        return bool(value)
    return True


def _fold(value: Any, case_sensitive: bool) -> Any:
    if isinstance(value, str):
        v = value.strip()
        return v if case_sensitive else v.casefold()
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that lets "500" in a lead match 500 in the rules, and never True == 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(b) and isinstance(a, str):
        a = _to_number(a)
    if _is_number(a) and isinstance(b, str):
        b = _to_number(b)
    return a == b


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            f = float(value.strip().replace(",", "").replace("_", ""))
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _to_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d


def _show(value: Any) -> str:
    s = repr(value) if isinstance(value, str) else str(value)
    return s if len(s) <= 60 else s[:57] + "..."


def _negated(test: Callable[[Any, dt.datetime], str | None], op: str) -> Callable[[Any, dt.datetime], str | None]:
    def negated(lead: Any, now: dt.datetime) -> str | None:
        return None if test(lead, now) is not None else f"not {op}"

    return negated


def _compile_test(op: str, rule: Mapping[str, Any], free: frozenset[str]) -> Callable[[Any, dt.datetime], str | None]:
    field = rule.get("field")
    cs = bool(rule.get("case_sensitive", False))

    if op == "equals":
        read = _reader(field)
        want = _fold(rule["value"], cs)

        def equals(lead: Any, now: dt.datetime) -> str | None:
            v = read(lead)
            if isinstance(v, list):
                return f"{field} includes {_show(rule['value'])}" if any(_same(_fold(x, cs), want) for x in v) else None
            return f"{field} = {_show(v)}" if v is not None and _same(_fold(v, cs), want) else None

        return equals

    if op == "in":
        read = _reader(field)
        wants = [_fold(x, cs) for x in rule["values"]]
        strs = frozenset(w for w in wants if isinstance(w, str))
        others = [w for w in wants if not isinstance(w, str)]

        def is_in(lead: Any, now: dt.datetime) -> str | None:
            v = read(lead)
            items = v if isinstance(v, list) else [v]
            for x in items:
                if x is None:
                    continue
                fx = _fold(x, cs)
                if (isinstance(fx, str) and fx in strs) or any(_same(fx, w) for w in others) or (
                    not isinstance(fx, str) and any(_same(fx, w) for w in strs)
                ):
                    return f"{field} = {_show(x)} (in list)"
            return None

        return is_in

    if op == "contains":
        read = _reader(field)
        needle = rule["value"]
        fneedle = _fold(str(needle), cs)

        def contains(lead: Any, now: dt.datetime) -> str | None:
            v = read(lead)
            if v is None:
                return None
            if isinstance(v, (list, tuple, set)):
                return f"{field} includes {_show(needle)}" if any(_same(_fold(x, cs), _fold(needle, cs)) for x in v) else None
            if isinstance(v, dict):
                return f"{field} has {_show(needle)}" if needle in v else None
            return f"{field} contains {_show(needle)}" if fneedle in _fold(str(v), cs) else None

        return contains

    if op == "regex":
        read = _reader(field)
        rx = re.compile(rule["pattern"])

        def regex(lead: Any, now: dt.datetime) -> str | None:
            v = read(lead)
            if v is None:
                return None
            for x in v if isinstance(v, list) else [v]:
                m = rx.search(str(x))
                if m:
                    return f"{field} matches /{rule['pattern']}/ ({_show(m.group(0))})"
            return None

        return regex

    if op == "exists":
        read = _reader(field)
        return lambda lead, now: f"{field} is present" if _present(read(lead)) else None

    if op == "missing":
        read = _reader(field)
        return lambda lead, now: f"{field} is missing" if not _present(read(lead)) else None

    if op == "range":
        read = _reader(field)
        lo = float(rule["min"]) if "min" in rule else -math.inf
        hi = float(rule["max"]) if "max" in rule else math.inf
        span = f"{'' if lo == -math.inf else f'{lo:g} <= '}{field}{'' if hi == math.inf else f' <= {hi:g}'}"

        def in_range(lead: Any, now: dt.datetime) -> str | None:
            n = _to_number(read(lead))
            return f"{span} ({n:g})" if n is not None and lo <= n <= hi else None

        return in_range

    if op == "date_range":
        read = _reader(field)
        after = _parse_date(rule["after"], "after") if "after" in rule else None
        before = _parse_date(rule["before"], "before") if "before" in rule else None
        within = float(rule["within_days"]) if "within_days" in rule else None
        older = float(rule["older_than_days"]) if "older_than_days" in rule else None

        def in_dates(lead: Any, now: dt.datetime) -> str | None:
            d = _to_datetime(read(lead))
            if d is None:
                return None
            if after is not None and d < after:
                return None
            if before is not None and d >= before:
                return None
            age = (now - d).total_seconds() / 86400.0
            if within is not None and not (0 <= age <= within):
                return None
            if older is not None and age < older:
                return None
            return f"{field} {d.date().isoformat()} in range"

        return in_dates

    if op == "email_domain":
        read = _reader(field) if field else (lambda lead: lead.email)
        if "values" in rule:
            domains = frozenset(d.lower().lstrip("@") for d in rule["values"])

            def domain_in(lead: Any, now: dt.datetime) -> str | None:
                d = _domain(read(lead))
                if d is None:
                    return None
                if d in domains or any(d.endswith("." + x) for x in domains):
                    return f"e-mail domain {d}"
                return None

            return domain_in
        want_free = rule["value"] == "free"

        def domain_kind(lead: Any, now: dt.datetime) -> str | None:
            d = _domain(read(lead))
            if d is None:
                return None
            is_free = d in free
            if is_free == want_free:
                return f"free-mail domain {d}" if is_free else f"company domain {d}"
            return None

        return domain_kind

    if op == "country":
        read = _reader(field or "country")
        codes: set[str] = set()
        for c in rule["values"]:
            codes |= COUNTRY_GROUPS.get(c.upper(), {c.upper()})
        label = ", ".join(rule["values"])

        def country(lead: Any, now: dt.datetime) -> str | None:
            v = read(lead)
            return f"country {v} in [{label}]" if isinstance(v, str) and v.strip().upper() in codes else None

        return country

    if op == "region":
        read = _reader(field or "region")
        exact = frozenset(r.upper() for r in rule["values"] if "-" in r)
        whole = frozenset(r.upper() for r in rule["values"] if "-" not in r)

        def region(lead: Any, now: dt.datetime) -> str | None:
            v = read(lead)
            if not isinstance(v, str) or not v.strip():
                return None
            r = v.strip().upper()
            if r in exact or r.split("-", 1)[0] in whole:
                return f"region {r}"
            return None

        return region

    if op == "interest":
        wanted = [w.strip().casefold() for w in rule["values"]]
        need_all = rule.get("match", "any") == "all"

        def interest(lead: Any, now: dt.datetime) -> str | None:
            tags = {str(t).strip().casefold() for t in (lead.interests or [])}
            hits = [w for w in wanted if w in tags]
            if hits and (not need_all or len(hits) == len(wanted)):
                return f"interested in {', '.join(hits)}"
            return None

        return interest

    if op in ("source", "campaign"):
        patterns = [p.strip().casefold() for p in rule["values"]]
        plain = frozenset(p for p in patterns if not any(ch in p for ch in "*?["))
        globs = [p for p in patterns if p not in plain]
        # All globs as one compiled regex: fnmatch per value would re-translate every call.
        glob_rx = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None

        def attribution(lead: Any, now: dt.datetime) -> str | None:
            v = getattr(lead, op)
            if not v:
                return None
            fv = v.strip().casefold()
            if fv in plain or (glob_rx is not None and glob_rx.match(fv)):
                return f"{op} {v!r}"
            return None

        return attribution

    raise AssertionError(f"no compiler for op {op!r}")  # validate_rule rejects unknown ops first


def _domain(email: Any) -> str | None:
    if not isinstance(email, str) or "@" not in email:
        return None
    d = email.rsplit("@", 1)[1].strip().lower().rstrip(".")
    return d or None


__all__ = [
    "ALL_OPS",
    "COUNTRY_GROUPS",
    "EVENT_OP",
    "FIT_OPS",
    "FREE_MAIL_DOMAINS",
    "EventRule",
    "FitRule",
    "Ruleset",
    "compile_ruleset",
    "ruleset_version",
    "validate_rule",
    "validate_rules",
    "validate_ruleset",
]



# --------------------------------------------------------------------------- warnings (valid but questionable)


def ruleset_warnings(settings: Mapping[str, Any], prefix: str) -> list[str]:
    """What ``corecrm config check`` should point out: unreachable grades and thresholds, idle rules and groups."""
    s = {k: thaw(settings.get(k)) for k in RULESET_KEYS}
    rules = s.get("rules") or []
    groups = s.get("groups") or {}
    out: list[str] = []
    used_groups = {r.get("group") for r in rules if r.get("group")}
    for i, r in enumerate(rules):
        if r.get("points") == 0:
            out.append(f"{prefix}.rules[{i}].points: rule {r.get('name')!r} gives 0 points and never changes a score")
    for g in groups:
        if g not in used_groups:
            out.append(f"{prefix}.groups.{g}: no rule is in this group, its caps never apply")
    # The highest score this ruleset can reach (unbounded when engagement rules may repeat).
    ceiling: float | None = s.get("max_score")
    if not any((r.get("op") or EVENT_OP) == EVENT_OP and r.get("points", 0) > 0 for r in rules):
        by_group: dict[str | None, float] = {}
        for r in rules:
            if r.get("points", 0) > 0:
                by_group[r.get("group")] = by_group.get(r.get("group"), 0.0) + r["points"]
        total = 0.0
        for g, pts in by_group.items():
            cap = (groups.get(g) or {}).get("max") if g is not None else None
            total += min(pts, cap) if cap is not None else pts
        ceiling = total if ceiling is None else min(ceiling, total)
    if ceiling is not None and rules:
        for grade, minimum in (s.get("grades") or {}).items():
            if minimum > ceiling:
                out.append(f"{prefix}.grades.{grade}: minimum {minimum:g} is above the highest reachable score {ceiling:g}")
        for k in ("mql", "sql"):
            v = (s.get("qualification") or {}).get(k)
            if v is not None and v > ceiling:
                out.append(f"{prefix}.qualification.{k}: threshold {v:g} is above the highest reachable score {ceiling:g}")
    return out
