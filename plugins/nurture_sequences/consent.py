"""The consent ledger: the public, per-lead consent API.

Consent belongs to one person (one lead id) and one address. Rows are only
ever appended; the state for ``(lead, channel, purpose)`` is the *statement
made last*: the row with the latest ``at``, and of rows with the same ``at``
the one recorded last (highest id). The order rows were recorded in does not
decide otherwise: an old opt-in imported after a newer opt-out does not undo
the opt-out. :func:`is_current` is that rule in SQL; every reader of the
current state uses it. Nothing is sent on a channel that requires consent unless that state is
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

Consent collected by other plugins
----------------------------------
:func:`record_consents` is the entry point for plugins that collect consent
themselves (``capture_web``'s form checkbox): it takes plain dicts, validates
them, resolves each lead's address and appends the statements in one
transaction, skipping any statement already in the ledger, so delivering the
same capture twice records it once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm_plugins.nurture_sequences import confirmations
from corecrm_plugins.nurture_sequences.tables import consent as consent_table

log = logging.getLogger("corecrm.nurture.consent")

STATUSES = ("opted_in", "opted_out", "pending")
#: Other words for a status that :func:`record_consents` accepts (``granted`` is what capture_web writes on the lead).
STATUS_ALIASES: Mapping[str, str] = {"granted": "opted_in"}
#: Channels whose consent concerns the lead's phone number (e-mail concerns its e-mail address).
PHONE_CHANNELS: frozenset[str] = frozenset({"sms", "whatsapp", "call"})

#: Lead fields a dedup plugin must never carry from a merged lead to the survivor.
MERGE_EXCLUDED_FIELDS: tuple[str, ...] = ("consent",)

_CHUNK = 900


def normalise_address(address: str | None) -> str | None:
    if not address:
        return None
    return address.strip().lower() or None


@attrs.define(slots=True)
class ConsentEntry:
    """One ledger row: a person gave, withdrew or is asked to confirm consent.

    ``at`` is kept in UTC (a naive time is taken as UTC): SQLite drops the
    offset of a stored time, so a time written with another offset would be
    read back shifted.
    """

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
        self.at = _utc(self.at)


@attrs.define(slots=True, frozen=True)
class ConsentState:
    status: str
    address: str | None
    at: dt.datetime
    source: str
    proof: Mapping[str, Any] | None = None
    id: int | None = None  #: the ledger row
    recorded_at: dt.datetime | None = None


def is_current(row: Any = consent_table) -> Any:
    """SQL condition: ``row`` (the ledger or an alias of it) is the current statement for its lead, channel and purpose.

    It is when no other statement for them was made later (greater ``at``) or
    at the same instant but recorded later (greater id). Set-based: use it in
    the ``WHERE`` of a query over many leads (the ledger index on lead,
    channel and purpose serves the lookup).
    """
    newer = consent_table.alias("newer_statement")
    n, c = newer.c, row.c
    return ~sa.exists().where(
        n.workspace == c.workspace,
        n.lead_id == c.lead_id,
        n.channel == c.channel,
        n.purpose == c.purpose,
        sa.or_(n.at > c.at, sa.and_(n.at == c.at, n.id > c.id)),
    )


def record(conn: Connection, workspace: str, entries: Sequence[ConsentEntry], *, recorded_at: dt.datetime) -> int:
    """Append entries to the ledger (one multi-row insert); returns how many.

    Every time is written in UTC. Appends as given; :func:`record_new`
    skips statements already in the ledger.
    """
    if not entries:
        return 0
    recorded_at = _utc(recorded_at)
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
                "at": _utc(e.at),
                "source": e.source,
                "proof": e.proof or None,
                "recorded_at": recorded_at,
            }
            for e in entries
        ],
    )
    return len(entries)


class ConsentEntryError(ValueError):
    """An entry handed to :func:`record_consents` is malformed; ``field`` names it (``entries[2].at``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def ledger_address(channel: str, email: str | None, phone: str | None) -> str | None:
    """The lead address a consent on ``channel`` concerns (``None``: the channel has no address)."""
    if channel == "email":
        return email
    if channel in PHONE_CHANNELS:
        return phone
    return None


def _text(entry: Mapping[str, Any], key: str, field: str, *, max_len: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConsentEntryError(field, f"expected a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ConsentEntryError(field, f"longer than {max_len} characters: {value!r}")
    return value


def _when(value: Any, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        at = value
    elif isinstance(value, str):
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConsentEntryError(field, f"expected an ISO 8601 time such as '2026-03-02T09:00:00+00:00', got {value!r}") from None
    else:
        raise ConsentEntryError(field, f"expected an ISO 8601 time such as '2026-03-02T09:00:00+00:00', got {value!r}")
    return at.replace(tzinfo=dt.timezone.utc) if at.tzinfo is None else at.astimezone(dt.timezone.utc)


def parse_entry(entry: Any, index: int) -> dict[str, Any]:
    """Check one :func:`record_consents` entry; returns it normalised (raises :class:`ConsentEntryError`)."""
    where = f"entries[{index}]"
    if not isinstance(entry, Mapping):
        raise ConsentEntryError(where, f"expected a mapping, got {type(entry).__name__}")
    lead_id = entry.get("lead_id")
    if isinstance(lead_id, bool) or not isinstance(lead_id, int):
        raise ConsentEntryError(f"{where}.lead_id", f"expected a lead id (an integer), got {lead_id!r}")
    raw_status = entry.get("status")
    status = STATUS_ALIASES.get(raw_status, raw_status) if isinstance(raw_status, str) else raw_status
    if status not in STATUSES:
        valid = ", ".join((*STATUSES, *STATUS_ALIASES))
        raise ConsentEntryError(f"{where}.status", f"expected one of {valid}, got {raw_status!r}")
    proof = entry.get("proof")
    if proof is not None and not isinstance(proof, Mapping):
        raise ConsentEntryError(f"{where}.proof", f"expected a mapping or nothing, got {type(proof).__name__}")
    return {
        "lead_id": lead_id,
        "channel": _text(entry, "channel", f"{where}.channel", max_len=64),
        "purpose": _text(entry, "purpose", f"{where}.purpose", max_len=64),
        "status": status,
        "at": _when(entry.get("at"), f"{where}.at"),
        "source": _text(entry, "source", f"{where}.source", max_len=64),
        "proof": dict(proof or {}),
    }


def record_consents(crm: Any, workspace: str, entries: Sequence[Mapping[str, Any]]) -> int:
    """Append consent statements another plugin collected; returns how many rows were added.

    Each entry is ``{"lead_id", "channel", "purpose", "status", "at",
    "source", "proof"}``: ``status`` is ``opted_in``, ``opted_out``,
    ``pending`` or ``granted`` (= ``opted_in``), ``at`` an ISO 8601 time
    (UTC when it has no offset), ``proof`` a JSON object (optional). Every
    entry is checked before anything is written; the first bad one raises
    :class:`ConsentEntryError` naming it (``entries[1].at: …``), as does a
    lead id that is not a lead of ``workspace``.

    * The address is the lead's own: its e-mail for ``email``, its phone for
      ``sms``, ``whatsapp`` and ``call``. An opt-in for a channel the lead has
      no address on is not recorded (a consent without an address would cover
      any address added later); an opt-out always is.
    * An opt-in on a channel under ``double_opt_in`` is recorded ``pending``.
    * Idempotent: a statement already in the ledger (same lead, channel,
      purpose, address, source and ``at``) is not appended again, so a
      re-delivered capture cannot add rows, nor re-open consent withdrawn
      since. One transaction; on PostgreSQL the leads' rows are locked for it
      so two deliveries of one capture cannot both append.
    * The consent stays on the lead it was given for, merged or not.
    * A new ``pending`` e-mail statement queues one double opt-in
      confirmation e-mail (:mod:`.confirmations`), sent at once unless
      ``confirm_send = "scheduler"``.
    """
    parsed = [parse_entry(e, i) for i, e in enumerate(entries)]
    if not parsed:
        return 0
    from corecrm.storage.schema import leads

    from corecrm_plugins.nurture_sequences.config import PLUGIN

    double_opt_in = frozenset(crm.plugins.settings(PLUGIN, workspace).get("double_opt_in") or ())
    now = crm.now()
    lc = leads.c
    ids = sorted({p["lead_id"] for p in parsed})
    with crm.engine.begin() as conn:
        addresses: dict[int, tuple[str | None, str | None]] = {}
        for i in range(0, len(ids), _CHUNK):
            sel = sa.select(lc.id, lc.email, lc.phone).where(lc.workspace == workspace, lc.id.in_(ids[i : i + _CHUNK])).order_by(lc.id)
            if conn.dialect.name == "postgresql":
                sel = sel.with_for_update(key_share=True)  # FOR NO KEY UPDATE: serialises deliveries for these leads
            addresses.update({r.id: (r.email, r.phone) for r in conn.execute(sel).all()})
        new: list[ConsentEntry] = []
        for i, p in enumerate(parsed):
            if p["lead_id"] not in addresses:
                raise ConsentEntryError(f"entries[{i}].lead_id", f"no lead {p['lead_id']} in workspace {workspace!r}")
            address = normalise_address(ledger_address(p["channel"], *addresses[p["lead_id"]]))
            status = p["status"]
            if status == "opted_in" and p["channel"] in double_opt_in:
                status = "pending"
            if status != "opted_out" and address is None and (p["channel"] == "email" or p["channel"] in PHONE_CHANNELS):
                log.info("lead %s: %s consent from %s not recorded: the lead has no %s address", p["lead_id"], p["channel"], p["source"], p["channel"])
                continue
            new.append(ConsentEntry(p["lead_id"], p["channel"], p["purpose"], status, p["at"], p["source"], address, p["proof"]))
        added = record_new(conn, workspace, new, recorded_at=now)
        pending = sorted({e.lead_id for e in new if e.status == "pending"})
        queued = confirmations.queue(conn, workspace, double_opt_in, now=now, lead_ids=pending) if added and pending else 0
    if queued:
        from corecrm_plugins.nurture_sequences.actions import runtime

        confirmations.after_queued(runtime(crm, workspace), now, pending)
    return added


def record_new(conn: Connection, workspace: str, entries: Sequence[ConsentEntry], *, recorded_at: dt.datetime) -> int:
    """Append the entries whose statement is not in the ledger yet; returns how many were added.

    A statement is the same when its lead, channel, purpose, address, source
    and ``at`` (as an instant) are; its status is not compared, so a repeat
    can neither add a row nor re-open consent withdrawn since. One read of
    the ledger per batch. Callers serialise concurrent writers themselves
    (:func:`record_consents` and the capture path lock the leads' rows on
    PostgreSQL).
    """
    new = _not_recorded_yet(conn, workspace, entries)
    return record(conn, workspace, new, recorded_at=recorded_at)


def _statement_key(lead_id: int, channel: str, purpose: str, address: str | None, source: str, at: dt.datetime) -> tuple[Any, ...]:
    return (lead_id, channel, purpose, address, source, _utc(at))


def _not_recorded_yet(conn: Connection, workspace: str, entries: Sequence[ConsentEntry]) -> list[ConsentEntry]:
    """The entries whose statement is not in the ledger yet (nor earlier in ``entries``)."""
    if not entries:
        return []
    c = consent_table.c
    seen: set[tuple[Any, ...]] = set()
    ids = sorted({e.lead_id for e in entries})
    sources = sorted({e.source for e in entries})
    for i in range(0, len(ids), _CHUNK):
        for r in conn.execute(
            sa.select(c.lead_id, c.channel, c.purpose, c.address, c.source, c.at)
            .where(c.workspace == workspace, c.lead_id.in_(ids[i : i + _CHUNK]), c.source.in_(sources))
        ).all():
            seen.add(_statement_key(r.lead_id, r.channel, r.purpose, r.address, r.source, r.at))
    out = []
    for e in entries:
        key = _statement_key(e.lead_id, e.channel, e.purpose, e.address, e.source, e.at)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def states(conn: Connection, workspace: str, lead_ids: Iterable[int], channel: str, purpose: str) -> dict[int, ConsentState]:
    """Current consent per lead for one channel and purpose (leads with no entry are absent).

    The current statement is the one made last (see :func:`is_current`), not
    the row recorded last. One query per chunk of leads.
    """
    ids = sorted(set(lead_ids))
    out: dict[int, ConsentState] = {}
    c = consent_table.c
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        rows = conn.execute(
            sa.select(c.id, c.lead_id, c.status, c.address, c.at, c.source, c.proof, c.recorded_at)
            .where(c.workspace == workspace, c.channel == channel, c.purpose == purpose, c.lead_id.in_(chunk), is_current(consent_table))
            .order_by(c.lead_id)
        ).all()
        for r in rows:
            out[r.lead_id] = ConsentState(r.status, r.address, _utc(r.at), r.source, r.proof, r.id, _utc(r.recorded_at))
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
