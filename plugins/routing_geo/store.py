"""The plugin's tables and every query it runs (all set-based, all filtered by workspace).

* ``routing_rotation``: the stride-scheduling pass of each (team, member) and
  each team's clock (``member = '*'``), so round robin survives restarts.
* ``routing_sla``: one row per lead with a running first-contact SLA clock.
* ``routing_directory``: members and teams added or changed from the CLI,
  stored as the same tables the TOML uses and overlaid on it key by key.

The pull queue is the core ``leads`` table itself (``owner IS NULL``, ``team``
set, ``status = 'open'``) with a partial index on exactly those rows, so a
claim touches the queue, not the whole table. A second index on ``leads``
(workspace, owner, status, assigned_at) covers the per-member counts a batch
snapshot needs. Both are created with ``IF NOT EXISTS`` beside the plugin's
tables; they only add to the core table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm.models import Lead
from corecrm.storage import schema as core
from corecrm.storage.db import as_utc, is_postgres
from corecrm_plugins.routing_geo.model import Directory, check_directory, parse_member, parse_team
from corecrm_plugins.routing_geo.router import Snapshot, advance

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)

rotation = sa.Table(
    "routing_rotation",
    metadata,
    sa.Column("workspace", sa.String(64), primary_key=True),
    sa.Column("team", sa.String(128), primary_key=True),
    sa.Column("member", sa.String(128), primary_key=True),  #: '*' holds the team clock
    sa.Column("pass", sa.Float, nullable=False),
    sa.Column("updated_at", TZ),
)

sla = sa.Table(
    "routing_sla",
    metadata,
    sa.Column("workspace", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.Integer, primary_key=True),
    sa.Column("team", sa.String(128)),
    sa.Column("owner", sa.String(128)),
    sa.Column("rule", sa.String(128)),
    sa.Column("sla_minutes", sa.Float, nullable=False),
    sa.Column("started_at", TZ, nullable=False),
    sa.Column("due_at", TZ, nullable=False),
    sa.Column("breached_at", TZ),
    sa.Index("ix_routing_sla_due", "workspace", "breached_at", "due_at"),
)

directory_table = sa.Table(
    "routing_directory",
    metadata,
    sa.Column("workspace", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  #: member | team | queue
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

#: The claim queue index: only unassigned, queued, open leads are in it.
QUEUE_INDEX = "ix_leads_routing_queue"
_QUEUE_INDEX_DDL = (
    f"CREATE INDEX IF NOT EXISTS {QUEUE_INDEX} ON leads (workspace, team, id) "
    "WHERE owner IS NULL AND team IS NOT NULL AND status = 'open'"
)
#: Covers the per-member load and "assigned today" counts of a batch snapshot without touching table rows.
LOAD_INDEX = "ix_leads_routing_load"
_LOAD_INDEX_DDL = f"CREATE INDEX IF NOT EXISTS {LOAD_INDEX} ON leads (workspace, owner, status, assigned_at)"
sa.event.listen(rotation, "after_create", sa.DDL(_QUEUE_INDEX_DDL))
sa.event.listen(rotation, "after_create", sa.DDL(_LOAD_INDEX_DDL))

_CHUNK = 500


def ensure_schema(bind: sa.Engine | Connection) -> None:
    """Create the plugin's tables and the queue index when missing (idempotent)."""
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            ensure_schema(conn)
        return
    metadata.create_all(bind, checkfirst=True)
    if sa.inspect(bind).has_table("leads"):
        bind.exec_driver_sql(_QUEUE_INDEX_DDL)
        bind.exec_driver_sql(_LOAD_INDEX_DDL)


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# --------------------------------------------------------------------------- directory overlay


