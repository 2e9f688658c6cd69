"""Small in-process plugins the core tests register (the way a third party would)."""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa

from corecrm.hooks import hookimpl
from corecrm.records import Assignment, FieldUpdate, Finding, MatchCandidate, Qualification, ScoreContribution, ScreenVerdict, Setting
from corecrm.storage import schema


class DomainScorer:
    """+10 for a company domain, +5 per interest; points configurable per workspace."""

    @hookimpl
    def crm_plugin_settings(self) -> Iterable[Setting]:
        return [Setting("company_points", "int", 10, "points for a non-free-mail domain"), Setting("mql_at", "float", 100.0, "score that makes a lead MQL")]

    @hookimpl
    def crm_score_leads(self, leads: Sequence[Any], settings: Mapping[str, Any]) -> Iterable[ScoreContribution]:
        out = []
        for i, lead in enumerate(leads):
            if lead.email_domain and lead.email_domain not in ("gmail.com", "yahoo.com"):
                out.append(ScoreContribution(i, "company_domain", settings["company_points"], f"company domain {lead.email_domain}", ruleset="t1"))
            for tag in lead.interests:
                out.append(ScoreContribution(i, "interest", 5, f"interested in {tag}", ruleset="t1"))
        return out

    @hookimpl
    def crm_qualify_leads(self, leads: Sequence[Any], scores: Sequence[float | None], settings: Mapping[str, Any]) -> Iterable[Qualification]:
        return [Qualification(i, grade="A" if (s or 0) >= 15 else "C", stage="mql" if (s or 0) >= settings["mql_at"] else None, reason=f"score {s}") for i, s in enumerate(scores)]


class ExplodingScorer:
    """Raises on leads whose email contains 'boom' (while ``armed``)."""

    armed = True

    @hookimpl
    def crm_score_leads(self, leads: Sequence[Any]) -> Iterable[ScoreContribution]:
        for lead in leads:
            if self.armed and "boom" in (lead.email or ""):
                raise RuntimeError(f"cannot score {lead.email}")
        return [ScoreContribution(i, "base", 1, "everyone gets one") for i in range(len(leads))]


class RoundRobinRouter:
    """Assigns owners in turn; records the candidates it considered."""

    def __init__(self, reps: Sequence[str] = ("alice", "bob")) -> None:
        self.reps = list(reps)
        self._cycle = itertools.cycle(self.reps)

    @hookimpl
    def crm_route_leads(self, leads: Sequence[Any]) -> Iterable[Assignment]:
        out = []
        for i, _lead in enumerate(leads):
            rep = next(self._cycle)
            out.append(Assignment(i, owner=rep, team="sales", rule="everyone", reason="round robin", explanation={"strategy": "round_robin", "candidates": [{"member": r, "chosen": r == rep} for r in self.reps]}))
        return out


class Normaliser:
    """Lower-cases emails and flags missing names."""

    @hookimpl
    def crm_verify_leads(self, leads: Sequence[Any]) -> Iterable[Any]:
        out: list[Any] = []
        for i, lead in enumerate(leads):
            if lead.email and lead.email != lead.email.strip().lower():
                out.append(FieldUpdate(i, "email", lead.email.strip().lower(), "e-mail addresses are case-insensitive"))
            if not lead.last_name:
                out.append(Finding(i, "no_last_name", "the lead gave no last name", "info", field="last_name"))
        return out


class Screener:
    """Rejects @spam.test, holds @review.test for review."""

    @hookimpl
    def crm_screen_leads(self, leads: Sequence[Any]) -> Iterable[ScreenVerdict]:
        out = []
        for i, lead in enumerate(leads):
            dom = lead.email_domain or ""
            if dom == "spam.test":
                out.append(ScreenVerdict(i, "reject", ["known spam domain"]))
            elif dom == "review.test":
                out.append(ScreenVerdict(i, "review", ["looks odd"]))
        return out


class EmailMatcher:
    """Merges leads whose normalised email is already stored (one query per batch)."""

    @hookimpl
    def crm_match_leads(self, leads: Sequence[Any], ctx: Any) -> Iterable[MatchCandidate]:
        emails = {ld.email.strip().lower() for ld in leads if ld.email}
        if not emails:
            return []
        with ctx.crm.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.leads.c.email_norm, schema.leads.c.id).where(schema.leads.c.workspace == ctx.workspace, schema.leads.c.email_norm.in_(emails))).all()
        found = dict(rows)
        out = []
        first_in_batch: dict[str, int] = {}
        for i, ld in enumerate(leads):
            key = (ld.email or "").strip().lower()
            if key in found:
                out.append(MatchCandidate(i, found[key], 1.0, "merge", rule="same email"))
            elif key and key in first_in_batch:
                out.append(MatchCandidate(i, None, 1.0, "merge", rule="same email in batch", batch_index=first_in_batch[key]))
            elif key:
                first_in_batch[key] = i
        return out


class Recorder:
    """Observer that records every event hook call; optionally raises."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.fail = fail

    def _rec(self, name: str, events: Sequence[Any]) -> None:
        self.calls.append((name, list(events)))
        if self.fail:
            raise RuntimeError("observer broke")

    @hookimpl
    def crm_leads_captured(self, events: Sequence[Any]) -> None:
        self._rec("captured", events)

    @hookimpl
    def crm_stage_changed(self, events: Sequence[Any]) -> None:
        self._rec("stage_changed", events)

    @hookimpl
    def crm_leads_assigned(self, events: Sequence[Any]) -> None:
        self._rec("assigned", events)

    @hookimpl
    def crm_lead_converted(self, events: Sequence[Any]) -> None:
        self._rec("converted", events)

    @hookimpl
    def crm_deal_closed(self, events: Sequence[Any]) -> None:
        self._rec("deal_closed", events)

    @hookimpl
    def crm_leads_quarantined(self, events: Sequence[Any]) -> None:
        self._rec("quarantined", events)
