"""Writes on stored leads: stage moves, merges, conversion, activities and deals.

Each operation is one transaction and records what it did as events with the
reason and the actor (a plugin name or ``cli``), so ``corecrm explain`` can
answer why.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import sqlalchemy as sa

from corecrm.context import HookContext
from corecrm.errors import CrmError, NotFound, TransitionError
from corecrm.lifecycle import Stage, check_transition
from corecrm.models import ACTIVITY_TYPES, CONTACT_ACTIVITY_TYPES, CONTACT_FIELDS, Event, Lead
from corecrm.rows import lead_from_row
from corecrm.storage import schema
from corecrm.storage.db import as_utc

if TYPE_CHECKING:
    from corecrm.app import Crm


class Operations:
    """Mixed into :class:`corecrm.app.Crm`."""

    # ------------------------------------------------------------------ events
    def add_events(self: Crm, conn: sa.Connection, events: Iterable[Event], *, workspace: str | None = None) -> None:
        """Append events in the caller's transaction (one multi-row insert)."""
        ws = self.ws(workspace)
        rows = [
            {"workspace": ws, "lead_id": e.lead_id, "deal_id": e.detail.get("deal_id") if isinstance(e.detail.get("deal_id"), int) else None,
             "type": e.type, "at": e.at, "plugin": e.plugin, "detail": e.detail}
            for e in events
        ]  # fmt: skip
        if rows:
            conn.execute(schema.events.insert(), rows)

    def record_event(self: Crm, lead_id: int, type_: str, detail: dict[str, Any], *, plugin: str | None = None, workspace: str | None = None) -> None:
        """Append one event to a lead's history (plugins use this for sends, opens, clicks…)."""
        ws = self.ws(workspace)
        with self.engine.begin() as conn:
            self._lock_lead(conn, lead_id, ws)
            self.add_events(conn, [Event(type_, self.now(), plugin, detail, lead_id=lead_id)], workspace=ws)

    def _ctx(self: Crm, ws: str) -> HookContext:
        return HookContext(crm=self, workspace=ws, now=self.now(), mode="event", events_loader=self.load_events)

    def _lock_lead(self: Crm, conn: sa.Connection, lead_id: int, ws: str) -> Lead:
        stmt = sa.select(schema.leads).where(schema.leads.c.workspace == ws, schema.leads.c.id == lead_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).mappings().first()
        if row is None:
            raise NotFound(f"lead {lead_id} not found in workspace {ws!r}")
        return lead_from_row(row)

    # ------------------------------------------------------------------ lifecycle
    def move_stage(self: Crm, lead_id: int, stage: str | Stage, *, reason: str = "", actor: str | None = "cli", workspace: str | None = None) -> Lead:
        """Move a lead to another lifecycle stage, validated; records a ``stage_changed`` event."""
        ws = self.ws(workspace)
        now = self.now()
        with self.engine.begin() as conn:
            lead = self._lock_lead(conn, lead_id, ws)
            target = check_transition(lead.stage, stage, lead_id=lead_id)
            if target == Stage.CUSTOMER:
                raise TransitionError(f"lead {lead_id}: use `corecrm leads convert {lead_id}` to make a customer")
            if target == lead.stage:
                return lead
            previous = lead.stage
            status = "disqualified" if target == Stage.DISQUALIFIED else "open"
            conn.execute(schema.leads.update().where(schema.leads.c.id == lead_id).values(stage=target.value, status=status, updated_at=now))
            ev = Event("stage_changed", now, actor, {"from": previous.value, "to": target.value, "reason": reason}, lead_id=lead_id)
            self.add_events(conn, [ev], workspace=ws)
        lead.stage, lead.status = target, status
        self.plugins.notify("crm_stage_changed", workspace=ws, events=[ev], ctx=self._ctx(ws))
        return lead

    def merge_into(
        self: Crm,
        conn: sa.Connection,
        target_id: int,
        incoming: Lead,
        *,
        workspace: str,
        plugin: str | None,
        history: list[dict[str, Any]] | None = None,
        now: dt.datetime,
    ) -> bool:
        """Fold a new lead into a stored one, in the caller's transaction.

        Empty fields are filled, interests united, attributes added where
        missing; values that differ are kept as alternatives in the event.
        Consent is never carried from one record to another: it belongs to
        the person who gave it, and the incoming lead's consent is recorded
        in the event, not applied. Returns False when the target is missing.
        """
        row = conn.execute(sa.select(schema.leads).where(schema.leads.c.workspace == workspace, schema.leads.c.id == target_id)).mappings().first()
        if row is None:
            return False
        target = lead_from_row(row)
        filled: dict[str, Any] = {}
        conflicts: dict[str, Any] = {}
        for f in CONTACT_FIELDS + ("source", "campaign", "language", "timezone"):
            new = getattr(incoming, f)
            if new in (None, ""):
                continue
            old = getattr(target, f)
            if old in (None, ""):
                filled[f] = new
            elif str(old).strip().lower() != str(new).strip().lower():
                conflicts[f] = new
        interests = list(target.interests)
        added = [i for i in incoming.interests if i not in interests]
        values: dict[str, Any] = dict(filled)
        if added:
            values["interests"] = interests + added
        attrs_added = {k: v for k, v in incoming.attributes.items() if k not in target.attributes}
        if attrs_added:
            values["attributes"] = {**target.attributes, **attrs_added}
        if "email" in filled:
            values["email_norm"] = filled["email"].strip().lower()
        values["updated_at"] = now
        conn.execute(schema.leads.update().where(schema.leads.c.id == target_id).values(**values))
        detail = {
            "origin_key": incoming.origin_key,
            "capture_id": incoming.capture_id,
            "filled": filled,
            "conflicting": conflicts,
            "interests_added": added,
            "attributes_added": attrs_added,
            "consent_not_carried": incoming.consent or None,
            "steps": history or [],
        }
        self.add_events(conn, [Event("merged", now, plugin, detail, lead_id=target_id)], workspace=workspace)
        return True

    # ------------------------------------------------------------------ conversion
    def convert(
        self: Crm,
        lead_id: int,
        *,
        deal: bool = False,
        amount: float | None = None,
        pipeline: str | None = None,
        deal_name: str | None = None,
        external_id: str | None = None,
        actor: str | None = "cli",
        workspace: str | None = None,
    ) -> tuple[int, int | None]:
        """Make a lead a customer (and optionally open a deal), atomically and idempotently.

        A retry, or two concurrent calls, never create a second customer: the
        ``(workspace, lead_id)`` unique key on customers decides, and a lead
        that already has its customer returns it.
        """
        ws = self.ws(workspace)
        now = self.now()
        with self.engine.begin() as conn:
            lead = self._lock_lead(conn, lead_id, ws)
            if lead.customer_id is not None:
                deal_id = conn.execute(
                    sa.select(schema.deals.c.id).where(schema.deals.c.workspace == ws, schema.deals.c.lead_id == lead_id).order_by(schema.deals.c.id).limit(1)
                ).scalar()
                return lead.customer_id, deal_id
            if lead.stage != Stage.CUSTOMER:
                check_transition(lead.stage, Stage.CUSTOMER, lead_id=lead_id)
            existing = conn.execute(sa.select(schema.customers.c.id).where(schema.customers.c.workspace == ws, schema.customers.c.lead_id == lead_id)).scalar()
            if existing is not None:
                customer_id = existing
            else:
                customer_id = conn.execute(
                    schema.customers.insert().returning(schema.customers.c.id),
                    {"workspace": ws, "lead_id": lead_id, "external_id": external_id, "name": lead.full_name or lead.company, "email": lead.email, "created_at": now},
                ).scalar_one()
            deal_id = None
            events = [
                Event("stage_changed", now, actor, {"from": lead.stage.value, "to": Stage.CUSTOMER.value, "reason": "converted"}, lead_id=lead_id),
            ]
            if deal:
                pipes = self.config.pipelines()
                pname = pipeline or next(iter(pipes))
                if pname not in pipes:
                    raise CrmError(f"unknown pipeline {pname!r} (configured: {', '.join(pipes)})")
                first = pipes[pname].first_open_stage
                deal_id = conn.execute(
                    schema.deals.insert().returning(schema.deals.c.id),
                    {"workspace": ws, "lead_id": lead_id, "customer_id": customer_id, "pipeline": pname, "stage": first.name, "name": deal_name or lead.company or lead.full_name,
                     "amount": amount, "owner": lead.owner, "status": "open", "created_at": now},
                ).scalar_one()  # fmt: skip
                events.append(Event("deal_created", now, actor, {"deal_id": deal_id, "pipeline": pname, "stage": first.name, "amount": amount}, lead_id=lead_id))
            conn.execute(
                schema.leads.update().where(schema.leads.c.id == lead_id).values(stage=Stage.CUSTOMER.value, status="converted", customer_id=customer_id, updated_at=now)
            )
            conv = Event("converted", now, actor, {"customer_id": customer_id, "deal_id": deal_id}, lead_id=lead_id)
            events.append(conv)
            self.add_events(conn, events, workspace=ws)
        ctx = self._ctx(ws)
        self.plugins.notify("crm_stage_changed", workspace=ws, events=[events[0]], ctx=ctx)
        self.plugins.notify("crm_lead_converted", workspace=ws, events=[conv], ctx=ctx)
        return customer_id, deal_id

    # ------------------------------------------------------------------ activities
    def log_activity(
        self: Crm,
        lead_id: int | None,
        type_: str,
        *,
        note: str | None = None,
        owner: str | None = None,
        due_at: dt.datetime | None = None,
        deal_id: int | None = None,
        done: bool | None = None,
        workspace: str | None = None,
    ) -> int:
        """Log a call, email, meeting, note or task. The first contact stamps ``first_contact_at``."""
        if type_ not in ACTIVITY_TYPES:
            raise CrmError(f"unknown activity type {type_!r} (valid: {', '.join(sorted(ACTIVITY_TYPES))})")
        if lead_id is None and deal_id is None:
            raise CrmError("an activity needs a lead or a deal")
        ws = self.ws(workspace)
        now = self.now()
        is_done = (type_ != "task") if done is None else done
        with self.engine.begin() as conn:
            lead = None
            if deal_id is not None:
                drow = conn.execute(sa.select(schema.deals.c.lead_id).where(schema.deals.c.workspace == ws, schema.deals.c.id == deal_id)).first()
                if drow is None:
                    raise NotFound(f"deal {deal_id} not found in workspace {ws!r}")
                lead_id = lead_id or drow.lead_id
            if lead_id is not None:
                lead = self._lock_lead(conn, lead_id, ws)
            act_id = conn.execute(
                schema.activities.insert().returning(schema.activities.c.id),
                {"workspace": ws, "lead_id": lead_id, "deal_id": deal_id, "type": type_, "note": note, "owner": owner or (lead.owner if lead else None), "due_at": due_at, "done": is_done, "at": now},
            ).scalar_one()
            events = [Event("activity", now, "cli", {"activity_id": act_id, "type": type_, "note": note, "owner": owner, "deal_id": deal_id, "due_at": due_at.isoformat() if due_at else None}, lead_id=lead_id)]
            if lead is not None and type_ in CONTACT_ACTIVITY_TYPES and lead.first_contact_at is None:
                conn.execute(schema.leads.update().where(schema.leads.c.id == lead_id).values(first_contact_at=now, updated_at=now))
                minutes = (now - lead.created_at).total_seconds() / 60 if lead.created_at else None
                events.append(Event("first_contact", now, "cli", {"activity_id": act_id, "minutes_since_capture": round(minutes, 2) if minutes is not None else None}, lead_id=lead_id))
            if lead_id is not None:
                self.add_events(conn, events, workspace=ws)
        return act_id

    def complete_task(self: Crm, activity_id: int, *, workspace: str | None = None) -> None:
        ws = self.ws(workspace)
        with self.engine.begin() as conn:
            n = conn.execute(schema.activities.update().where(schema.activities.c.workspace == ws, schema.activities.c.id == activity_id).values(done=True)).rowcount
        if not n:
            raise NotFound(f"activity {activity_id} not found in workspace {ws!r}")

    def activities(self: Crm, *, owner: str | None = None, lead_id: int | None = None, deal_id: int | None = None, open_only: bool = False, types: Sequence[str] | None = None, workspace: str | None = None) -> list[dict[str, Any]]:
        ws = self.ws(workspace)
        a = schema.activities
        stmt = sa.select(a).where(a.c.workspace == ws)
        if owner:
            stmt = stmt.where(a.c.owner == owner)
        if lead_id is not None:
            stmt = stmt.where(a.c.lead_id == lead_id)
        if deal_id is not None:
            stmt = stmt.where(a.c.deal_id == deal_id)
        if open_only:
            stmt = stmt.where(a.c.done.is_(False))
        if types:
            stmt = stmt.where(a.c.type.in_(list(types)))
        stmt = stmt.order_by(a.c.due_at.is_(None), a.c.due_at, a.c.id)
        with self.engine.connect() as conn:
            return [{**dict(r), "at": as_utc(r["at"]), "due_at": as_utc(r["due_at"])} for r in conn.execute(stmt).mappings()]

    # ------------------------------------------------------------------ deals
    def create_deal(
        self: Crm, lead_id: int, *, pipeline: str | None = None, amount: float | None = None, name: str | None = None,
        expected_close: dt.date | None = None, stage: str | None = None, workspace: str | None = None,
    ) -> int:  # fmt: skip
        ws = self.ws(workspace)
        pipes = self.config.pipelines()
        pname = pipeline or next(iter(pipes))
        if pname not in pipes:
            raise CrmError(f"unknown pipeline {pname!r} (configured: {', '.join(pipes)})")
        pipe = pipes[pname]
        st = pipe.stage(stage) if stage else pipe.first_open_stage
        if st is None or st.closed:
            raise TransitionError(f"pipeline {pname}: {stage!r} is not an open stage (stages: {', '.join(s.name for s in pipe.stages)})")
        now = self.now()
        with self.engine.begin() as conn:
            lead = self._lock_lead(conn, lead_id, ws)
            deal_id = conn.execute(
                schema.deals.insert().returning(schema.deals.c.id),
                {"workspace": ws, "lead_id": lead_id, "customer_id": lead.customer_id, "pipeline": pname, "stage": st.name, "name": name or lead.company or lead.full_name,
                 "amount": amount, "owner": lead.owner, "status": "open", "expected_close": expected_close, "created_at": now},
            ).scalar_one()  # fmt: skip
            events = [Event("deal_created", now, "cli", {"deal_id": deal_id, "pipeline": pname, "stage": st.name, "amount": amount}, lead_id=lead_id)]
            if lead.stage in (Stage.LEAD, Stage.MQL, Stage.SQL, Stage.NURTURING, Stage.PROSPECT):
                conn.execute(schema.leads.update().where(schema.leads.c.id == lead_id).values(stage=Stage.OPPORTUNITY.value, updated_at=now))
                events.append(Event("stage_changed", now, "cli", {"from": lead.stage.value, "to": Stage.OPPORTUNITY.value, "reason": f"deal {deal_id} opened"}, lead_id=lead_id))
            self.add_events(conn, events, workspace=ws)
        return deal_id

    def deal(self: Crm, deal_id: int, *, workspace: str | None = None) -> dict[str, Any]:
        ws = self.ws(workspace)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(schema.deals).where(schema.deals.c.workspace == ws, schema.deals.c.id == deal_id)).mappings().first()
        if row is None:
            raise NotFound(f"deal {deal_id} not found in workspace {ws!r}")
        d = dict(row)
        pipe = self.config.pipelines().get(d["pipeline"])
        st = pipe.stage(d["stage"]) if pipe else None
        d["probability"] = st.probability if st else None
        d["playbook"] = list(st.playbook) if st else []
        return d

    def deals(self: Crm, *, status: str | None = None, pipeline: str | None = None, workspace: str | None = None) -> list[dict[str, Any]]:
        ws = self.ws(workspace)
        d = schema.deals
        stmt = sa.select(d).where(d.c.workspace == ws)
        if status:
            stmt = stmt.where(d.c.status == status)
        if pipeline:
            stmt = stmt.where(d.c.pipeline == pipeline)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt.order_by(d.c.id)).mappings()]

    def move_deal(self: Crm, deal_id: int, stage: str, *, reason: str | None = None, actor: str | None = "cli", workspace: str | None = None) -> dict[str, Any]:
        """Move a deal to a stage of its pipeline; a closing stage wins or loses it (lost needs a reason)."""
        ws = self.ws(workspace)
        now = self.now()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(schema.deals).where(schema.deals.c.workspace == ws, schema.deals.c.id == deal_id)).mappings().first()
            if row is None:
                raise NotFound(f"deal {deal_id} not found in workspace {ws!r}")
            if row["status"] != "open":
                raise TransitionError(f"deal {deal_id} is already {row['status']}")
            pipe = self.config.pipelines().get(row["pipeline"])
            st = pipe.stage(stage) if pipe else None
            if st is None:
                names = ", ".join(s.name for s in pipe.stages) if pipe else "?"
                raise TransitionError(f"deal {deal_id}: pipeline {row['pipeline']} has no stage {stage!r} (stages: {names})")
            if st.closed == "lost" and not reason:
                raise TransitionError(f"deal {deal_id}: a lost deal needs a reason (--reason)")
            values: dict[str, Any] = {"stage": st.name}
            events = [Event("deal_stage_changed", now, actor, {"deal_id": deal_id, "from": row["stage"], "to": st.name, "reason": reason}, lead_id=row["lead_id"])]
            closed = None
            if st.closed:
                values.update(status=st.closed, closed_at=now, lost_reason=reason if st.closed == "lost" else None)
                closed = Event(f"deal_{st.closed}", now, actor, {"deal_id": deal_id, "amount": row["amount"], "reason": reason, "pipeline": row["pipeline"]}, lead_id=row["lead_id"])
                events.append(closed)
            conn.execute(schema.deals.update().where(schema.deals.c.id == deal_id).values(**values))
            if row["lead_id"] is not None:
                self.add_events(conn, events, workspace=ws)
        if closed is not None:
            self.plugins.notify("crm_deal_closed", workspace=ws, events=[closed], ctx=self._ctx(ws))
        return self.deal(deal_id, workspace=ws)

    # ------------------------------------------------------------------ customers and transactions
    def add_transactions(self: Crm, rows: Sequence[dict[str, Any]], *, workspace: str | None = None) -> int:
        """Insert transactions (``customer_id, at, amount, cost``) in one statement."""
        ws = self.ws(workspace)
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(schema.transactions.insert(), [{**r, "workspace": ws} for r in rows])
        return len(rows)
