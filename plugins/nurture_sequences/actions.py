"""What the CLI commands do, callable without click (tests and other plugins use these)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from corecrm.errors import CrmError, NotFound

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


def unsubscribe(rt: Runtime, token: str, *, now: dt.datetime, source: str = "unsubscribe_link") -> dict[str, Any]:
    """Record the opt-out a signed unsubscribe token asks for, and end the lead's sequences for that purpose."""
    data = tokens.verify(rt.cfg.require_secret(), token, "unsubscribe")
    if data.get("w") != rt.workspace:
        raise tokens.TokenError(f"token is for workspace {data.get('w')!r}, not {rt.workspace!r}")
    lead_id, channel, purpose, address = int(data["l"]), str(data["c"]), str(data["p"]), data.get("a")
    with rt.engine.begin() as conn:
        entry = consent_mod.ConsentEntry(lead_id, channel, purpose, "opted_out", now, source, address, {"token": tokens.fingerprint(token)})
        consent_mod.record(conn, rt.workspace, [entry], recorded_at=now)
        write_events(conn, rt.workspace, [(lead_id, "unsubscribed", now, {"channel": channel, "purpose": purpose, "address": entry.address, "source": source})])
        ended = exit_enrolments(conn, rt.workspace, rt.cfg, [lead_id], "unsubscribed", now=now, detail=f"{channel}/{purpose} via {source}", purpose=purpose)
    return {"lead_id": lead_id, "channel": channel, "purpose": purpose, "address": entry.address, "exited": [s for _l, s in ended]}


def confirmation_token(rt: Runtime, lead_id: int, channel: str, purpose: str, address: str | None) -> str:
    return tokens.sign(rt.cfg.require_secret(), "confirm", w=rt.workspace, l=lead_id, c=channel, p=purpose, a=consent_mod.normalise_address(address))


def confirm(rt: Runtime, token: str, *, now: dt.datetime) -> dict[str, Any]:
    """Double opt-in: turn a pending consent into ``opted_in`` (only for the address that was asked)."""
    data = tokens.verify(rt.cfg.require_secret(), token, "confirm")
    if data.get("w") != rt.workspace:
        raise tokens.TokenError(f"token is for workspace {data.get('w')!r}, not {rt.workspace!r}")
    lead_id, channel, purpose, address = int(data["l"]), str(data["c"]), str(data["p"]), data.get("a")
    with rt.engine.begin() as conn:
        st = consent_mod.states(conn, rt.workspace, [lead_id], channel, purpose).get(lead_id)
        if st is not None and st.status == "opted_out":
            raise CrmError(f"lead {lead_id} opted out of {channel}/{purpose} after this confirmation was requested; nothing changed")
        entry = consent_mod.ConsentEntry(lead_id, channel, purpose, "opted_in", now, "double_opt_in", address, {"token": tokens.fingerprint(token)})
        consent_mod.record(conn, rt.workspace, [entry], recorded_at=now)
        write_events(conn, rt.workspace, [(lead_id, "consent_confirmed", now, {"channel": channel, "purpose": purpose, "address": entry.address})])
    return {"lead_id": lead_id, "channel": channel, "purpose": purpose, "address": entry.address}


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
    out = {"lead_id": lead_id, "channel": channel, "purpose": purpose, "status": status, "address": entry.address}
    if status == "pending":
        out["confirm_token"] = confirmation_token(rt, lead_id, channel, purpose, address)
        if rt.cfg.confirm_url:
            out["confirm_url"] = rt.cfg.confirm_url.replace("{token}", out["confirm_token"])
    return out
