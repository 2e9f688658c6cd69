"""Blocking and scoring: which pairs of leads are compared, and what a comparison says.

The engine works on :class:`corecrm.models.Lead` objects and knows nothing of
the database, so capture, import, ``dedup scan`` and the FEBRL accuracy test
all run the very same code.

* :meth:`Matcher.keys` gives a lead's blocking keys (``"email:ann@x.com"``).
* :meth:`Matcher.prepare` normalises once the fields the rules compare.
* :meth:`Matcher.compare` evaluates every rule on a prepared pair; the best
  holding rule gives the score, the action and the reasons.
* :func:`candidate_pairs` unions the blocks of a set of records (never all
  pairs); blocks larger than ``max_block_size`` are skipped and counted, since
  a key shared by thousands of leads identifies nobody.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler, Levenshtein

from corecrm_plugins.dedup import normalise as nz
from corecrm_plugins.dedup.rules import COMPARATORS, MatchConfig, Rule

_NORMALISERS: dict[str, Callable[[str], str]] = {
    "value": lambda v: v.strip(),
    "fold": nz.fold,
    "email_key": nz.email_key,
    "email_domain": nz.email_domain,
    "business_domain": nz.business_domain,
    "phone_key": nz.phone_key,
    "company_key": nz.company_key,
    "metaphone": nz.metaphone,
    "postal": nz.postal,
    "initial": nz.initial,
    "digits": nz.digits,
    "prefix2": lambda v: nz.postal(v)[:2],
    "prefix3": lambda v: nz.postal(v)[:3],
    "prefix4": lambda v: nz.postal(v)[:4],
}


def _text(lead: Any, field: str) -> str:
    v = lead.get(field)
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)


def _sim_name(a: str, b: str) -> float:
    if a == b:
        return 1.0
    s = JaroWinkler.normalized_similarity(a, b)
    if s >= 0.85:
        return s
    # An initial matches the name it abbreviates ("j" ~ "john"); the same sound counts too.
    if (len(a) == 1 or len(b) == 1) and a[0] == b[0]:
        return 0.9
    if nz.metaphone(a) == nz.metaphone(b):
        return max(s, 0.9)
    return s


def _sim_phone(a: str, b: str) -> float:
    if a == b:
        return 1.0
    da, db = a.lstrip("+"), b.lstrip("+")
    # "+44 20 7946 0958" and "020 7946 0958": the same subscriber number without the prefix.
    if min(len(da), len(db)) >= 9 and da[-9:] == db[-9:]:
        return 1.0
    return 0.0


_SIMILARITY: dict[str, Callable[[str, str], float]] = {
    "exact": lambda a, b: 1.0 if a == b else 0.0,
    "email": lambda a, b: 1.0 if a == b else 0.0,
    "phone": _sim_phone,
    "name": _sim_name,
    "jaro_winkler": lambda a, b: JaroWinkler.normalized_similarity(a, b),
    "ratio": lambda a, b: Levenshtein.normalized_similarity(a, b),
    "token_set": lambda a, b: fuzz.token_set_ratio(a, b) / 100.0,
    "company": lambda a, b: 1.0 if a == b else fuzz.token_set_ratio(a, b) / 100.0,
    "postal": lambda a, b: 1.0 if a == b else 0.0,
    "date": lambda a, b: 1.0 if a == b else (0.9 if sorted(a) == sorted(b) and Levenshtein.distance(a, b) <= 2 else 0.0),
}


class Outcome(NamedTuple):
    """What comparing two leads said: the rule that decided, its score and action, and why."""

    rule: str
    score: float
    action: str  #: merge | flag
    reasons: list[str]


class _CompiledRule(NamedTuple):
    rule: Rule
    slots: tuple[int, ...]
    sims: tuple[Callable[[str, str], float], ...]
    swap: tuple[int, int] | None  #: slot positions in ``slots`` of first/last name, when they may be transposed


class Matcher:
    """Blocking keys and rule evaluation for one :class:`MatchConfig`."""

    def __init__(self, config: MatchConfig) -> None:
        self.config = config
        slot_of: dict[tuple[str, str], int] = {}
        self._slots: list[tuple[str, Callable[[str], str]]] = []

        def slot(field: str, norm: str) -> int:
            k = (field, norm)
            if k not in slot_of:
                slot_of[k] = len(self._slots)
                self._slots.append((field, _NORMALISERS[norm]))
            return slot_of[k]

        self._rules: list[_CompiledRule] = []
        for rule in config.rules:
            slots = tuple(slot(f.field, COMPARATORS[f.compare][0]) for f in rule.fields)
            sims = tuple(_SIMILARITY[f.compare] for f in rule.fields)
            swap = None
            names = {f.field: n for n, f in enumerate(rule.fields)}
            if rule.swap_names and "first_name" in names and "last_name" in names:
                fi, la = names["first_name"], names["last_name"]
                if rule.fields[fi].compare == rule.fields[la].compare:
                    swap = (fi, la)
            self._rules.append(_CompiledRule(rule, slots, sims, swap))
        self._keys = [(k.name, [(_NORMALISERS[fn], field) for fn, field in k.parts]) for k in config.keys]

    # ------------------------------------------------------------------ blocking
    def keys(self, lead: Any) -> list[str]:
        """The lead's blocking keys, ``"<key name>:<value>"``; a key with an empty part is left out."""
        out = []
        for name, parts in self._keys:
            vals = []
            for fn, field in parts:
                raw = _text(lead, field)
                v = fn(raw) if raw else ""
                if not v:
                    break
                vals.append(v)
            else:
                out.append(f"{name}:{'|'.join(vals)}")
        return out

    # ------------------------------------------------------------------ scoring
    def prepare(self, lead: Any) -> tuple[str, ...]:
        """The lead's compared fields, normalised once (``""`` = blank)."""
        out = []
        for field, fn in self._slots:
            raw = _text(lead, field)
            out.append(fn(raw) if raw else "")
        return tuple(out)

    def compare(self, a: Sequence[str], b: Sequence[str]) -> Outcome | None:
        """The best holding rule for a pair of prepared leads, or ``None`` when no rule holds."""
        best: tuple[int, float, Outcome] | None = None
        for cr in self._rules:
            res = self._eval(cr, a, b, swapped=False)
            if res is None and cr.swap is not None:
                res = self._eval(cr, a, b, swapped=True)
            if res is None:
                continue
            score, reasons = res
            rule = cr.rule
            if score < rule.flag_at:
                continue
            action = "merge" if rule.merge_at is not None and score >= rule.merge_at else "flag"
            rank = (1 if action == "merge" else 0, score)
            if best is None or rank > best[:2]:
                best = (rank[0], score, Outcome(rule.name, round(score, 4), action, reasons))
        return best[2] if best is not None else None

    @staticmethod
    def _eval(cr: _CompiledRule, a: Sequence[str], b: Sequence[str], swapped: bool) -> tuple[float, list[str]] | None:
        rule = cr.rule
        passed = 0
        total = 0.0
        compared = 0
        reasons = []
        slots = list(cr.slots)
        if swapped and cr.swap is not None:
            fi, la = cr.swap
            bslots = list(slots)
            bslots[fi], bslots[la] = slots[la], slots[fi]
        else:
            bslots = slots
        for n, f in enumerate(rule.fields):
            va, vb = a[slots[n]], b[bslots[n]]
            if not va or not vb:
                if f.required:
                    return None
                continue
            s = cr.sims[n](va, vb)
            compared += 1
            total += s
            if s >= f.min:
                passed += 1
                reasons.append(f"{f.field} {f.compare} {s:.2f}")
            elif f.required:
                return None
        if passed < rule.require:
            return None
        if swapped:
            reasons.append("first and last name transposed")
        return (total / compared if compared else 0.0), reasons


