"""Enrolment and exit on lifecycle events, evaluated in batches."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Mapping, Sequence

from corecrm.records import Enrolment

from corecrm_plugins.nurture_sequences import confirmations
from corecrm_plugins.nurture_sequences import consent as consent_mod
from corecrm_plugins.nurture_sequences.config import PLUGIN, NurtureSettings
from corecrm_plugins.nurture_sequences.spec import QUALIFIED_STAGES
from corecrm_plugins.nurture_sequences.store import enrol, exit_enrolments, load_leads

log = logging.getLogger("corecrm.nurture_sequences")


def rule_enrolments(cfg: NurtureSettings, leads: Sequence[Any], trigger: str, *, to_stage: Sequence[str | None] | None = None,
                    now: dt.datetime | None = None) -> list[Enrolment]:  # fmt: skip
    """Enrolments the configured rules ask for, for a batch of leads and one trigger."""
    out: list[Enrolment] = []
    for seq in cfg.sequences.values():
        for rule in seq.rules:
            if rule.on != trigger:
                continue
            for i, lead in enumerate(leads):
                if getattr(lead, "status", "open") in ("merged", "converted") and trigger != "converted":
                    continue
                if rule.to and (to_stage is None or to_stage[i] not in rule.to):
                    continue
                if trigger == "date" and (now is None or not rule.date_due(lead, now)):
                    continue
                if rule.matches(lead):
                    out.append(Enrolment(index=i, sequence=seq.name, reason=f"rule {rule.name} ({trigger})", lead_id=getattr(lead, "id", None)))
    return out


def collect_enrolments(crm: Any, workspace: str, leads: Sequence[Any], ctx: Any) -> list[tuple[int, str, str, str]]:
    """Ask every plugin's ``crm_enrol_leads`` about stored leads; ``(lead_id, sequence, reason, plugin)``."""
    out = []
    for _name, recs in crm.plugins.each("crm_enrol_leads", workspace=workspace, leads=leads, ctx=ctx):
        for rec in recs:
            lead_id = rec.lead_id if rec.lead_id is not None else (leads[rec.index].id if 0 <= rec.index < len(leads) else None)
            if lead_id is not None:
                out.append((lead_id, rec.sequence, rec.reason, rec.plugin))
    return out


def consent_from_capture(leads: Mapping[int, Any], cfg: NurtureSettings, now: dt.datetime) -> list[consent_mod.ConsentEntry]:
    """Ledger entries for the consent a capture carried (``lead.consent``).

    Accepted shapes: ``{"email": true}`` (the default purpose, ``marketing``),
    ``{"email": {"marketing": true, "newsletter": false}}``, and optional
    ``"source"``, ``"at"`` and ``"proof"`` keys next to the channels. Without
    an ``"at"`` the consent was given when the lead was captured (its
    ``created_at``, else ``now``): not the time of the notification, so that
    a repeated one describes the same statement. An e-mail opt-in stays
    ``pending`` when the channel is under double opt-in.
    A channel whose value is a statement record (it has a ``"status"`` key,
    as capture_web's form checkbox writes) is skipped: the plugin that wrote
    it hands it to :func:`consent.record_consents`.
    """
    out = []
    for lead_id, lead in leads.items():
        raw = lead.consent or {}
        if not isinstance(raw, Mapping) or not raw:
            continue
        source = str(raw.get("source") or lead.source or "capture")
        proof = dict(raw.get("proof") or {}) if isinstance(raw.get("proof"), Mapping) else {}
        proof.setdefault("capture_id", getattr(lead, "capture_id", None))
        captured_at = getattr(lead, "created_at", None) or now
        at = captured_at
        if isinstance(raw.get("at"), str):
            try:
                at = dt.datetime.fromisoformat(raw["at"])  # ConsentEntry keeps it in UTC (naive: taken as UTC)
            except ValueError:
                log.warning("lead %s: consent time %r is not ISO 8601; using the capture time", lead_id, raw["at"])
                at = captured_at
        for channel, val in raw.items():
            if channel in ("source", "at", "proof"):
                continue
            if isinstance(val, Mapping) and "status" in val:
                # A statement record ({"status", "purpose", "at", "source", "proof"}, capture_web's
                # form checkbox): its plugin hands it over through consent.record_consents,
                # so it is not read here too (that would record it twice).
                continue
            purposes = val if isinstance(val, Mapping) else {"marketing": val}
            for purpose, given in purposes.items():
                if not isinstance(given, bool):
                    continue
                status = "opted_in" if given else "opted_out"
                if given and channel in cfg.double_opt_in:
                    status = "pending"
                address = lead.email if channel == "email" else (lead.phone if channel in ("sms", "whatsapp", "call") else None)
                if given and not address:
                    # An opt-in is for an address: one recorded without any would allow
                    # sends to whatever address the lead gets later (record_consents refuses it too).
                    log.warning("lead %s: %s consent for %s not recorded: the lead has no address on that channel", lead_id, channel, purpose)
                    continue
                out.append(consent_mod.ConsentEntry(lead_id, channel, str(purpose), status, at, source, address, proof))
    return out


