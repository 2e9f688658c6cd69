"""Member selection: strategies, availability and capacity, for a whole batch at once.

The router is pure: it is given the rules, the directory (members, teams,
queues), the clock and a :class:`Snapshot` of the state it needs from the
database (rotation positions, open leads and today's new leads per member,
owners for sticky leads), read in a few set-based queries before the batch.
It updates the snapshot in memory as it assigns, so the tenth lead of a batch
sees the capacity the first nine used.

Fair rotation is start-time fair queueing: each (team, member) has a *pass*
(when its next turn starts); the available member whose turn starts first,
``max(pass, team clock)``, wins, and its pass moves on by ``1/weight``. Equal weights give plain round robin (after N leads every member's
count differs by at most one); weights give proportional shares; a member
back from holiday rejoins at the team clock instead of catching up on every
lead they missed. Ties are broken by a hash of team, member and clock, never
by list order, so the oldest member is not favoured (Odoo's bug).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Sequence

import attrs

from corecrm.models import Lead
from corecrm.records import Assignment
from corecrm_plugins.routing_geo.model import Directory, Member, Team
from corecrm_plugins.routing_geo.rules import Decision, Rule, Ruleset

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@attrs.define(slots=True)
class Snapshot:
    """The database state one batch needs, loaded in a few queries (see ``store.load_snapshot``)."""

    #: (team, member) → rotation pass; missing: never assigned in that team.
    passes: dict[tuple[str, str], float] = attrs.field(factory=dict)
    #: team → rotation clock (the start tag of the last turn).
    clocks: dict[str, float] = attrs.field(factory=dict)
    #: member → open leads owned now.
    open_load: dict[str, int] = attrs.field(factory=dict)
    #: member → leads assigned since the start of the member's local day.
    new_today: dict[str, int] = attrs.field(factory=dict)
    #: lead index → (owner, why) for sticky ownership.
    sticky: dict[int, tuple[str, str]] = attrs.field(factory=dict)
    #: (team, member) → turns given during this batch (explanations, tests).
    turns: dict[tuple[str, str], int] = attrs.field(factory=dict)


def availability(member: Member, now: dt.datetime, respect_hours: bool) -> str | None:
    """Why ``member`` cannot take a lead at ``now`` (``None``: available). Capacity is checked separately."""
    if not member.active:
        return "inactive"
    for a in member.away:
        if a.start <= now < a.end:
            note = f" ({a.note})" if a.note else ""
            return f"away until {a.end.isoformat()}{note}"
    if respect_hours and member.hours:
        local = now.astimezone(member.tz())
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if not any(w.day == day and w.start <= minute < w.end for w in member.hours):
            return (
                f"outside working hours ({_DAY_NAMES[day]} {local:%H:%M} {member.timezone}; "
                f"hours {', '.join(member.hours_text)})"
            )
    return None


def capacity(m: Member, snapshot: Snapshot, batch_new: dict[str, int]) -> str | None:
    """Why ``m`` has no room for another lead (``None``: room), counting this batch's assignments."""
    extra = batch_new.get(m.id, 0)
    if m.max_open is not None:
        open_now = snapshot.open_load.get(m.id, 0) + extra
        if open_now >= m.max_open:
            return f"at capacity ({open_now}/{m.max_open} open leads)"
    if m.max_new_per_day is not None:
        today = snapshot.new_today.get(m.id, 0) + extra
        if today >= m.max_new_per_day:
            return f"daily limit reached ({today}/{m.max_new_per_day} new leads today)"
    return None


