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


def _reader(field: str) -> Callable[[Any], str]:
    """A fast accessor for one field: ``getattr`` for lead fields, ``lead.get`` for ``attributes.*``."""
    if field.startswith("attributes."):
        return lambda lead: _text(lead, field)

    def read(lead: Any) -> str:
        v = getattr(lead, field, None)
        if v is None:
            return ""
        return v if isinstance(v, str) else str(v)

    return read


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
    swapped_slots: tuple[int, ...]  #: ``slots`` with first and last name exchanged (for the other lead)
    sim_ids: tuple[int, ...]


class Matcher:
    """Blocking keys and rule evaluation for one :class:`MatchConfig`."""

    def __init__(self, config: MatchConfig) -> None:
        self.config = config
        slot_of: dict[tuple[str, str], int] = {}
        self._slots: list[tuple[Callable[[Any], str], Callable[[str], str]]] = []
        #: Fields the rules read (what a stored lead must be loaded with).
        self.fields: set[str] = set()

        def slot(field: str, norm: str) -> int:
            k = (field, norm)
            if k not in slot_of:
                slot_of[k] = len(self._slots)
                self._slots.append((_reader(field), _NORMALISERS[norm]))
                self.fields.add(field)
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
            swapped = list(slots)
            if swap is not None:
                swapped[swap[0]], swapped[swap[1]] = slots[swap[1]], slots[swap[0]]
            self._rules.append(_CompiledRule(rule, slots, sims, swap, tuple(swapped), tuple(id(f) for f in sims)))
        self._keys = [(k.name + ":", [(_NORMALISERS[fn], _reader(field)) for fn, field in k.parts]) for k in config.keys]
        for k in config.keys:
            self.fields.update(field for _, field in k.parts)

    # ------------------------------------------------------------------ blocking
    def keys(self, lead: Any) -> list[str]:
        """The lead's blocking keys, ``"<key name>:<value>"``; a key with an empty part is left out."""
        out = []
        for name, parts in self._keys:
            vals = []
            for fn, read in parts:
                raw = read(lead)
                v = fn(raw) if raw else ""
                if not v:
                    break
                vals.append(v)
            else:
                out.append(name + "|".join(vals))
        return out

    # ------------------------------------------------------------------ scoring
    def prepare(self, lead: Any) -> tuple[str, ...]:
        """The lead's compared fields, normalised once (``""`` = blank)."""
        out = []
        for read, fn in self._slots:
            raw = read(lead)
            out.append(fn(raw) if raw else "")
        return tuple(out)

    def compare(self, a: Sequence[str], b: Sequence[str]) -> Outcome | None:
        """The best holding rule for a pair of prepared leads, or ``None`` when no rule holds.

        Similarities are computed once per pair and field (rules share
        fields), a rule stops as soon as it can no longer hold, and the
        reasons are written for the deciding rule only.
        """
        memo: dict[tuple[int, int, int], float] = {}
        best: tuple[int, float, _CompiledRule, bool] | None = None
        for cr in self._rules:
            swapped = False
            score = self._eval(cr, a, b, False, memo)
            if score is None and cr.swap is not None:
                score = self._eval(cr, a, b, True, memo)
                swapped = True
            if score is None:
                continue
            rule = cr.rule
            if score < rule.flag_at:
                continue
            merge = 1 if rule.merge_at is not None and score >= rule.merge_at else 0
            if best is None or (merge, score) > best[:2]:
                best = (merge, score, cr, swapped)
        if best is None:
            return None
        merge, score, cr, swapped = best
        return Outcome(cr.rule.name, round(score, 4), "merge" if merge else "flag", self._reasons(cr, a, b, swapped, memo))

    @staticmethod
    def _pair_slots(cr: _CompiledRule, swapped: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return cr.slots, (cr.swapped_slots if swapped else cr.slots)

    def _eval(self, cr: _CompiledRule, a: Sequence[str], b: Sequence[str], swapped: bool, memo: dict[tuple[int, int, int], float]) -> float | None:
        rule = cr.rule
        fields = rule.fields
        sa_ = cr.slots
        sb_ = cr.swapped_slots if swapped else sa_
        sims, ids = cr.sims, cr.sim_ids
        need = rule.require
        passed = 0
        total = 0.0
        compared = 0
        left = len(fields)
        for n in range(len(fields)):
            left -= 1
            f = fields[n]
            va, vb = a[sa_[n]], b[sb_[n]]
            if not va or not vb:
                if f.required or passed + left < need:
                    return None
                continue
            key = (sa_[n], sb_[n], ids[n])
            s = memo.get(key)
            if s is None:
                s = memo[key] = sims[n](va, vb)
            compared += 1
            total += s
            if s >= f.min:
                passed += 1
            elif f.required or passed + left < need:
                return None
        if passed < need:
            return None
        return total / compared if compared else 0.0

    def _reasons(self, cr: _CompiledRule, a: Sequence[str], b: Sequence[str], swapped: bool, memo: dict[tuple[int, int, int], float]) -> list[str]:
        sa_, sb_ = self._pair_slots(cr, swapped)
        out = []
        for n, f in enumerate(cr.rule.fields):
            s = memo.get((sa_[n], sb_[n], cr.sim_ids[n]))
            if s is not None and s >= f.min:
                out.append(f"{f.field} {f.compare} {s:.2f}")
        if swapped:
            out.append("first and last name transposed")
        return out


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