def on_captured(crm: Any, workspace: str, cfg: NurtureSettings, lead_ids: Sequence[int], ctx: Any) -> None:
    """Record the consent captures carried, then enrol the new leads (both set-based).

    Kept cheap for bulk intake: the consent read touches only leads that
    carry consent, and leads are loaded for enrolment only when some plugin
    may enrol them.
    """
    import sqlalchemy as sa

    from corecrm.storage import schema

    lc = schema.leads.c
    ids = sorted(set(lead_ids))
    with crm.engine.begin() as conn:
        with_consent: dict[int, Any] = {}
        for chunk in _chunks(ids):
            sel = (
                sa.select(lc.id, lc.email, lc.phone, lc.source, lc.capture_id, lc.consent, lc.created_at)
                .where(lc.workspace == workspace, lc.id.in_(chunk), lc.consent.is_not(None))
                .order_by(lc.id)
            )
            if conn.dialect.name == "postgresql":
                sel = sel.with_for_update(key_share=True)  # FOR NO KEY UPDATE: serialises notifications for these leads
            for r in conn.execute(sel).all():
                if r.consent:
                    with_consent[r.id] = r
        pending: list[int] = []
        if with_consent:
            entries = consent_from_capture(with_consent, cfg, ctx.now)
            if consent_mod.record_new(conn, workspace, entries, recorded_at=ctx.now):
                pending = sorted({e.lead_id for e in entries if e.status == "pending"})
                if not (pending and confirmations.queue(conn, workspace, cfg.double_opt_in, now=ctx.now, lead_ids=pending)):
                    pending = []
    if pending:
        from corecrm_plugins.nurture_sequences.actions import runtime

        confirmations.after_queued(runtime(crm, workspace), ctx.now, pending)
    if not _anyone_enrols(crm, workspace, cfg, "intake"):
        return
    with crm.engine.connect() as conn:
        leads = load_leads(conn, workspace, ids)
    batch = [leads[i] for i in sorted(leads)]
    _persist(crm, workspace, cfg, collect_enrolments(crm, workspace, batch, _event_ctx(ctx, "intake")), ctx.now)


def _chunks(ids: Sequence[int], n: int = 900) -> Any:
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


def _anyone_enrols(crm: Any, workspace: str, cfg: NurtureSettings, trigger: str) -> bool:
    """Whether a rule of ours or another plugin's ``crm_enrol_leads`` may enrol on this trigger."""
    if any(r.on == trigger for s in cfg.sequences.values() for r in s.rules):
        return True
    return any(name != PLUGIN for name, _impl in crm.plugins.impls("crm_enrol_leads", workspace))


def on_stage_changed(crm: Any, workspace: str, cfg: NurtureSettings, changes: Sequence[tuple[int, str | None]], ctx: Any) -> None:
    """Exit on qualified / converted / disqualified; enrol on ``stage_changed`` rules."""
    now = ctx.now
    by_cond: dict[str, list[int]] = {"qualified": [], "converted": [], "disqualified": []}
    for lead_id, to in changes:
        if to in QUALIFIED_STAGES:
            by_cond["qualified"].append(lead_id)
        elif to == "customer":
            by_cond["converted"].append(lead_id)
        elif to == "disqualified":
            by_cond["disqualified"].append(lead_id)
    with crm.engine.begin() as conn:
        for cond, ids in by_cond.items():
            exit_enrolments(conn, workspace, cfg, ids, cond, now=now, detail="stage changed")
    if not _anyone_enrols(crm, workspace, cfg, "stage_changed"):
        return
    with crm.engine.connect() as conn:
        leads = load_leads(conn, workspace, [lid for lid, _ in changes])
    batch, to = [], []
    for lead_id, stage in changes:
        if lead_id in leads:
            batch.append(leads[lead_id])
            to.append(stage)
    ectx = _event_ctx(ctx, "stage_changed", to_stage=to)
    _persist(crm, workspace, cfg, collect_enrolments(crm, workspace, batch, ectx), now)


def on_converted(crm: Any, workspace: str, cfg: NurtureSettings, lead_ids: Sequence[int], ctx: Any) -> None:
    with crm.engine.begin() as conn:
        exit_enrolments(conn, workspace, cfg, lead_ids, "converted", now=ctx.now, detail="lead converted")
    if not _anyone_enrols(crm, workspace, cfg, "converted"):
        return
    with crm.engine.connect() as conn:
        leads = load_leads(conn, workspace, lead_ids)
    batch = [leads[i] for i in sorted(leads)]
    _persist(crm, workspace, cfg, collect_enrolments(crm, workspace, batch, _event_ctx(ctx, "converted")), ctx.now)


def enrol_by_date(crm: Any, engine: Any, workspace: str, cfg: NurtureSettings, now: dt.datetime) -> int:
    """Evaluate ``on = "date"`` rules over open leads (a renewal date approaching); returns new enrolments."""
    import sqlalchemy as sa

    from corecrm.storage import schema

    if not any(r.on == "date" for s in cfg.sequences.values() for r in s.rules):
        return 0
    new = 0
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(schema.leads.c.id).where(schema.leads.c.workspace == workspace, schema.leads.c.status == "open")).all()]
    for i in range(0, len(ids), 5000):
        with engine.begin() as conn:
            leads = load_leads(conn, workspace, ids[i : i + 5000])
            batch = [leads[k] for k in sorted(leads)]
            recs = rule_enrolments(cfg, batch, "date", now=now)
            new += len(enrol(conn, workspace, cfg, [(batch[r.index].id, r.sequence, r.reason, PLUGIN) for r in recs], now=now, leads=leads))
    return new


def _event_ctx(ctx: Any, trigger: str, **extra: Any) -> Any:
    from corecrm.context import HookContext

    return HookContext(crm=ctx.crm, workspace=ctx.workspace, now=ctx.now, mode="event", extra={**dict(ctx.extra or {}), "nurture_trigger": trigger, **extra})


def _persist(crm: Any, workspace: str, cfg: NurtureSettings, items: Sequence[tuple[int, str, str, str]], now: dt.datetime) -> None:
    if not items:
        return
    with crm.engine.begin() as conn:
        enrol(conn, workspace, cfg, items, now=now)
