"""Consent from the web form: always on the lead, and in the nurture consent ledger when there is one.

The checkbox's consent travels with the capture and is set on the new lead's
``consent`` field by the ``web_form`` format (``{channel: {status, purpose,
at, source, text, proof}}``, status ``granted``), so it is recorded even
without any nurturing plugin.

When the ``nurture_sequences`` plugin is installed and enabled for the
workspace, captured leads that carry web-form consent are also handed to its
ledger through a documented optional import::

    corecrm_plugins.nurture_sequences.consent.record_consents(crm, workspace, entries)

where each entry is ``{"lead_id", "channel", "purpose", "status", "at",
"source", "proof"}`` (the proof gains the consent ``text`` the person saw
and the ``capture_id``). The ledger resolves the lead's address, applies
double opt-in and ignores a statement it already holds, so handing the same
capture over twice records it once. nurture_sequences does not read this
record from the lead's ``consent`` field itself, so it is recorded once.

If the module or the function is absent (another version, or the plugin is
not installed), nothing breaks: the lead's own ``consent`` field remains the
record.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

log = logging.getLogger("corecrm.capture_web.consent")

LEDGER_PLUGIN = "nurture_sequences"


def ledger() -> Callable[..., Any] | None:
    """The nurture plugin's ledger function, or ``None`` when it is not there."""
    try:
        from corecrm_plugins.nurture_sequences import consent as nurture_consent  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(nurture_consent, "record_consents", None)


def entries_for(leads: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for lead_id, row in leads.items():
        for channel, c in (row.get("consent") or {}).items():
            if isinstance(c, dict) and str(c.get("source", "")).startswith("web_form:"):
                proof = dict(c.get("proof") or {})
                if c.get("text"):
                    proof.setdefault("text", c["text"])
                if row.get("capture_id") is not None:
                    proof.setdefault("capture_id", row["capture_id"])
                out.append(
                    {
                        "lead_id": lead_id,
                        "channel": channel,
                        "purpose": c.get("purpose"),
                        "status": c.get("status"),
                        "at": c.get("at"),
                        "source": c.get("source"),
                        "proof": proof,
                    }
                )
    return out


def forward_to_ledger(events: Sequence[Any], ctx: Any) -> int:
    """Hand web-form consent of newly captured leads to the nurture ledger; returns the entries handed."""
    crm = ctx.crm
    plugins = getattr(crm, "plugins", None)
    if getattr(ctx, "dry_run", False) or plugins is None or not plugins.is_loaded(LEDGER_PLUGIN):
        return 0
    config = getattr(crm, "config", None)
    if config is not None and LEDGER_PLUGIN in config.disabled_in_workspace(ctx.workspace):
        return 0
    record = ledger()
    if record is None:
        log.info("%s is loaded but has no consent.record_consents; web-form consent stays on the lead only", LEDGER_PLUGIN)
        return 0
    from corecrm_plugins.capture_web.deliveries import load_leads

    leads = load_leads(crm.engine, ctx.workspace, [e.lead_id for e in events if getattr(e, "lead_id", None) is not None])
    entries = entries_for(leads)
    if entries:
        record(crm, ctx.workspace, entries)
    return len(entries)
