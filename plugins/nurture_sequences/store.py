"""Set-based reads and writes: leads for a batch, enrolments, exits and lead events."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm.models import Lead
from corecrm.storage import schema
from corecrm.storage.db import as_utc

from corecrm_plugins.nurture_sequences.config import PLUGIN, NurtureSettings
from corecrm_plugins.nurture_sequences.tables import enrolments

_CHUNK = 900

_LEAD_COLS = (
    "id", "workspace", "stage", "status", "first_name", "last_name", "email", "phone", "company", "title", "country",
    "region", "city", "postal_code", "source", "campaign", "language", "timezone", "interests", "attributes", "consent",
    "score", "grade", "owner", "team", "customer_id", "merged_into", "created_at",
)  # fmt: skip


def chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def load_leads(conn: Connection, workspace: str, ids: Iterable[int]) -> dict[int, Lead]:
    """Stored leads by id, as :class:`corecrm.models.Lead` (one query per 900 ids)."""
    from corecrm.lifecycle import parse_stage

    out: dict[int, Lead] = {}
    cols = [schema.leads.c[n] for n in _LEAD_COLS]
    ids = sorted(set(ids))
    for chunk in chunks(ids):
        for r in conn.execute(sa.select(*cols).where(schema.leads.c.workspace == workspace, schema.leads.c.id.in_(chunk))).mappings():
            d = dict(r)
            d["stage"] = parse_stage(d["stage"])
            d["interests"] = d["interests"] or []
            d["attributes"] = d["attributes"] or {}
            d["consent"] = d["consent"] or {}
            d["created_at"] = as_utc(d["created_at"])
            out[d["id"]] = Lead(**d)
    return out


def lead_mapping(lead: Lead) -> dict[str, Any]:
    """What templates see of a lead."""
    d = {f: getattr(lead, f) for f in ("id", "first_name", "last_name", "email", "phone", "company", "title", "country", "region", "city",
                                      "postal_code", "source", "campaign", "language", "timezone", "interests", "attributes",
                                      "owner", "team", "score", "grade")}  # fmt: skip
    d["full_name"] = lead.full_name
    d["stage"] = lead.stage.value if hasattr(lead.stage, "value") else lead.stage
    return d


def write_events(conn: Connection, workspace: str, rows: Sequence[tuple[int, str, dt.datetime, dict[str, Any]]]) -> None:
    """Append ``(lead_id, type, at, detail)`` rows to the core's ``events`` table in one statement."""
    if not rows:
        return
    conn.execute(
        schema.events.insert(),
        [{"workspace": workspace, "lead_id": lid, "type": typ, "at": at, "plugin": PLUGIN, "detail": detail} for lid, typ, at, detail in rows],
    )


def _insert_ignore(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(enrolments).on_conflict_do_nothing(index_elements=["workspace", "lead_id", "sequence"])


def enrol(
    conn: Connection,
    workspace: str,
    cfg: NurtureSettings,
    items: Sequence[tuple[int, str, str, str]],
    *,
    now: dt.datetime,
    leads: Mapping[int, Lead] | None = None,
) -> list[tuple[int, str]]:
    """Enrol ``(lead_id, sequence, reason, plugin)`` items; a lead already in a sequence stays as it is.

    Returns the ``(lead_id, sequence)`` pairs that were new, each with a
    ``nurture_enrolled`` event on the lead.
    """
    items = [it for it in items if it[1] in cfg.sequences]
    if not items:
        return []
    if leads is None:
        leads = load_leads(conn, workspace, [it[0] for it in items])
    rows, seen = [], set()
    for lead_id, seq_name, reason, plugin in items:
        lead = leads.get(lead_id)
        if lead is None or lead.status == "merged" or (lead_id, seq_name) in seen:
            continue
        seen.add((lead_id, seq_name))
        first = cfg.sequences[seq_name].steps[0]
        due = first.due(now, lead.timezone, cfg.default_timezone)
        rows.append({
            "workspace": workspace, "lead_id": lead_id, "sequence": seq_name, "status": "active", "step": 0,
            "step_base_at": now, "due_at": due, "enrolled_at": now, "reason": reason or None, "enrolled_by": plugin or None,
        })  # fmt: skip
    if not rows:
        return []
    new: list[tuple[int, str]] = []
    stmt = _insert_ignore(conn).returning(enrolments.c.lead_id, enrolments.c.sequence)
    for chunk in chunks(rows, 500):
        new.extend((r[0], r[1]) for r in conn.execute(stmt, list(chunk)).all())
    by_key = {(r["lead_id"], r["sequence"]): r for r in rows}
    write_events(
        conn,
        workspace,
        [(lid, "nurture_enrolled", now, {"sequence": s, "reason": by_key[(lid, s)]["reason"], "by": by_key[(lid, s)]["enrolled_by"],
                                          "first_due": by_key[(lid, s)]["due_at"].isoformat()}) for lid, s in new],
    )  # fmt: skip
    return new


def exit_enrolments(
    conn: Connection,
    workspace: str,
    cfg: NurtureSettings,
    lead_ids: Iterable[int],
    condition: str,
    *,
    now: dt.datetime,
    detail: str = "",
    force: bool = False,
    purpose: str | None = None,
) -> list[tuple[int, str]]:
    """End active enrolments of these leads whose sequence exits on ``condition`` (all of them with ``force``).

    ``purpose`` narrows it to sequences with that purpose (an unsubscribe from
    the newsletter does not end a renewal reminder).
    """
    seqs = [n for n, s in cfg.sequences.items() if (force or condition in s.exit_on) and (purpose is None or s.purpose == purpose)]
    ids = sorted(set(lead_ids))
    if not ids:
        return []
    e = enrolments.c
    ended: list[tuple[int, int, str]] = []
    for chunk in chunks(ids):
        cond = [e.workspace == workspace, e.status == "active", e.lead_id.in_(chunk)]
        if not force or purpose is not None:
            if not seqs:
                return []
            cond.append(e.sequence.in_(seqs))
        ended.extend(tuple(r) for r in conn.execute(sa.select(e.id, e.lead_id, e.sequence).where(*cond)).all())  # type: ignore[misc]
    if not ended:
        return []
    for chunk in chunks([x[0] for x in ended]):
        conn.execute(
            enrolments.update()
            .where(e.id.in_(chunk), e.status == "active")
            .values(status="exited", exit_reason=condition, exit_detail=detail or None, finished_at=now, due_at=None, lease_until=None, lease_owner=None)
        )
    write_events(conn, workspace, [(lid, "nurture_exited", now, {"sequence": s, "reason": condition, "detail": detail}) for _id, lid, s in ended])
    return [(lid, s) for _id, lid, s in ended]
