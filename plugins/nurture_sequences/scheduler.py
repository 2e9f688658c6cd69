"""The scheduler: claim due steps, send them through their channel, record the outcome.

One round (:func:`run_once`) repeats three phases until nothing is due:

1. **Claim** (one transaction): pick due active enrolments, lease them to
   this worker (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never
   wait for each other; SQLite's ``BEGIN IMMEDIATE`` makes the claim the only
   writer). Exit conditions, consent and templates are checked here against
   the lead's *current* state, in bulk. For every message that will go out,
   a ledger row keyed by the lead-step idempotency key is written with status
   ``sending`` and committed **before** the channel is called.
2. **Send**: each channel gets its messages as one batch (the key is in the
   headers).
3. **Record** (one transaction): sent, retry with exponential backoff, or
   failed with the reason; the enrolment moves to its next step; one event per
   send on the lead.

After the steps, a round queues and sends the double opt-in confirmation
e-mails that are due (``confirmations.py``, same claim/send/record discipline).

If a worker dies between 1 and 3, its lease expires and another worker finds
the ledger row still ``sending``: it cannot know whether the message left, so
it marks the step ``uncertain`` and moves on. A step is therefore never sent
twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from corecrm.storage import schema
from corecrm.storage.db import as_utc

from corecrm_plugins.nurture_sequences import confirmations
from corecrm_plugins.nurture_sequences import consent as consent_mod
from corecrm_plugins.nurture_sequences import tokens
from corecrm_plugins.nurture_sequences.config import NurtureSettings
from corecrm_plugins.nurture_sequences.spec import QUALIFIED_STAGES, REPLY_EVENTS, Sequence as NurtureSequence, Step
from corecrm_plugins.nurture_sequences.store import chunks, lead_mapping, load_leads, write_events
from corecrm_plugins.nurture_sequences.tables import enrolments, messages
from corecrm_plugins.nurture_sequences.templates import TemplateError, build_context, render_step

log = logging.getLogger("corecrm.nurture")


@attrs.define(slots=True)
class RunStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    waiting: int = 0  #: due steps held back: the lead's double opt-in is pending (they stay due)
    uncertain: int = 0
    exited: int = 0
    completed: int = 0
    confirmations_sent: int = 0  #: double opt-in confirmation e-mails (see confirmations.py)
    confirmations_retried: int = 0
    confirmations_failed: int = 0
    confirmations_skipped: int = 0

    def add(self, other: RunStats) -> None:
        for f in attrs.fields(RunStats):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.define(slots=True)
class Runtime:
    """What the scheduler needs: the database, the workspace's settings, the channels and a clock."""

    engine: Engine
    workspace: str
    cfg: NurtureSettings
    channels: Mapping[str, Any]  #: name -> MessageChannel
    crm: Any = None
    worker: str = attrs.field(factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")


def idempotency_key(workspace: str, lead_id: int, sequence: str, step: int) -> str:
    return f"nurture-{workspace}-{lead_id}-{sequence}-{step}"


def channel_address(channel: str, lead: Any) -> str | None:
    if channel == "email":
        return lead.email
    if channel == "owner_task":
        return lead.owner
    return lead.phone if channel in ("sms", "whatsapp", "call") else (lead.email or lead.phone)


def unsubscribe_link(cfg: NurtureSettings, workspace: str, lead_id: int, channel: str, purpose: str, address: str | None) -> tuple[str | None, str | None]:
    """``(token, url)``; both ``None`` when no secret or URL is configured."""
    if not cfg.secret or not cfg.unsubscribe_url:
        return None, None
    tok = tokens.sign(cfg.secret, "unsubscribe", w=workspace, l=lead_id, c=channel, p=purpose, a=consent_mod.normalise_address(address))
    return tok, cfg.unsubscribe_url.replace("{token}", tok)


# --------------------------------------------------------------------------- message building


def build_message(rt: Runtime, seq: NurtureSequence, step: Step, lead: Any, key: str, *, due_at: dt.datetime | None) -> dict[str, Any]:
    """Render one step for one lead into the message a channel receives (raises TemplateError)."""
    address = channel_address(step.channel, lead)
    tok, url = unsubscribe_link(rt.cfg, rt.workspace, lead.id, step.channel, seq.purpose, address)
    parts = render_step(step, build_context(lead_mapping(lead), seq, step, unsubscribe_url=url))
    return {
        "workspace": rt.workspace,
        "lead_id": lead.id,
        "to": address,
        "to_name": lead.full_name or None,
        "owner": lead.owner,
        "subject": parts["subject"],
        "text": parts["text"],
        "html": parts["html"],
        "idempotency_key": key,
        "headers": {"X-Corecrm-Idempotency-Key": key, "X-Corecrm-Sequence": f"{seq.name}/{step.name}"},
        "unsubscribe_url": url,
        "unsubscribe_token": tok,
        "unsubscribe_mailto": rt.cfg.unsubscribe_mailto,
        "sequence": seq.name,
        "step": step.index,
        "step_name": step.name,
        "purpose": seq.purpose,
        "due_at": due_at,
    }


# --------------------------------------------------------------------------- phase 1: claim


@attrs.define(slots=True)
class _Claimed:
    enrolment_id: int
    lead_id: int
    sequence: str
    step: int
    base: dt.datetime
    enrolled_at: dt.datetime
    key: str
    message: dict[str, Any] | None = None
    attempts: int = 0


def _exit_reason(seq: NurtureSequence, lead: Any, replied: bool) -> tuple[str, str] | None:
    stage = lead.stage.value if hasattr(lead.stage, "value") else str(lead.stage)
    if lead.status == "merged" or lead.merged_into:
        return "merged", f"merged into lead {lead.merged_into}"
    checks = (
        ("converted", stage == "customer" or lead.status == "converted" or lead.customer_id is not None, f"stage {stage}"),
        ("disqualified", stage == "disqualified" or lead.status == "disqualified", f"stage {stage}"),
        ("qualified", stage in QUALIFIED_STAGES, f"stage {stage}"),
        ("replied", replied, "the lead replied"),
    )
    for cond, hit, why in checks:
        if hit and cond in seq.exit_on:
            return cond, why
    return None


def _claim(rt: Runtime, now: dt.datetime, stats: RunStats, round_id: str | None = None) -> tuple[int, list[_Claimed]]:
    """Claim a batch; returns how many were claimed and those that must be sent.

    A step whose lead's double opt-in is pending is released still due and
    marked with ``round_id`` (its ``lease_owner``), so this round does not
    claim it again but the next one re-checks it.
    """
    cfg, ws = rt.cfg, rt.workspace
    e, m = enrolments.c, messages.c
    wait_mark = f"wait:{round_id or uuid.uuid4().hex}"[:64]
    with rt.engine.begin() as conn:
        sel = (
            sa.select(e.id, e.lead_id, e.sequence, e.step, e.step_base_at, e.enrolled_at)
            .where(e.workspace == ws, e.status == "active", e.due_at <= now, sa.or_(e.lease_until.is_(None), e.lease_until <= now),
                   sa.or_(e.lease_owner.is_(None), e.lease_owner != wait_mark))
            .order_by(e.due_at, e.id)
            .limit(cfg.batch_size)
        )
        if conn.dialect.name == "postgresql":
            sel = sel.with_for_update(skip_locked=True)
        rows = conn.execute(sel).all()
        if not rows:
            return 0, []
        stats.claimed += len(rows)
        lease_until = now + cfg.lease
        for chunk in chunks([r.id for r in rows]):
            conn.execute(enrolments.update().where(e.id.in_(chunk)).values(lease_until=lease_until, lease_owner=rt.worker[:64]))

        leads = load_leads(conn, ws, [r.lead_id for r in rows])
        claimed = [
            _Claimed(r.id, r.lead_id, r.sequence, r.step, as_utc(r.step_base_at), as_utc(r.enrolled_at), idempotency_key(ws, r.lead_id, r.sequence, r.step))  # type: ignore[arg-type]
            for r in rows
        ]
        existing: dict[str, Any] = {}
        for chunk in chunks([c.key for c in claimed]):
            for r in conn.execute(sa.select(m.idempotency_key, m.status, m.attempts).where(m.workspace == ws, m.idempotency_key.in_(chunk))).all():
                existing[r.idempotency_key] = r
        replied_at: dict[int, dt.datetime] = {}
        if any("replied" in cfg.sequences[c.sequence].exit_on for c in claimed if c.sequence in cfg.sequences):
            ev = schema.events.c
            for chunk in chunks(sorted({c.lead_id for c in claimed})):
                for lid, at in conn.execute(
                    sa.select(ev.lead_id, sa.func.max(ev.at)).where(ev.workspace == ws, ev.lead_id.in_(chunk), ev.type.in_(REPLY_EVENTS)).group_by(ev.lead_id)
                ).all():
                    replied_at[lid] = as_utc(at)  # type: ignore[assignment]
        # Consent, fetched per (channel, purpose) for the leads that need it.
        need: dict[tuple[str, str], set[int]] = defaultdict(set)
        for c in claimed:
            seq = cfg.sequences.get(c.sequence)
            if seq is not None and c.step < len(seq.steps) and seq.steps[c.step].channel in cfg.require_consent:
                need[(seq.steps[c.step].channel, seq.purpose)].add(c.lead_id)
        consent_states = {k: consent_mod.states(conn, ws, ids, k[0], k[1]) for k, ids in need.items()}
        # A pending double opt-in can still be confirmed until its confirmation link expires.
        pending_until = {
            k: confirmations.pending_expiry(conn, ws, {lid: st for lid, st in sts.items() if st.status == "pending"}, cfg.confirm_valid_for)
            for k, sts in consent_states.items()
        }

        exits: list[tuple[_Claimed, str, str]] = []
        ledger_new: list[dict[str, Any]] = []
        ledger_resend: list[dict[str, Any]] = []
        advance: list[tuple[_Claimed, str]] = []  # (claimed, message outcome for the event)
        events: list[tuple[int, str, dt.datetime, dict[str, Any]]] = []
        to_send: list[_Claimed] = []
        waiting: list[_Claimed] = []
        for c in claimed:
            seq = cfg.sequences.get(c.sequence)
            lead = leads.get(c.lead_id)
            if seq is None or c.step >= len(seq.steps):
                exits.append((c, "sequence_removed", f"sequence {c.sequence!r} or its step {c.step} is no longer configured"))
                continue
            if lead is None:
                exits.append((c, "lead_missing", f"lead {c.lead_id} no longer exists"))
                continue
            step = seq.steps[c.step]
            ra = replied_at.get(c.lead_id)
            why = _exit_reason(seq, lead, ra is not None and ra >= c.enrolled_at)
            if why is not None:
                exits.append((c, why[0], why[1]))
                continue
            prev = existing.get(c.key)
            if prev is not None and prev.status in ("sending", "uncertain"):
                # A worker died after storing the key and before recording the outcome.
                conn.execute(messages.update().where(m.workspace == ws, m.idempotency_key == c.key).values(
                    status="uncertain", updated_at=now, error="the worker stopped between sending and recording; not sent again so it is never sent twice"))  # fmt: skip
                events.append((c.lead_id, "nurture_send_uncertain", now, {"sequence": seq.name, "step": step.name, "idempotency_key": c.key}))
                stats.uncertain += 1
                advance.append((c, "uncertain"))
                continue
            if prev is not None and prev.status in ("sent", "failed", "skipped"):
                advance.append((c, prev.status))  # recorded already; only the enrolment lagged behind
                continue
            address = channel_address(step.channel, lead)
            skip = None
            if step.channel in cfg.require_consent:
                st = consent_states[(step.channel, seq.purpose)].get(c.lead_id)
                if st is not None and st.status == "opted_out" and "unsubscribed" in seq.exit_on:
                    exits.append((c, "unsubscribed", f"opted out of {step.channel}/{seq.purpose} ({st.source})"))
                    continue
                if st is not None and st.status == "pending" and (st.address is None or st.address == consent_mod.normalise_address(address)):
                    until = pending_until[(step.channel, seq.purpose)].get(c.lead_id)
                    if until is None or now < until:
                        waiting.append(c)  # the person may still confirm: the step waits, still due
                        continue
                    skip = (f"no {step.channel} consent for {seq.purpose}: double opt-in not confirmed in time "
                            f"(pending since {st.at.isoformat()}, the confirmation link expired {until.isoformat()})")  # fmt: skip
                else:
                    ok, reason = consent_mod.allows(st, address)
                    if not ok:
                        skip = f"no {step.channel} consent for {seq.purpose}: {reason}"
            if skip is None and not address:
                skip = f"the lead has no {step.channel} address"
            if skip is None and step.channel not in rt.channels:
                skip = f"no channel named {step.channel!r} is installed (known: {', '.join(sorted(rt.channels)) or 'none'})"
            msg = None
            if skip is None:
                try:
                    msg = build_message(rt, seq, step, lead, c.key, due_at=None)
                except TemplateError as exc:
                    skip = f"template error in {seq.name}.steps[{step.index}].{exc}"
            if skip is not None:
                row = _ledger_row(ws, c, step, address, "skipped", now, error=skip, attempts=prev.attempts if prev else 0)
                (ledger_new if prev is None else ledger_resend).append(row)
                events.append((c.lead_id, "nurture_step_skipped", now, {"sequence": seq.name, "step": step.name, "channel": step.channel, "reason": skip}))
                stats.skipped += 1
                advance.append((c, "skipped"))
                continue
            c.message = msg
            c.attempts = (prev.attempts if prev else 0) + 1
            row = _ledger_row(ws, c, step, address, "sending", now, attempts=c.attempts)
            (ledger_new if prev is None else ledger_resend).append(row)
            to_send.append(c)
        if waiting:
            for chunk in chunks([c.enrolment_id for c in waiting]):
                conn.execute(enrolments.update().where(e.id.in_(chunk)).values(lease_until=None, lease_owner=wait_mark))
            stats.waiting += len(waiting)
            log.info("%d due step(s) wait for a pending double opt-in to be confirmed", len(waiting))
        if ledger_new:
            conn.execute(messages.insert(), ledger_new)
        if ledger_resend:
            conn.execute(
                messages.update().where(m.workspace == ws, m.idempotency_key == sa.bindparam("k")),
                [{"k": r["idempotency_key"], "status": r["status"], "attempts": r["attempts"], "updated_at": now, "error": r["error"], "address": r["address"]} for r in ledger_resend],
            )
        if exits:
            _finish(conn, [(c.enrolment_id, "exited", reason, detail) for c, reason, detail in exits], now)
            for c, reason, detail in exits:
                events.append((c.lead_id, "nurture_exited", now, {"sequence": c.sequence, "reason": reason, "detail": detail}))
            stats.exited += len(exits)
        if advance:
            _advance(conn, rt, leads, [c for c, _ in advance], now, events, stats)
        write_events(conn, ws, events)
    return len(rows), to_send


def _ledger_row(ws: str, c: _Claimed, step: Step, address: str | None, status: str, now: dt.datetime, *, error: str | None = None, attempts: int = 0) -> dict[str, Any]:
    return {
        "workspace": ws, "idempotency_key": c.key, "enrolment_id": c.enrolment_id, "lead_id": c.lead_id, "sequence": c.sequence,
        "step": c.step, "step_name": step.name, "channel": step.channel, "status": status, "attempts": attempts,
        "address": address, "created_at": now, "updated_at": now, "sent_at": None, "error": error, "detail": None,
    }  # fmt: skip


def _finish(conn: Connection, rows: Sequence[tuple[int, str, str | None, str | None]], now: dt.datetime) -> None:
    e = enrolments.c
    conn.execute(
        enrolments.update().where(e.id == sa.bindparam("eid")),
        [{"eid": eid, "status": status, "exit_reason": reason, "exit_detail": detail, "finished_at": now, "due_at": None, "lease_until": None, "lease_owner": None}
         for eid, status, reason, detail in rows],
    )  # fmt: skip


def _advance(conn: Connection, rt: Runtime, leads: Mapping[int, Any], done: Sequence[_Claimed], now: dt.datetime, events: list[Any], stats: RunStats) -> None:
    """Move enrolments past their current step: schedule the next one, or complete the sequence."""
    e = enrolments.c
    nxt, finished = [], []
    for c in done:
        seq = rt.cfg.sequences[c.sequence]
        lead = leads.get(c.lead_id)
        tz = lead.timezone if lead is not None else None
        scheduled = seq.steps[c.step].due(c.base, tz, rt.cfg.default_timezone)
        if c.step + 1 >= len(seq.steps):
            finished.append((c.enrolment_id, "completed", None, None))
            events.append((c.lead_id, "nurture_completed", now, {"sequence": c.sequence, "steps": len(seq.steps)}))
            continue
        step = seq.steps[c.step + 1]
        base = scheduled
        due = step.due(base, tz, rt.cfg.default_timezone)
        if due < now:  # catching up after downtime: space the remaining steps from now, not in a burst
            base, due = now, step.due(now, tz, rt.cfg.default_timezone)
        nxt.append({"eid": c.enrolment_id, "step": c.step + 1, "step_base_at": base, "due_at": due, "lease_until": None, "lease_owner": None})
    if nxt:
        conn.execute(enrolments.update().where(e.id == sa.bindparam("eid")), nxt)
    if finished:
        _finish(conn, finished, now)
        stats.completed += len(finished)


# --------------------------------------------------------------------------- phases 2 and 3: send and record


def _send(rt: Runtime, batch: Sequence[_Claimed], now: dt.datetime) -> list[Any]:
    """Call each channel once with its messages; returns one outcome (dict or exception) per claimed item."""
    by_channel: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(batch):
        seq = rt.cfg.sequences[c.sequence]
        by_channel[seq.steps[c.step].channel].append(i)
    outcomes: list[Any] = [None] * len(batch)
    for name, idxs in by_channel.items():
        ch = rt.channels[name]
        msgs = [batch[i].message for i in idxs]
        ctx = {"engine": rt.engine, "workspace": rt.workspace, "now": now, "crm": rt.crm}
        try:
            res = list(ch.send(msgs, ctx))
            if len(res) != len(msgs):
                raise RuntimeError(f"channel {name} returned {len(res)} outcomes for {len(msgs)} messages")
        except Exception as exc:  # the whole batch failed (server down…): retryable
            log.warning("channel %s failed for a batch of %d: %s", name, len(msgs), exc)
            res = [exc] * len(msgs)
        for i, r in zip(idxs, res):
            outcomes[i] = r
    return outcomes


def _record(rt: Runtime, batch: Sequence[_Claimed], outcomes: Sequence[Any], now: dt.datetime, stats: RunStats) -> None:
    cfg, ws = rt.cfg, rt.workspace
    e, m = enrolments.c, messages.c
    sent_rows, msg_updates, retry_rows, events = [], [], [], []
    advance: list[_Claimed] = []
    exits: list[tuple[_Claimed, str, str]] = []
    suppress: list[tuple[_Claimed, str]] = []
    for c, out in zip(batch, outcomes):
        seq = cfg.sequences[c.sequence]
        step = seq.steps[c.step]
        base = {"sequence": seq.name, "step": step.name, "channel": step.channel, "idempotency_key": c.key, "attempts": c.attempts}
        if not isinstance(out, BaseException):
            detail = dict(out or {})
            sent_rows.append({"k": c.key, "status": "sent", "sent_at": now, "updated_at": now, "error": None, "detail": detail or None})
            etype = "email_sent" if step.channel == "email" else "message_sent"
            events.append((c.lead_id, etype, now, {**base, "subject": c.message["subject"] if c.message else None, **detail}))
            stats.sent += 1
            advance.append(c)
            continue
        reason = f"{type(out).__name__}: {out}"
        retry_after = getattr(out, "retry_after", None)
        permanent = bool(getattr(out, "permanent", False))
        if retry_after is not None and not permanent:
            # Deferred by the channel (rate limit, frequency cap): not a failed attempt.
            msg_updates.append({"k": c.key, "status": "retry", "updated_at": now, "error": f"deferred: {reason}", "attempts": c.attempts - 1})
            retry_rows.append({"eid": c.enrolment_id, "due_at": now + dt.timedelta(seconds=float(retry_after)), "lease_until": None, "lease_owner": None})
            stats.deferred += 1
            continue
        if not permanent and c.attempts < cfg.max_attempts:
            delay = cfg.retry_backoff * (2 ** (c.attempts - 1))
            msg_updates.append({"k": c.key, "status": "retry", "updated_at": now, "error": reason, "attempts": c.attempts})
            retry_rows.append({"eid": c.enrolment_id, "due_at": now + delay, "lease_until": None, "lease_owner": None})
            events.append((c.lead_id, "nurture_send_retry", now, {**base, "error": reason, "next_attempt": (now + delay).isoformat()}))
            stats.retried += 1
            continue
        final = reason if permanent else f"{reason} (gave up after {c.attempts} attempts)"
        msg_updates.append({"k": c.key, "status": "failed", "updated_at": now, "error": final, "attempts": c.attempts})
        events.append((c.lead_id, "nurture_send_failed", now, {**base, "error": final}))
        stats.failed += 1
        if getattr(out, "suppress", False) and c.message and c.message.get("to"):
            suppress.append((c, c.message["to"]))
        if cfg.on_failure == "exit":
            exits.append((c, "failed", final))
        else:
            advance.append(c)
    with rt.engine.begin() as conn:
        if sent_rows:
            conn.execute(messages.update().where(m.workspace == ws, m.idempotency_key == sa.bindparam("k")), sent_rows)
        if msg_updates:
            conn.execute(messages.update().where(m.workspace == ws, m.idempotency_key == sa.bindparam("k")), msg_updates)
        if retry_rows:
            conn.execute(enrolments.update().where(e.id == sa.bindparam("eid")), retry_rows)
        if exits:
            _finish(conn, [(c.enrolment_id, "exited", r, d) for c, r, d in exits], now)
            events.extend((c.lead_id, "nurture_exited", now, {"sequence": c.sequence, "reason": r, "detail": d}) for c, r, d in exits)
            stats.exited += len(exits)
        if advance:
            leads = load_leads(conn, ws, [c.lead_id for c in advance])
            _advance(conn, rt, leads, advance, now, events, stats)
        for c, address in suppress:
            seqs = {s.purpose for s in cfg.sequences.values()}
            consent_mod.suppress_address(conn, ws, address, channel="email", purposes=sorted(seqs), source="bounce",
                                         proof={"idempotency_key": c.key}, at=now)  # fmt: skip
        write_events(conn, ws, events)


def run_once(rt: Runtime, now: dt.datetime | Callable[[], dt.datetime], *, max_batches: int | None = None) -> RunStats:
    """Send everything due at ``now``; returns what happened. Safe to run in several processes at once."""
    stats = RunStats()
    batches = 0
    round_id = uuid.uuid4().hex
    while max_batches is None or batches < max_batches:
        t = now() if callable(now) else now
        n, batch = _claim(rt, t, stats, round_id)
        batches += 1
        if n == 0:
            break
        if not batch:
            continue
        outcomes = _send(rt, batch, t)
        _record(rt, batch, outcomes, t, stats)
    if "email" in rt.cfg.double_opt_in:
        _confirmations(rt, now() if callable(now) else now, stats)
    return stats


def _confirmations(rt: Runtime, now: dt.datetime, stats: RunStats) -> None:
    """Queue a confirmation for any pending e-mail opt-in that has none, and send the due ones."""
    from corecrm_plugins.nurture_sequences import confirmations

    with rt.engine.begin() as conn:
        confirmations.queue(conn, rt.workspace, rt.cfg.double_opt_in, now=now)
    c = confirmations.send_due(rt, now)
    stats.confirmations_sent += c.sent
    stats.confirmations_retried += c.retried
    stats.confirmations_failed += c.failed
    stats.confirmations_skipped += c.skipped
