"""What the CLI commands do, callable without click (tests and other plugins use these)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from corecrm.errors import CrmError, NotFound

from corecrm_plugins.nurture_sequences import confirmations
from corecrm_plugins.nurture_sequences import consent as consent_mod
from corecrm_plugins.nurture_sequences import tokens
from corecrm_plugins.nurture_sequences.config import PLUGIN, NurtureSettings
from corecrm_plugins.nurture_sequences.scheduler import Runtime, build_message, idempotency_key
from corecrm_plugins.nurture_sequences.store import exit_enrolments, load_leads, write_events


def runtime(crm: Any, workspace: str | None = None) -> Runtime:
    """The scheduler's view of a CRM instance for one workspace."""
    ws = crm.ws(workspace) if hasattr(crm, "ws") else (workspace or crm.config.default_workspace)
    cfg = NurtureSettings.from_settings(crm.plugins.settings(PLUGIN, ws))
    channels = crm.plugins.collect_named("crm_message_channels", workspace=ws, what="message channel")
    return Runtime(engine=crm.engine, workspace=ws, cfg=cfg, channels=channels, crm=crm)


def find_step(cfg: NurtureSettings, sequence: str, step: str) -> Any:
    seq = cfg.sequences.get(sequence)
    if seq is None:
        raise CrmError(f"unknown sequence {sequence!r} (configured: {', '.join(sorted(cfg.sequences)) or 'none'})")
    for s in seq.steps:
        if s.name == step or str(s.index + 1) == str(step):
            return seq, s
    raise CrmError(f"sequence {sequence}: unknown step {step!r} (steps: {', '.join(f'{s.index + 1}={s.name}' for s in seq.steps)})")


def preview(rt: Runtime, sequence: str, step: str, lead_id: int) -> dict[str, Any]:
    """Render a step for a stored lead exactly as the scheduler would, without sending or recording."""
    seq, st = find_step(rt.cfg, sequence, step)
    with rt.engine.connect() as conn:
        lead = load_leads(conn, rt.workspace, [lead_id]).get(lead_id)
    if lead is None:
        raise NotFound(f"lead {lead_id} does not exist in workspace {rt.workspace}")
    return build_message(rt, seq, st, lead, idempotency_key(rt.workspace, lead_id, seq.name, st.index), due_at=None)


