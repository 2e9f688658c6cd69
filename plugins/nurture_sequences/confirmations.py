"""Double opt-in confirmation e-mails: an outbox keyed by the pending consent statement.

When an e-mail opt-in is recorded ``pending`` (a channel under
``double_opt_in``), :func:`queue` adds one ``nurture_confirmations`` row for
that ledger row, in the same transaction (``record_consents``, the capture
observer and ``nurture consent --opt-in`` all do). The unique key on the
ledger row makes a statement get at most one confirmation, however often
it is queued. :func:`queue` without lead ids sweeps the whole ledger, so
``nurture run`` also picks up pending statements written some other way.

:func:`send_due` sends queued rows through the ``email`` channel with the
scheduler's discipline: claim (``sending`` committed before the channel is
called), send, record ``sent`` / ``retry`` with backoff / ``failed``. A row
found ``sending`` after its lease ran out (a worker died mid-send) becomes
``uncertain`` and is never sent again. Just before sending, a row whose
statement is no longer the lead's current consent (confirmed, withdrawn or
superseded since) or whose lead changed address is ``skipped``.

With ``confirm_send = "immediately"`` (the default) the rows queued for a
batch of leads are sent as soon as they are committed; with
``"scheduler"`` only ``nurture run`` sends them.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm.storage.db import as_utc

from corecrm_plugins.nurture_sequences.store import chunks, lead_mapping, load_leads, write_events
from corecrm_plugins.nurture_sequences.tables import confirmations, consent as consent_table

log = logging.getLogger("corecrm.nurture.confirmations")

#: Channels a confirmation message can be sent on (the message is an e-mail).
CONFIRM_CHANNELS = frozenset({"email"})


@attrs.define(slots=True)
class ConfirmStats:
    queued: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    uncertain: int = 0
    waiting: int = 0  #: due but not sendable yet (no secret, confirm_url or email channel)

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


def confirmation_key(workspace: str, consent_id: int) -> str:
    return f"nurture-confirm-{workspace}-{consent_id}"


def _insert_ignore(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(confirmations).on_conflict_do_nothing(index_elements=["workspace", "consent_id"])


def queue(conn: Connection, workspace: str, double_opt_in: Iterable[str], *, now: dt.datetime, lead_ids: Sequence[int] | None = None) -> int:
    """Queue a confirmation for every current ``pending`` e-mail statement that has none; returns how many were queued.

    Only the lead's current statement for a channel and purpose counts (the
    one made last, :func:`.consent.is_current`): a pending row already
    superseded (confirmed, withdrawn) needs no message.
    """
    from corecrm_plugins.nurture_sequences.consent import is_current

    chans = sorted(set(double_opt_in) & CONFIRM_CHANNELS)
    if not chans:
        return 0
    c, q = consent_table.c, confirmations.c
    base = sa.select(c.id, c.lead_id, c.channel, c.purpose, c.address).where(
        c.workspace == workspace,
        c.status == "pending",
        c.channel.in_(chans),
        ~sa.exists().where(q.workspace == workspace, q.consent_id == c.id),
        is_current(consent_table),
    )
    rows: list[Any] = []
    if lead_ids is None:
        rows = list(conn.execute(base.order_by(c.id)).all())
    else:
        for chunk in chunks(sorted(set(lead_ids))):
            rows.extend(conn.execute(base.where(c.lead_id.in_(chunk)).order_by(c.id)).all())
    if not rows:
        return 0
    now = as_utc(now)  # type: ignore[assignment]
    values = [
        {"workspace": workspace, "consent_id": r.id, "lead_id": r.lead_id, "channel": r.channel, "purpose": r.purpose, "address": r.address,
         "status": "queued", "attempts": 0, "idempotency_key": confirmation_key(workspace, r.id), "due_at": now, "created_at": now, "updated_at": now}
        for r in rows
    ]  # fmt: skip
    n = 0
    for chunk in chunks(values, 500):
        n += len(conn.execute(_insert_ignore(conn).returning(q.id), list(chunk)).all())
    return n


def pending_expiry(conn: Connection, workspace: str, pending: Mapping[int, Any], valid_for: dt.timedelta) -> dict[int, dt.datetime | None]:
    """Until when each lead's ``pending`` statement can still be confirmed (``None``: no expiry).

    ``pending`` maps lead ids to their current :class:`.consent.ConsentState`.
    A confirmation link works for ``valid_for`` (``confirm_valid_for``) after
    it was made: when the statement was recorded (the link ``nurture consent``
    prints) or, later, when its confirmation e-mail went out. So the
    statement expires ``valid_for`` after the later of the two. One query per
    chunk of statements.
    """
    if not valid_for:
        return {lid: None for lid in pending}
    q = confirmations.c
    sent: dict[int, dt.datetime] = {}
    for chunk in chunks(sorted({st.id for st in pending.values() if st.id is not None})):
        for cid, at in conn.execute(
            sa.select(q.consent_id, q.sent_at).where(q.workspace == workspace, q.consent_id.in_(chunk), q.sent_at.is_not(None))
        ).all():
            sent[cid] = as_utc(at)  # type: ignore[assignment]
    out: dict[int, dt.datetime | None] = {}
    for lid, st in pending.items():
        issued = st.recorded_at or st.at
        mailed = sent.get(st.id)
        out[lid] = max(issued, mailed or issued) + valid_for
    return out


def after_queued(rt: Any, now: dt.datetime, lead_ids: Sequence[int]) -> str:
    """Send what was just queued for these leads when ``confirm_send`` is ``immediately``; never raises."""
    if rt.cfg.confirm_send != "immediately":
        return "queued"
    try:
        stats = send_due(rt, now, lead_ids=lead_ids)
    except Exception:
        log.exception("sending double opt-in confirmations failed; they stay queued for `nurture run`")
        return "queued"
    return "sent" if stats.sent else ("queued" if stats.waiting or stats.retried else "not sent")


def _not_ready(rt: Any) -> str | None:
    if not rt.cfg.secret:
        return "no signing secret (plugins.nurture_sequences.secret)"
    if not rt.cfg.confirm_url:
        return "no confirmation link (plugins.nurture_sequences.confirm_url)"
    if "email" not in rt.channels:
        return "no channel named 'email' is installed (enable channel_email)"
    return None


def send_due(rt: Any, now: dt.datetime, *, lead_ids: Sequence[int] | None = None) -> ConfirmStats:
    """Send the due confirmations (of these leads, or all), exactly once each; safe with several workers."""
    stats = ConfirmStats()
    while True:
        batch = _claim(rt, now, stats, lead_ids)
        if batch is None:
            break
        if batch:
            _send_and_record(rt, batch, now, stats)
    return stats


def _claim(rt: Any, now: dt.datetime, stats: ConfirmStats, lead_ids: Sequence[int] | None) -> list[dict[str, Any]] | None:
    """Claim one batch; ``None`` when nothing (more) is due. Returns the messages to send."""
    from corecrm_plugins.nurture_sequences import actions, consent as consent_mod
    from corecrm_plugins.nurture_sequences.templates import TemplateError, confirmation_context, render_confirmation

    ws, cfg = rt.workspace, rt.cfg
    q = confirmations.c
    scope = [q.lead_id.in_(sorted(set(lead_ids)))] if lead_ids is not None else []
    with rt.engine.begin() as conn:
        # A row left 'sending' by a worker that died: it may have left, so it is never sent again.
        stale = conn.execute(
            sa.select(q.id, q.lead_id, q.idempotency_key).where(q.workspace == ws, q.status == "sending", q.lease_until <= now, *scope)
        ).all()
        if stale:
            conn.execute(confirmations.update().where(q.id.in_([r.id for r in stale]), q.status == "sending").values(
                status="uncertain", updated_at=now, lease_until=None,
                error="the worker stopped between sending and recording; not sent again so it is never sent twice"))  # fmt: skip
            write_events(conn, ws, [(r.lead_id, "confirmation_uncertain", now, {"idempotency_key": r.idempotency_key}) for r in stale])
            stats.uncertain += len(stale)
        sel = (
            sa.select(q.id, q.consent_id, q.lead_id, q.channel, q.purpose, q.address, q.attempts, q.idempotency_key)
            .where(q.workspace == ws, q.status.in_(("queued", "retry")), q.due_at <= now, *scope)
            .order_by(q.due_at, q.id)
            .limit(cfg.batch_size)
        )
        if conn.dialect.name == "postgresql":
            sel = sel.with_for_update(skip_locked=True)
        rows = conn.execute(sel).all()
        if not rows:
            return None
        why_not = _not_ready(rt)
        if why_not is not None:
            log.warning("%d double opt-in confirmation(s) wait: %s", len(rows), why_not)
            stats.waiting += len(rows)
            return None
        leads = load_leads(conn, ws, [r.lead_id for r in rows])
        # The current statement per lead (the one made last): the row queued must still be it.
        current: dict[tuple[str, str], dict[int, Any]] = {}
        c = consent_table.c
        for key in {(r.channel, r.purpose) for r in rows}:
            ids = sorted({r.lead_id for r in rows if (r.channel, r.purpose) == key})
            current[key] = dict(
                conn.execute(
                    sa.select(c.lead_id, c.id).where(c.workspace == ws, c.channel == key[0], c.purpose == key[1], c.lead_id.in_(ids), consent_mod.is_current(consent_table))
                ).all()
            )
        skips: list[tuple[Any, str]] = []
        claims: list[dict[str, Any]] = []
        out: list[dict[str, Any]] = []
        for r in rows:
            lead = leads.get(r.lead_id)
            if lead is None:
                skips.append((r, f"lead {r.lead_id} no longer exists"))
                continue
            if current[(r.channel, r.purpose)].get(r.lead_id) != r.consent_id:
                skips.append((r, "the pending opt-in was confirmed, withdrawn or superseded before its confirmation was sent"))
                continue
            if consent_mod.normalise_address(lead.email) != r.address:
                skips.append((r, f"the lead's e-mail address is no longer {r.address}"))
                continue
            token = actions.confirmation_token(rt, r.lead_id, r.channel, r.purpose, r.address, now=now)
            url = actions.confirmation_url(rt, token)
            valid_until = (now + cfg.confirm_valid_for).isoformat() if cfg.confirm_valid_for else None
            ctx = confirmation_context(lead_mapping(lead), confirm_url=url or "", channel=r.channel, purpose=r.purpose, address=r.address, valid_until=valid_until)
            try:
                parts = render_confirmation(cfg.confirm_subject, cfg.confirm_text, cfg.confirm_html, ctx)
            except TemplateError as exc:
                skips.append((r, f"template error in plugins.nurture_sequences.confirm_{exc}"))
                continue
            claims.append({"cid": r.id, "attempts": r.attempts + 1})
            out.append({
                "workspace": ws, "lead_id": r.lead_id, "to": lead.email, "to_name": lead.full_name or None, "owner": lead.owner,
                "subject": parts["subject"], "text": parts["text"], "html": parts["html"], "idempotency_key": r.idempotency_key,
                "headers": {"X-Corecrm-Idempotency-Key": r.idempotency_key, "X-Corecrm-Message": "double-opt-in"},
                "unsubscribe_url": None, "unsubscribe_mailto": None, "transactional": True, "kind": "confirmation",
                "purpose": r.purpose, "confirm_url": url, "_row": r.id, "_attempts": r.attempts + 1,
            })  # fmt: skip
        if skips:
            conn.execute(
                confirmations.update().where(q.id == sa.bindparam("cid")),
                [{"cid": r.id, "status": "skipped", "error": why, "updated_at": now, "due_at": None} for r, why in skips],
            )
            write_events(conn, ws, [(r.lead_id, "confirmation_skipped", now, {"purpose": r.purpose, "reason": why}) for r, why in skips])
            stats.skipped += len(skips)
        if claims:
            conn.execute(
                confirmations.update().where(q.id == sa.bindparam("cid")),
                [{**c, "status": "sending", "updated_at": now, "lease_until": now + cfg.lease, "lease_owner": rt.worker[:64]} for c in claims],
            )
    return out


def _send_and_record(rt: Any, batch: list[dict[str, Any]], now: dt.datetime, stats: ConfirmStats) -> None:
    cfg, ws = rt.cfg, rt.workspace
    q = confirmations.c
    msgs = [{k: v for k, v in m.items() if not k.startswith("_")} for m in batch]
    try:
        res = list(rt.channels["email"].send(msgs, {"engine": rt.engine, "workspace": ws, "now": now, "crm": rt.crm}))
        if len(res) != len(msgs):
            raise RuntimeError(f"channel email returned {len(res)} outcomes for {len(msgs)} messages")
    except Exception as exc:
        log.warning("channel email failed for %d confirmation(s): %s", len(msgs), exc)
        res = [exc] * len(msgs)
    updates, events = [], []
    for m, out in zip(batch, res):
        base = {"purpose": m["purpose"], "idempotency_key": m["idempotency_key"], "attempts": m["_attempts"]}
        if not isinstance(out, BaseException):
            detail = dict(out or {})
            updates.append({"cid": m["_row"], "status": "sent", "sent_at": now, "error": None, "detail": detail or None, "due_at": None, "attempts": m["_attempts"]})
            events.append((m["lead_id"], "confirmation_sent", now, {**base, "to": m["to"], **{k: v for k, v in detail.items() if k != "to"}}))
            stats.sent += 1
            continue
        reason = f"{type(out).__name__}: {out}"
        retry_after = getattr(out, "retry_after", None)
        permanent = bool(getattr(out, "permanent", False))
        if retry_after is not None and not permanent:
            updates.append({"cid": m["_row"], "status": "retry", "sent_at": None, "error": f"deferred: {reason}", "detail": None,
                            "due_at": now + dt.timedelta(seconds=float(retry_after)), "attempts": m["_attempts"] - 1})  # fmt: skip
            stats.retried += 1
        elif not permanent and m["_attempts"] < cfg.max_attempts:
            due = now + cfg.retry_backoff * (2 ** (m["_attempts"] - 1))
            updates.append({"cid": m["_row"], "status": "retry", "sent_at": None, "error": reason, "detail": None, "due_at": due, "attempts": m["_attempts"]})
            stats.retried += 1
        else:
            final = reason if permanent else f"{reason} (gave up after {m['_attempts']} attempts)"
            updates.append({"cid": m["_row"], "status": "failed", "sent_at": None, "error": final, "detail": None, "due_at": None, "attempts": m["_attempts"]})
            events.append((m["lead_id"], "confirmation_failed", now, {**base, "error": final}))
            stats.failed += 1
    with rt.engine.begin() as conn:
        conn.execute(
            confirmations.update().where(q.id == sa.bindparam("cid")),
            [{**u, "updated_at": now, "lease_until": None, "lease_owner": None} for u in updates],
        )
        write_events(conn, ws, events)


def confirmations_for_lead(conn: Connection, workspace: str, lead_id: int) -> list[dict[str, Any]]:
    """A lead's confirmation messages, oldest first."""
    q = confirmations.c
    rows = conn.execute(
        sa.select(q.id, q.consent_id, q.channel, q.purpose, q.address, q.status, q.attempts, q.sent_at, q.error)
        .where(q.workspace == workspace, q.lead_id == lead_id)
        .order_by(q.id)
    ).all()
    return [{**r._asdict(), "sent_at": as_utc(r.sent_at).isoformat() if r.sent_at else None} for r in rows]  # type: ignore[union-attr]
