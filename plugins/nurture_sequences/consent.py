"""The consent ledger: the public, per-lead consent API.

Consent belongs to one person (one lead id) and one address. Rows are only
ever appended; the latest row for ``(lead, channel, purpose)`` is the state.
Nothing is sent on a channel that requires consent unless that state is
``opted_in`` *for the address the message goes to*.

Merging leads (for de-duplication plugins)
------------------------------------------
Merging two leads must never move one person's consent to the other. This
module is the contract a dedup plugin follows:

* never update ``nurture_consent.lead_id`` and never copy the merged lead's
  ``consent`` field onto the survivor (:data:`MERGE_EXCLUDED_FIELDS`);
* call :func:`on_leads_merged` after a merge: it ends the merged-away lead's
  enrolments (exit reason ``merged``) and leaves both ledgers untouched;
* read a lead's consent with :func:`consent_for_lead` / :func:`states`.

Even if a merge copied a consent or an address across, the address check in
:func:`allows` refuses a send to an address the survivor never consented with.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm_plugins.nurture_sequences.tables import consent as consent_table

STATUSES = ("opted_in", "opted_out", "pending")

#: Lead fields a dedup plugin must never carry from a merged lead to the survivor.
MERGE_EXCLUDED_FIELDS: tuple[str, ...] = ("consent",)

_CHUNK = 900


def normalise_address(address: str | None) -> str | None:
    if not address:
        return None
    return address.strip().lower() or None


@attrs.define(slots=True)
class ConsentEntry:
    """One ledger row: a person gave, withdrew or is asked to confirm consent."""

    lead_id: int
    channel: str
    purpose: str
    status: str
    at: dt.datetime
    source: str
    address: str | None = None
    proof: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"consent status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        self.address = normalise_address(self.address)


@attrs.define(slots=True, frozen=True)
class ConsentState:
    status: str
    address: str | None
    at: dt.datetime
    source: str
    proof: Mapping[str, Any] | None = None


def record(conn: Connection, workspace: str, entries: Sequence[ConsentEntry], *, recorded_at: dt.datetime) -> int:
    """Append entries to the ledger (one multi-row insert); returns how many."""
    if not entries:
        return 0
    conn.execute(
        consent_table.insert(),
        [
            {
                "workspace": workspace,
                "lead_id": e.lead_id,
                "channel": e.channel,
                "purpose": e.purpose,
                "status": e.status,
                "address": e.address,
                "at": e.at,
                "source": e.source,
                "proof": e.proof or None,
                "recorded_at": recorded_at,
            }
            for e in entries
        ],
    )
    return len(entries)


def states(conn: Connection, workspace: str, lead_ids: Iterable[int], channel: str, purpose: str) -> dict[int, ConsentState]:
    """Current consent per lead for one channel and purpose (leads with no entry are absent)."""
    ids = sorted(set(lead_ids))
    out: dict[int, ConsentState] = {}
    c = consent_table.c
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        rows = conn.execute(
            sa.select(c.lead_id, c.status, c.address, c.at, c.source, c.proof)
            .where(c.workspace == workspace, c.channel == channel, c.purpose == purpose, c.lead_id.in_(chunk))
            .order_by(c.lead_id, c.id)
        ).all()
        for r in rows:
            out[r.lead_id] = ConsentState(r.status, r.address, _utc(r.at), r.source, r.proof)
    return out


def consent_for_lead(conn: Connection, workspace: str, lead_id: int) -> list[dict[str, Any]]:
    """The full ledger of one lead, oldest first (for ``nurture consent show`` and dedup plugins)."""
    c = consent_table.c
    rows = conn.execute(
        sa.select(c.id, c.channel, c.purpose, c.status, c.address, c.at, c.source, c.proof, c.recorded_at)
        .where(c.workspace == workspace, c.lead_id == lead_id)
        .order_by(c.id)
    ).all()
    return [
        {
            "id": r.id,
            "channel": r.channel,
            "purpose": r.purpose,
            "status": r.status,
            "address": r.address,
            "at": _utc(r.at).isoformat(),
            "source": r.source,
            "proof": r.proof,
            "recorded_at": _utc(r.recorded_at).isoformat(),
        }
        for r in rows
    ]


def allows(state: ConsentState | None, address: str | None) -> tuple[bool, str]:
    """May a message go to ``address``? Returns ``(ok, reason)``."""
    if state is None:
        return False, "no consent recorded"
    if state.status == "opted_out":
        return False, f"opted out ({state.source}, {state.at.isoformat()})"
    if state.status == "pending":
        return False, "double opt-in not confirmed yet"
    addr = normalise_address(address)
    if state.address is not None and addr != state.address:
        return False, f"consent was given for another address ({state.address})"
    return True, f"opted in ({state.source}, {state.at.isoformat()})"


def suppress_address(
    conn: Connection, workspace: str, address: str, *, channel: str, purposes: Sequence[str], source: str, proof: dict[str, Any], at: dt.datetime
) -> list[int]:
    """Opt every lead using ``address`` out of ``channel`` (a bounce, a complaint); returns their ids."""
    from corecrm.storage.schema import leads

    addr = normalise_address(address)
    ids = [
        r[0]
        for r in conn.execute(
            sa.select(leads.c.id).where(leads.c.workspace == workspace, sa.or_(leads.c.email_norm == addr, sa.func.lower(leads.c.email) == addr))
        ).all()
    ]
    entries = [ConsentEntry(i, channel, p, "opted_out", at, source, addr, dict(proof)) for i in ids for p in purposes]
    record(conn, workspace, entries, recorded_at=at)
    return ids


def on_leads_merged(conn: Connection, workspace: str, from_lead: int, into_lead: int, *, at: dt.datetime) -> int:
    """Call after merging ``from_lead`` into ``into_lead``.

    Ends ``from_lead``'s active enrolments (exit ``merged``). Consent is *not*
    touched: each lead keeps its own ledger. Returns the enrolments ended.
    """
    from corecrm_plugins.nurture_sequences.tables import enrolments

    e = enrolments.c
    res = conn.execute(
        enrolments.update()
        .where(e.workspace == workspace, e.lead_id == from_lead, e.status == "active")
        .values(status="exited", exit_reason="merged", exit_detail=f"merged into lead {into_lead}", finished_at=at, due_at=None, lease_until=None)
    )
    return res.rowcount or 0


def _utc(value: Any) -> dt.datetime:
    from corecrm.storage.db import as_utc

    out = as_utc(value)
    assert out is not None
    return out