class _Availability(dict):  # type: ignore[type-arg]
    """Member → why unavailable (or ``None``), computed on first use: a batch of one looks at one team, not everybody."""

    def __init__(self, members: dict[str, Member], now: dt.datetime, respect_hours: bool) -> None:
        super().__init__()
        self.members, self.now, self.respect_hours = members, now, respect_hours
        #: candidate entries shared by the batch's explanations (same member, load and reason)
        self.shared: dict[tuple[Any, ...], dict[str, Any]] = {}

    def __missing__(self, mid: str) -> str | None:
        m = self.members.get(mid)
        value = availability(m, self.now, self.respect_hours) if m is not None else "unknown member"
        self[mid] = value
        return value

    def get(self, mid: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[mid] if mid in self.members else default


_hash = hashlib.blake2b


def _tie(team: str, member: str, clock: float, key: str) -> str:
    return hashlib.blake2b(f"{team}|{member}|{clock:.9f}|{key}".encode(), digest_size=8).hexdigest()


class Router:
    """Routes a batch of leads; see the module docstring for the algorithm."""

    def __init__(
        self,
        ruleset: Ruleset,
        directory: Directory,
        *,
        respect_working_hours: bool = True,
        sticky_scope: str = "team",
    ) -> None:
        self.ruleset = ruleset
        self.directory = directory
        self.respect_hours = respect_working_hours
        self.sticky_scope = sticky_scope
        self._crit: dict[int, dict[str, Any]] = {}

    def _criteria(self, rule: Rule) -> dict[str, Any]:
        hit = self._crit.get(rule.index)
        if hit is None:
            hit = self._crit[rule.index] = _criteria(rule)
        return dict(hit)

    # ------------------------------------------------------------------ batch
    def route(self, leads: Sequence[Lead], now: dt.datetime, snapshot: Snapshot, *, skip_owned: bool = True) -> list[Assignment]:
        avail = _Availability(self.directory.members, now, self.respect_hours)
        batch_new: dict[str, int] = {}
        out: list[Assignment] = []
        decide = self.ruleset.decide
        for i, lead in enumerate(leads):
            if skip_owned and lead.owner:
                continue
            d = decide(lead)
            if d.rule is None:
                g = d.g
                q = self.ruleset.default_queue
                expl: dict[str, Any] = {
                    "rule": None,
                    "rules_checked": len(self.ruleset.rules),
                    "target": {"queue": q},
                    "normalised": {"country": g.country, "regions": sorted(g.regions), "postal": g.postal},
                }
                out.append(Assignment(index=i, owner=None, team=q, queue=q, rule=None,
                                      reason=f"no rule matched; waits in default queue {q}", explanation=expl))
                continue
            out.append(self._route_one(i, lead, d, snapshot, avail, batch_new))
        return out

    def select(self, team: Team, lead: Lead, index: int, now: dt.datetime, snapshot: Snapshot,
               *, exclude: Sequence[str] = (), strategy: str | None = None,
               avail: dict[str, str | None] | None = None, batch_new: dict[str, int] | None = None) -> tuple[str | None, dict[str, Any]]:
        """Pick a member of ``team`` for ``lead`` (used by intake routing and by the SLA sweep)."""
        if avail is None:
            avail = _Availability(self.directory.members, now, self.respect_hours)
        if batch_new is None:
            batch_new = {}
        return self._select(team, lead, index, strategy or team.strategy, snapshot, avail, batch_new, exclude)

    # ------------------------------------------------------------------ one lead
    def _prefix(self, d: Decision) -> dict[str, Any]:
        """The explanation fields that depend only on the rule and the lead's routing fields, built once per decision."""
        hit = d.prefix
        if hit is not None and hit[0] is self.directory:
            return hit[1]
        rule, g = d.rule, d.g
        assert rule is not None
        expl: dict[str, Any] = {
            "rule": {"name": rule.name, "position": rule.index + 1, "criteria": self._criteria(rule)},
            "normalised": {"country": g.country, "regions": sorted(g.regions), "postal": g.postal,
                           "interests": sorted(g.interests)},
        }
        if rule.index:
            expl["earlier_rules"] = d.earlier
        team = self.directory.teams.get(rule.target)
        if team is None:
            expl["target"] = {"queue": rule.target}
        else:
            expl["target"] = {"team": team.name, "mode": team.mode}
            sla = rule.sla_minutes if rule.sla_minutes is not None else team.sla_minutes
            if sla is not None:
                expl["sla_minutes"] = sla
        d.prefix = (self.directory, expl)
        return expl

    def _route_one(self, i: int, lead: Lead, d: Decision, snapshot: Snapshot,
                   avail: dict[str, str | None], batch_new: dict[str, int]) -> Assignment:
        rule = d.rule
        assert rule is not None
        team = self.directory.teams.get(rule.target)
        # a fresh top-level dict per lead; the nested rule/normalised/earlier_rules parts are shared, read-only
        expl = dict(self._prefix(d))
        if team is None:  # the default queue named by a rule
            q = rule.target
            return Assignment(index=i, team=q, queue=q, rule=rule.name,
                              reason=f"rule {rule.name} → queue {q}", explanation=expl)
        if team.is_queue or team.mode == "pull":
            what = "queue" if team.is_queue else "pull team"
            return Assignment(index=i, team=team.name, queue=team.name, rule=rule.name,
                              reason=f"rule {rule.name} → {what} {team.name}; waits to be claimed", explanation=expl)
        strategy = rule.strategy or team.strategy
        owner, sel = self._select(team, lead, i, strategy, snapshot, avail, batch_new, ())
        expl.update(sel)
        if owner is None:
            return Assignment(index=i, team=team.name, queue=team.name, rule=rule.name,
                              reason=f"rule {rule.name} → team {team.name}; nobody available ({sel['summary']}), waits in the team queue",
                              explanation=expl)
        return Assignment(index=i, owner=owner, team=team.name, rule=rule.name,
                          reason=f"rule {rule.name} → team {team.name}; {sel['choice']}", explanation=expl)

    def _select(self, team: Team, lead: Lead, index: int, strategy: str, snapshot: Snapshot,
                avail: dict[str, str | None], batch_new: dict[str, int], exclude: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
        members = self.directory.members
        open_load = snapshot.open_load
        new_today = snapshot.new_today
        inline_capacity = type(self)._capacity is Router._capacity  # a subclass may redefine capacity
        candidates: list[dict[str, Any]] = []
        ok: list[str] = []
        skipped: list[str] = []
        loads: dict[str, int] = {}
        cand_of: dict[str, dict[str, Any]] = {}
        shared: dict[tuple[Any, ...], dict[str, Any]] | None = getattr(avail, "shared", None)
        lang = None
        speakers: set[str] = set()
        if team.match_language and lead.language:
            lang = lead.language.split("-")[0].split("_")[0].lower() or None
            if lang:
                speakers = {m for m in team.members if lang in members[m].languages}
        for mid in team.members:
            m = members[mid]
            extra = batch_new.get(mid, 0)
            load = open_load.get(mid, 0) + extra
            loads[mid] = load
            why = "excluded (SLA lapsed with this member)" if mid in exclude else avail[mid]
            if why is None:
                if inline_capacity:  # capacity() with this lead's numbers, without a call per member
                    if m.max_open is not None and load >= m.max_open:
                        why = f"at capacity ({load}/{m.max_open} open leads)"
                    elif m.max_new_per_day is not None:
                        today = new_today.get(mid, 0) + extra
                        if today >= m.max_new_per_day:
                            why = f"daily limit reached ({today}/{m.max_new_per_day} new leads today)"
                else:
                    why = self._capacity(m, snapshot, batch_new)
            if why is None and speakers and mid not in speakers:
                why = f"does not speak {lang}"
            if why:
                if shared is None:
                    candidates.append({"member": mid, "open": load, "skipped": why})
                else:  # the same member, load and reason: one read-only entry for the whole batch
                    c = shared.get((mid, load, why))
                    if c is None:
                        c = shared[(mid, load, why)] = {"member": mid, "open": load, "skipped": why}
                    candidates.append(c)
                skipped.append(f"{mid} {why}")
            else:
                if shared is None:
                    c = {"member": mid, "open": load, "why": f"available ({load} open)"}
                else:
                    c = shared.get((mid, load))
                    if c is None:
                        c = shared[(mid, load)] = {"member": mid, "open": load, "why": f"available ({load} open)"}
                cand_of[mid] = c
                candidates.append(c)
                ok.append(mid)
        expl: dict[str, Any] = {"strategy": strategy, "candidates": candidates}
        if lang and not speakers:
            expl["language"] = f"no member speaks {lang}; language ignored"
        expl["summary"] = "; ".join(skipped) or "all available"

        # sticky ownership first
        if team.sticky or strategy == "sticky":
            hit = snapshot.sticky.get(index)
            if hit is not None:
                owner, why = hit
                in_scope = owner in team.members or (self.sticky_scope == "any" and owner in members)
                if owner in ok or (in_scope and owner not in team.members and avail.get(owner) is None
                                   and self._capacity(members[owner], snapshot, batch_new) is None):
                    self._commit(team.name, owner, snapshot, batch_new, members[owner].weight, strategy="sticky")
                    expl["chosen"], expl["choice"] = owner, f"sticky: {why}"
                    _mark(candidates, owner)
                    return owner, expl
                reason = "not in this team" if not in_scope else (
                    next((c.get("skipped") for c in candidates if c["member"] == owner), None)
                    or avail.get(owner) or self._capacity(members[owner], snapshot, batch_new) or "unavailable")
                expl["sticky"] = f"{why}, but {owner} is {reason}; fell back to round robin"
            if strategy == "sticky":
                strategy = "round_robin"
        if not ok:
            return None, expl
        tname = team.name
        clock = snapshot.clocks.get(tname, 0.0)
        passes = snapshot.passes
        weighted = strategy == "weighted"
        least = strategy == "least_loaded"
        scored: list[tuple[Any, ...]] = []  # the rows tied for the smallest key so far
        top: tuple[float, ...] | None = None
        for mid in ok:
            w = members[mid].weight if weighted else 1.0
            # start-time fair queueing: the smallest start tag goes next; a member who was
            # away (or is new) starts at the team clock instead of collecting missed turns
            start = passes.get((tname, mid), clock)
            if start < clock:
                start = clock
            finish = start + 1.0 / w
            load = loads[mid]
            if least:
                primary: tuple[float, ...] = (load / members[mid].weight, start, finish)
            else:
                primary = (start, finish)
            if top is None or primary < top:
                top = primary
                scored = [(primary, "", mid, start, finish, load)]
            elif primary == top:
                scored.append((primary, "", mid, start, finish, load))
        if len(scored) > 1:  # hash only the tie: never list order, never the oldest member
            key = lead.origin_key or (str(lead.id) if lead.id is not None else f"#{index}")
            tail = f"|{clock:.9f}|{key}"
            scored = [(s[0], _hash(f"{tname}|{s[2]}{tail}".encode(), digest_size=8).hexdigest(), *s[2:]) for s in scored]
            scored.sort()
        best = scored[0]
        mid = best[2]
        tied = [s[2] for s in scored[1:] if s[0] == best[0]]
        weight = members[mid].weight
        if least:
            why = f"least loaded: {mid} has {best[5]} open lead(s)"
        elif weighted:
            why = f"weighted rotation: {mid}'s turn (weight {weight:g}, turn at {best[3]:.3f})"
        else:
            why = f"round robin: {mid}'s turn (least recently assigned among {len(ok)} available)"
        if tied:
            why += f"; tie with {', '.join(tied)} broken by rotation hash"
        expl["chosen"], expl["choice"] = mid, why
        c = cand_of[mid]  # the chosen entry is this lead's own (entries may be shared within the batch)
        candidates[candidates.index(c)] = {"member": mid, "open": c["open"], "why": f"chosen ({c['open']} open)", "chosen": True}
        if type(self)._commit is Router._commit:  # the same arithmetic as _commit, inline
            start = passes.get((tname, mid), clock)
            if start < clock:
                start = clock
            passes[(tname, mid)] = start + 1.0 / (weight if weighted else 1.0)
            snapshot.clocks[tname] = start
            batch_new[mid] = batch_new.get(mid, 0) + 1
            turns = snapshot.turns
            turns[(tname, mid)] = turns.get((tname, mid), 0) + 1
        else:
            self._commit(tname, mid, snapshot, batch_new, weight if weighted else 1.0, strategy=strategy)
        return mid, expl

    def _capacity(self, m: Member, snapshot: Snapshot, batch_new: dict[str, int]) -> str | None:
        return capacity(m, snapshot, batch_new)

    @staticmethod
    def _commit(team: str, mid: str, snapshot: Snapshot, batch_new: dict[str, int], weight: float, *, strategy: str) -> None:
        clock = snapshot.clocks.get(team, 0.0)
        start = max(snapshot.passes.get((team, mid), clock), clock)
        snapshot.passes[(team, mid)] = start + 1.0 / weight
        snapshot.clocks[team] = start
        batch_new[mid] = batch_new.get(mid, 0) + 1
        snapshot.turns[(team, mid)] = snapshot.turns.get((team, mid), 0) + 1
        del strategy


def _mark(candidates: list[dict[str, Any]], member: str) -> None:
    for i, c in enumerate(candidates):
        if c["member"] == member:  # replaced, not changed: entries may be shared within a batch
            candidates[i] = {**c, "chosen": True, "why": f"chosen ({c['open']} open)"}


def advance(passes: dict[tuple[str, str], float], clocks: dict[str, float], team: str, mid: str, weight: float) -> None:
    """Apply one committed assignment to stored rotation state (same arithmetic as the router)."""
    clock = clocks.get(team, 0.0)
    start = max(passes.get((team, mid), clock), clock)
    passes[(team, mid)] = start + 1.0 / weight
    clocks[team] = start


def _criteria(rule: Rule) -> dict[str, Any]:
    return {k: v for k, v in rule.raw.items() if k not in ("name", "team", "queue", "_pos", "enabled")}