def _lock_lead(conn: Any, workspace: str, lead_id: int) -> None:
    """Serialise writers of one lead's consent (PostgreSQL; SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        import sqlalchemy as sa

        from corecrm.storage.schema import leads

        conn.execute(sa.select(leads.c.id).where(leads.c.workspace == workspace, leads.c.id == lead_id).with_for_update(key_share=True))


def check_link(rt: Runtime, token: str, kind: str, *, now: dt.datetime) -> dict[str, Any]:
    """Verify a signed link's token without acting on it: ``{lead_id, channel, purpose, address}``.

    Raises :class:`tokens.TokenError` (malformed, altered, expired, another
    workspace's). What an HTTP front end shows before the person confirms.
    """
    data = tokens.verify(rt.cfg.require_secret(), token, kind, now=now)
    if data.get("w") != rt.workspace:
        raise tokens.TokenError(f"token is for workspace {data.get('w')!r}, not {rt.workspace!r}")
    try:
        return {"lead_id": int(data["l"]), "channel": str(data["c"]), "purpose": str(data["p"]), "address": data.get("a")}
    except (KeyError, TypeError, ValueError):
        raise tokens.TokenError("malformed token payload") from None


def unsubscribe(rt: Runtime, token: str, *, now: dt.datetime, source: str = "unsubscribe_link") -> dict[str, Any]:
    """Record the opt-out a signed unsubscribe token asks for, and end the lead's sequences for that purpose.

    Idempotent: when the lead is already opted out of that channel and
    purpose for that address, nothing is written (``changed`` is False).
    """
    link = check_link(rt, token, "unsubscribe", now=now)
    lead_id, channel, purpose, address = link["lead_id"], link["channel"], link["purpose"], link["address"]
    with rt.engine.begin() as conn:
        _lock_lead(conn, rt.workspace, lead_id)
        entry = consent_mod.ConsentEntry(lead_id, channel, purpose, "opted_out", now, source, address, {"token": tokens.fingerprint(token)})
        st = consent_mod.states(conn, rt.workspace, [lead_id], channel, purpose).get(lead_id)
        if st is not None and st.status == "opted_out" and st.address == entry.address:
            return {"lead_id": lead_id, "channel": channel, "purpose": purpose, "address": entry.address, "exited": [], "changed": False}
        consent_mod.record(conn, rt.workspace, [entry], recorded_at=now)
        write_events(conn, rt.workspace, [(lead_id, "unsubscribed", now, {"channel": channel, "purpose": purpose, "address": entry.address, "source": source})])
        ended = exit_enrolments(conn, rt.workspace, rt.cfg, [lead_id], "unsubscribed", now=now, detail=f"{channel}/{purpose} via {source}", purpose=purpose)
    return {"lead_id": lead_id, "channel": channel, "purpose": purpose, "address": entry.address, "exited": [s for _l, s in ended], "changed": True}


def confirmation_token(rt: Runtime, lead_id: int, channel: str, purpose: str, address: str | None, *, now: dt.datetime | None = None) -> str:
    """The signed double opt-in token; with ``now`` it expires ``confirm_valid_for`` later."""
    extra: dict[str, Any] = {}
    if now is not None and rt.cfg.confirm_valid_for:
        extra["e"] = int((now + rt.cfg.confirm_valid_for).timestamp())
    return tokens.sign(rt.cfg.require_secret(), "confirm", w=rt.workspace, l=lead_id, c=channel, p=purpose, a=consent_mod.normalise_address(address), **extra)


def confirmation_url(rt: Runtime, token: str) -> str | None:
    return rt.cfg.confirm_url.replace("{token}", token) if rt.cfg.confirm_url else None


class ConfirmRefused(CrmError):
    """A genuine confirmation link that cannot take effect (the person opted out since)."""


def confirm(rt: Runtime, token: str, *, now: dt.datetime) -> dict[str, Any]:
    """Double opt-in: turn a pending consent into ``opted_in`` (only for the address that was asked).

    Idempotent: when the lead is already opted in for that address, nothing
    is written (``changed`` is False). Refused (:class:`ConfirmRefused`)
    when the lead opted out after the confirmation was requested.
    """
    link = check_link(rt, token, "confirm", now=now)
    lead_id, channel, purpose, address = link["lead_id"], link["channel"], link["purpose"], link["address"]
    with rt.engine.begin() as conn:
        _lock_lead(conn, rt.workspace, lead_id)
        st = consent_mod.states(conn, rt.workspace, [lead_id], channel, purpose).get(lead_id)
        if st is not None and st.status == "opted_out":
            raise ConfirmRefused(f"lead {lead_id} opted out of {channel}/{purpose} after this confirmation was requested; nothing changed")
        entry = consent_mod.ConsentEntry(lead_id, channel, purpose, "opted_in", now, "double_opt_in", address, {"token": tokens.fingerprint(token)})
        if st is not None and st.status == "opted_in" and st.address == entry.address:
            return {"lead_id": lead_id, "channel": channel, "purpose": purpose, "address": entry.address, "changed": False}
        consent_mod.record(conn, rt.workspace, [entry], recorded_at=now)
        write_events(conn, rt.workspace, [(lead_id, "consent_confirmed", now, {"channel": channel, "purpose": purpose, "address": entry.address})])
    return {"lead_id": lead_id, "channel": channel, "purpose": purpose, "address": entry.address, "changed": True}


def set_consent(rt: Runtime, lead_id: int, channel: str, purpose: str, given: bool, *, now: dt.datetime, source: str,
                proof: Mapping[str, Any] | None = None, address: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Record consent given or withdrawn (double opt-in applies to an e-mail opt-in)."""
    with rt.engine.begin() as conn:
        lead = load_leads(conn, rt.workspace, [lead_id]).get(lead_id)
        if lead is None:
            raise NotFound(f"lead {lead_id} does not exist in workspace {rt.workspace}")
        if address is None:
            address = lead.email if channel == "email" else (lead.phone if channel in ("sms", "whatsapp", "call") else None)
        status = "opted_in" if given else "opted_out"
        if given and channel in rt.cfg.double_opt_in and source != "double_opt_in":
            status = "pending"
        entry = consent_mod.ConsentEntry(lead_id, channel, purpose, status, now, source, address, dict(proof or {}))
        consent_mod.record(conn, rt.workspace, [entry], recorded_at=now)
        if not given:
            exit_enrolments(conn, rt.workspace, rt.cfg, [lead_id], "unsubscribed", now=now, detail=f"{channel}/{purpose} via {source}", purpose=purpose)
        queued = confirmations.queue(conn, rt.workspace, rt.cfg.double_opt_in, now=now, lead_ids=[lead_id]) if status == "pending" else 0
    out = {"lead_id": lead_id, "channel": channel, "purpose": purpose, "status": status, "address": entry.address}
    if status == "pending":
        out["confirm_token"] = confirmation_token(rt, lead_id, channel, purpose, address, now=now)
        if rt.cfg.confirm_url:
            out["confirm_url"] = confirmation_url(rt, out["confirm_token"])
        if queued:
            out["confirmation"] = confirmations.after_queued(rt, now, [lead_id])
    return out