class PairStats(NamedTuple):
    pairs: set[tuple[int, int]]
    skipped_blocks: int  #: blocks over ``max_block_size``
    largest_block: int


def candidate_pairs(keys_of: Iterable[Sequence[str]], max_block_size: int) -> PairStats:
    """Pairs ``(i, j)``, ``i < j``, of records that share at least one blocking key."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, keys in enumerate(keys_of):
        for k in keys:
            blocks[k].append(i)
    pairs: set[tuple[int, int]] = set()
    skipped = 0
    largest = 0
    for members in blocks.values():
        n = len(members)
        if n < 2:
            continue
        if n > max_block_size:
            skipped += 1
            continue
        largest = max(largest, n)
        for x in range(n):
            mx = members[x]
            for y in range(x + 1, n):
                pairs.add((mx, members[y]))
    return PairStats(pairs, skipped, largest)


def match_records(matcher: Matcher, records: Sequence[Any]) -> tuple[list[tuple[int, int, Outcome]], PairStats]:
    """Every pair of ``records`` that a rule says is a duplicate (blocking first)."""
    stats = candidate_pairs((matcher.keys(r) for r in records), matcher.config.max_block_size)
    prepared = [matcher.prepare(r) for r in records]
    out = []
    for i, j in sorted(stats.pairs):
        o = matcher.compare(prepared[i], prepared[j])
        if o is not None:
            out.append((i, j, o))
    return out, stats