def load_overlay(conn: Connection, workspace: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = conn.execute(
        sa.select(directory_table.c.kind, directory_table.c.name, directory_table.c.data)
        .where(directory_table.c.workspace == workspace)
        .order_by(directory_table.c.kind, directory_table.c.name)
    ).all()
    return [(k, n, d if isinstance(d, dict) else json.loads(d)) for k, n, d in rows]


def apply_overlay(base: Directory, overlay: Sequence[tuple[str, str, Mapping[str, Any]]], raw_members: Mapping[str, Mapping[str, Any]], raw_teams: Mapping[str, Mapping[str, Any]]) -> Directory:
    """TOML first, then database rows key by key (``routing member set alice --inactive``)."""
    d = Directory(members=dict(base.members), teams=dict(base.teams))
    for kind, name, data in overlay:
        if kind == "member":
            merged = {**raw_members.get(name, {}), **data, "id": name}
            d.members[name] = parse_member(merged, f"routing_directory member {name}")
    for kind, name, data in overlay:
        if kind in ("team", "queue"):
            merged = {**raw_teams.get(name, {}), **data, "name": name}
            d.teams[name] = parse_team(merged, f"routing_directory {kind} {name}", {}, queue=kind == "queue")
    check_directory(d, "routing_directory")
    return d


def save_directory_entry(conn: Connection, workspace: str, kind: str, name: str, data: Mapping[str, Any], now: dt.datetime) -> None:
    conn.execute(directory_table.delete().where(
        directory_table.c.workspace == workspace, directory_table.c.kind == kind, directory_table.c.name == name))
    conn.execute(directory_table.insert().values(workspace=workspace, kind=kind, name=name, data=dict(data), updated_at=now))


def delete_directory_entry(conn: Connection, workspace: str, kind: str, name: str) -> int:
    return conn.execute(directory_table.delete().where(
        directory_table.c.workspace == workspace, directory_table.c.kind == kind, directory_table.c.name == name)).rowcount


def get_directory_entry(conn: Connection, workspace: str, kind: str, name: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(directory_table.c.data).where(
        directory_table.c.workspace == workspace, directory_table.c.kind == kind, directory_table.c.name == name)).first()
    if row is None:
        return None
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


# --------------------------------------------------------------------------- snapshot


def load_rotation(conn: Connection, workspace: str, *, teams: Sequence[str] | None = None, lock: bool = False) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Rotation passes and team clocks; ``lock`` holds the rows (PostgreSQL) while they are advanced."""
    passes: dict[tuple[str, str], float] = {}
    clocks: dict[str, float] = {}
    q = sa.select(rotation.c.team, rotation.c.member, rotation.c["pass"]).where(rotation.c.workspace == workspace)
    if teams is not None:
        q = q.where(rotation.c.team.in_(list(teams)))
    if lock:
        q = q.with_for_update()
    for team, member, p in conn.execute(q):
        if member == "*":
            clocks[team] = p
        else:
            passes[(team, member)] = p
    return passes, clocks


def local_midnight(now: dt.datetime, tzname: str) -> dt.datetime:
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(tzname))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.astimezone(dt.timezone.utc)


def load_snapshot(conn: Connection, workspace: str, directory: Directory, leads: Sequence[Lead], now: dt.datetime, *, rotation_state: bool = True) -> Snapshot:
    """Everything a batch needs, in a few grouped queries (never one per lead)."""
    snap = Snapshot()
    if rotation_state:
        snap.passes, snap.clocks = load_rotation(conn, workspace)
    members = list(directory.members.values())
    ids = [m.id for m in members]
    L = core.leads
    need_load = any(m.max_open is not None for m in members) or any(t.strategy == "least_loaded" for t in directory.teams.values())
    if need_load and ids:
        for chunk in _chunks(ids):
            for owner, n in conn.execute(
                sa.select(L.c.owner, sa.func.count()).where(L.c.workspace == workspace, L.c.owner.in_(chunk), L.c.status == "open").group_by(L.c.owner)
            ):
                snap.open_load[owner] = n
    by_cutoff: dict[dt.datetime, list[str]] = {}
    for m in members:
        if m.max_new_per_day is not None:
            by_cutoff.setdefault(local_midnight(now, m.timezone), []).append(m.id)
    for cutoff, mids in by_cutoff.items():
        for chunk in _chunks(mids):
            for owner, n in conn.execute(
                sa.select(L.c.owner, sa.func.count()).where(
                    L.c.workspace == workspace, L.c.owner.in_(chunk), L.c.assigned_at >= cutoff, L.c.assigned_at <= now
                ).group_by(L.c.owner)
            ):
                snap.new_today[owner] = n
    if any(t.sticky for t in directory.teams.values()):
        snap.sticky = load_sticky(conn, workspace, leads)
    return snap


def _email_norm(email: str | None) -> str | None:
    return email.strip().lower() if email and "@" in email else None


def load_sticky(conn: Connection, workspace: str, leads: Sequence[Lead]) -> dict[int, tuple[str, str]]:
    """Owner of an existing open lead (or a customer's lead) with the same e-mail or customer, per lead index."""
    L = core.leads
    emails = sorted({e for e in (_email_norm(x.email) for x in leads) if e})
    customers = sorted({x.customer_id for x in leads if x.customer_id is not None})
    by_email: dict[str, tuple[int, int, str, str]] = {}
    by_customer: dict[int, tuple[int, int, str, str]] = {}
    cols = (L.c.id, L.c.email_norm, L.c.customer_id, L.c.owner, L.c.status)
    for what, values, col in (("email", emails, L.c.email_norm), ("customer", customers, L.c.customer_id)):
        for chunk in _chunks(values):
            rows = conn.execute(
                sa.select(*cols).where(L.c.workspace == workspace, col.in_(chunk), L.c.owner.is_not(None),
                                       L.c.status.in_(("open", "converted")))
            ).all()
            for lid, em, cust, owner, status in rows:
                rank = 1 if status == "open" else 0  # open leads first, then the newest
                key = em if what == "email" else cust
                target = by_email if what == "email" else by_customer
                prev = target.get(key)
                cand = (rank, lid, owner, status)
                if prev is None or cand[:2] > prev[:2]:
                    target[key] = cand
    out: dict[int, tuple[str, str]] = {}
    for i, lead in enumerate(leads):
        hit = None
        if lead.customer_id is not None and lead.customer_id in by_customer:
            r = by_customer[lead.customer_id]
            if r[1] != lead.id:
                hit = (r[2], f"customer {lead.customer_id} is owned by {r[2]} (lead {r[1]})")
        e = _email_norm(lead.email)
        if hit is None and e and e in by_email:
            r = by_email[e]
            if r[1] != lead.id:
                kind = "open lead" if r[3] == "open" else "customer's lead"
                hit = (r[2], f"{kind} {r[1]} with the same e-mail is owned by {r[2]}")
        if hit:
            out[i] = hit
    return out


# --------------------------------------------------------------------------- recording committed assignments


def record_assignments(conn: Connection, workspace: str, directory: Directory, items: Sequence[Mapping[str, Any]]) -> None:
    """Advance rotation state and (re)start SLA clocks for committed assignments.

    ``items``: dicts with ``lead_id, owner, team, rule, at, sla_minutes``.
    """
    if not items:
        return
    teams = sorted({it["team"] for it in items if it.get("owner") and it.get("team") in directory.teams})
    if teams:
        passes, clocks = load_rotation(conn, workspace, teams=teams, lock=True)
        touched: set[tuple[str, str]] = set()
        for it in items:
            team, owner = it.get("team"), it.get("owner")
            t = directory.teams.get(team) if team else None
            if owner and t is not None and owner in directory.members:
                w = directory.members[owner].weight if t.strategy == "weighted" else 1.0
                advance(passes, clocks, t.name, owner, w)
                touched.add((t.name, owner))
                touched.add((t.name, "*"))
        now = max(it["at"] for it in items)
        rows = [{"workspace": workspace, "team": t, "member": m, "pass": passes[(t, m)] if m != "*" else clocks[t], "updated_at": now}
                for t, m in sorted(touched)]
        _upsert_rotation(conn, rows)
    restart_sla(conn, workspace, items)


def _upsert_rotation(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(rotation)
    stmt = stmt.on_conflict_do_update(
        index_elements=[rotation.c.workspace, rotation.c.team, rotation.c.member],
        set_={"pass": stmt.excluded["pass"], "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt, rows)


def restart_sla(conn: Connection, workspace: str, items: Sequence[Mapping[str, Any]]) -> None:
    """Start a fresh first-contact clock per lead (or none, when its rule and team have no SLA)."""
    lead_ids = [it["lead_id"] for it in items if it.get("lead_id") is not None]
    for chunk in _chunks(lead_ids):
        conn.execute(sla.delete().where(sla.c.workspace == workspace, sla.c.lead_id.in_(chunk)))
    rows = []
    for it in items:
        minutes = it.get("sla_minutes")
        if minutes is None or it.get("lead_id") is None:
            continue
        at = it["at"]
        rows.append({"workspace": workspace, "lead_id": it["lead_id"], "team": it.get("team"), "owner": it.get("owner"),
                     "rule": it.get("rule"), "sla_minutes": float(minutes), "started_at": at,
                     "due_at": at + dt.timedelta(minutes=float(minutes)), "breached_at": None})
    if rows:
        conn.execute(sla.insert(), rows)


def record_rotation_only(conn: Connection, workspace: str, directory: Directory, items: Sequence[Mapping[str, Any]]) -> None:
    """Advance rotation for assignments that keep their running SLA clock (a queued lead finally assigned)."""
    keep = {it["lead_id"]: it.get("owner") for it in items if it.get("lead_id") is not None}
    record_assignments(conn, workspace, directory, [{**it, "lead_id": None} for it in items])
    if keep:
        conn.execute(
            sla.update().where(sla.c.workspace == workspace, sla.c.lead_id == sa.bindparam("b_id")).values(owner=sa.bindparam("b_owner")),
            [{"b_id": k, "b_owner": v} for k, v in keep.items()],
        )


def insert_events(conn: Connection, workspace: str, events: Sequence[Mapping[str, Any]]) -> None:
    """Append rows to the core ``events`` table (type, lead_id, at, plugin, detail)."""
    if events:
        conn.execute(core.events.insert(), [{"workspace": workspace, "deal_id": None, **e} for e in events])


def row_to_lead(row: Mapping[str, Any]) -> Lead:
    """A stored lead row as a :class:`~corecrm.models.Lead` (for simulate and the sweep)."""
    from corecrm.lifecycle import parse_stage

    def js(v: Any, default: Any) -> Any:
        if v is None:
            return default
        return json.loads(v) if isinstance(v, str) else v

    return Lead(
        id=row["id"], workspace=row["workspace"], first_name=row["first_name"], last_name=row["last_name"],
        email=row["email"], phone=row["phone"], company=row["company"], title=row["title"],
        country=row["country"], region=row["region"], city=row["city"], postal_code=row["postal_code"],
        source=row["source"], campaign=row["campaign"], language=row["language"], timezone=row["timezone"],
        interests=js(row["interests"], []), attributes=js(row["attributes"], {}), consent=js(row["consent"], {}),
        stage=parse_stage(row["stage"]), status=row["status"], score=row["score"], grade=row["grade"],
        owner=row["owner"], team=row["team"], customer_id=row["customer_id"],
        created_at=as_utc(row["created_at"]), assigned_at=as_utc(row["assigned_at"]),
        first_contact_at=as_utc(row["first_contact_at"]), origin_key=row["origin_key"],
    )


__all__ = ["ensure_schema", "load_overlay", "load_snapshot", "metadata", "record_assignments", "restart_sla"]
