"""The scoring engine: a compiled :class:`~.rules.Ruleset` applied to leads.

Every point is accounted for. Points are counted in whole *units* of
``10 ** -precision`` (precision 0, the default, means whole points), so a
lead's score is the exact sum of its contributions: a cap never rescales
other rules' points, it adds a visible ``cap:<group>`` (or ``cap:total``)
contribution that takes the excess away and says why. With whole points the
float sum of the contributions equals the score bit for bit; with decimals
it equals it once rounded to ``precision`` places (the units sum exactly).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from corecrm.lifecycle import Stage, can_move

from .rules import Ruleset

#: Stages a qualification threshold may promote from; later stages are sales' business.
_PROMOTABLE = frozenset({Stage.PROSPECT, Stage.LEAD, Stage.MQL, Stage.NURTURING})
#: Stages that fall back to nurturing when the score decays below the floor.
_DEMOTABLE = frozenset({Stage.MQL, Stage.SQL})


class Hit(NamedTuple):
    """One contribution before it becomes a ``ScoreContribution`` record."""

    rule: str
    units: int
    reason: str
    group: str | None


def to_units(points: float, scale: int) -> int:
    """Round half away from zero to whole units (``round`` would round half to even)."""
    x = points * scale
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def fmt(units: int, scale: int) -> str:
    """Units as a human number: 12, -3, 4.5."""
    if scale == 1:
        return str(units)
    return f"{units / scale:g}"


def _age_days(now: dt.datetime, at: dt.datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (now - at).total_seconds() / 86400.0)


def _detail_matches(detail: Mapping[str, Any] | None, where: tuple[tuple[str, frozenset[Any], Any], ...]) -> bool:
    if not where:
        return True
    if not detail:
        return False
    for key, allowed, rx in where:
        value = detail.get(key)
        try:
            if value in allowed:
                continue
        except TypeError:  # an unhashable detail value (list, dict) matches no filter
            return False
        if rx is None or not isinstance(value, str) or not rx.match(value):
            return False
    return True


class Engine:
    """Scores, grades and qualifies leads with one compiled ruleset."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.rs = ruleset
        self.scale = ruleset.scale
        self._fit = [(r.name, to_units(r.points, self.scale), r.group, r.test) for r in ruleset.fit]
        self._caps = {
            g: (
                None if lo is None else to_units(lo, self.scale),
                None if hi is None else to_units(hi, self.scale),
            )
            for g, (lo, hi) in ruleset.groups.items()
        }
        self._min = None if ruleset.min_score is None else to_units(ruleset.min_score, self.scale)
        self._max = None if ruleset.max_score is None else to_units(ruleset.max_score, self.scale)

    # ------------------------------------------------------------------ scoring
    def hits(self, lead: Any, events: Sequence[Any], now: dt.datetime) -> list[Hit]:
        """Every contribution this ruleset gives ``lead``, caps included; they sum to the score."""
        out: list[Hit] = []
        for name, units, group, test in self._fit:
            reason = test(lead, now)
            if reason is not None and units:
                out.append(Hit(name, units, reason, group))
        if self.rs.engagement and events:
            out.extend(self._engagement(events, now))
        if self._caps:
            out = self._apply_group_caps(out)
        if self._min is not None or self._max is not None:
            total = sum(h.units for h in out)
            if self._max is not None and total > self._max:
                out.append(Hit("cap:total", self._max - total, f"total capped at {fmt(self._max, self.scale)} (uncapped {fmt(total, self.scale)})", None))
            elif self._min is not None and total < self._min:
                out.append(Hit("cap:total", self._min - total, f"total floored at {fmt(self._min, self.scale)} (uncapped {fmt(total, self.scale)})", None))
        return out

    def _engagement(self, events: Sequence[Any], now: dt.datetime) -> list[Hit]:
        wanted = self.rs.event_types
        relevant = [e for e in events if e.type in wanted]
        if not relevant:
            return []
        relevant.sort(key=lambda e: e.at, reverse=True)  # newest first: max_events keeps the recent ones
        out: list[Hit] = []
        for rule in self.rs.engagement:
            weight = 0.0
            count = 0
            for ev in relevant:
                if ev.type not in rule.types or not _detail_matches(ev.detail, rule.where):
                    continue
                age = _age_days(now, ev.at)
                if rule.within_days is not None and age > rule.within_days:
                    continue
                weight += 0.5 ** (age / rule.half_life_days) if rule.half_life_days else 1.0
                count += 1
                if rule.max_events is not None and count >= rule.max_events:
                    break
            if not count:
                continue
            units = to_units(rule.points * weight, self.scale)
            if not units:
                continue
            what = "/".join(sorted(rule.types))
            reason = f"{count} × {what} at {rule.points:g} each"
            if rule.half_life_days:
                reason += f", decayed to {fmt(units, self.scale)} (half-life {rule.half_life_days:g} d)"
            out.append(Hit(rule.name, units, reason, rule.group))
        return out

    def _apply_group_caps(self, hits: list[Hit]) -> list[Hit]:
        totals: dict[str, int] = {}
        for h in hits:
            if h.group is not None and h.group in self._caps:
                totals[h.group] = totals.get(h.group, 0) + h.units
        for group, total in totals.items():
            lo, hi = self._caps[group]
            if hi is not None and total > hi:
                hits.append(Hit(f"cap:{group}", hi - total, f"group {group} capped at {fmt(hi, self.scale)} (uncapped {fmt(total, self.scale)})", group))
            elif lo is not None and total < lo:
                hits.append(Hit(f"cap:{group}", lo - total, f"group {group} floored at {fmt(lo, self.scale)} (uncapped {fmt(total, self.scale)})", group))
        return hits

    def score(self, lead: Any, events: Sequence[Any], now: dt.datetime) -> tuple[float, list[Hit]]:
        hits = self.hits(lead, events, now)
        return sum(h.units for h in hits) / self.scale, hits

    def points(self, hit: Hit) -> float:
        return hit.units / self.scale if self.scale != 1 else float(hit.units)

    # ------------------------------------------------------------------ grading and qualification
    def grade(self, score: float | None) -> tuple[str | None, str]:
        """The grade for a score: the highest grade whose minimum it reaches (else the lowest grade)."""
        if score is None or not self.rs.grades:
            return None, ""
        for minimum, grade in self.rs.grades:
            if score >= minimum:
                return grade, f"score {score:g} >= {minimum:g}"
        minimum, grade = self.rs.grades[-1]
        return grade, f"score {score:g} below every grade minimum (lowest grade)"

    def stage(self, current: Stage | str, score: float | None) -> tuple[Stage | None, str]:
        """The stage a score asks for (``None``: stay), only ever a valid lifecycle move."""
        if score is None:
            return None, ""
        cur = current if isinstance(current, Stage) else Stage(str(current))
        rs = self.rs
        target: Stage | None = None
        reason = ""
        if cur in _PROMOTABLE:
            if rs.sql is not None and score >= rs.sql and cur != Stage.SQL:
                target, reason = Stage.SQL, f"score {score:g} >= sales-qualified threshold {rs.sql:g}"
            elif rs.mql is not None and score >= rs.mql and cur not in (Stage.MQL, Stage.SQL):
                target, reason = Stage.MQL, f"score {score:g} >= marketing-qualified threshold {rs.mql:g}"
        if target is None and cur in _DEMOTABLE and rs.nurture_below is not None and score < rs.nurture_below:
            target, reason = Stage.NURTURING, f"score {score:g} fell below the nurturing floor {rs.nurture_below:g}"
        if target is None or target == cur or not can_move(cur, target):
            return None, ""
        return target, reason


def sum_exact(points: Iterable[float], precision: int) -> float:
    """The score the contributions add up to, in the units the engine counts in."""
    scale = 10**precision
    return sum(to_units(p, scale) for p in points) / scale
