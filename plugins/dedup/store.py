"""The plugin's table of blocking keys, and set-based reads of stored leads.

``dedup_keys`` holds one row per (lead, blocking key). New leads are indexed
after they are stored (``crm_leads_captured``), ``dedup scan`` rebuilds the
whole workspace, and a batch of incoming leads is looked up with one ``IN``
query per few thousand keys, never one query per lead.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corecrm.models import Lead
from corecrm.rows import lead_from_row
from corecrm.storage import schema

metadata = sa.MetaData()

dedup_keys = sa.Table(
    "dedup_keys",
    metadata,
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("lead_id", sa.Integer, nullable=False),
    sa.Index("ix_dedup_keys_workspace_key", "workspace", "key"),
    sa.Index("ix_dedup_keys_workspace_lead", "workspace", "lead_id"),
)

#: Statuses whose leads take part in matching (a merged-away lead lives on in its survivor).
MATCHABLE = ("open", "disqualified", "converted")
_CHUNK = 2000


def ensure_tables(conn: Connection) -> None:
    """Create the plugin's tables when the core has not (older cores without ``crm_db_schema``)."""
    metadata.create_all(conn, checkfirst=True)


def _decode(v: Any) -> Any:
    if isinstance(v, (str, bytes)):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _chunks(seq: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def load_leads(conn: Connection, workspace: str, ids: Iterable[int], *, matchable_only: bool = True) -> dict[int, Lead]:
    """Stored leads by id, in one query per couple of thousand ids."""
    t = schema.leads
    out: dict[int, Lead] = {}
    for part in _chunks(sorted(set(ids))):
        q = sa.select(t).where(t.c.workspace == workspace, t.c.id.in_(part))
        if matchable_only:
            q = q.where(t.c.status.in_(MATCHABLE))
        for row in conn.execute(q).mappings():
            out[row["id"]] = lead_from_row(row)
    return out


class MatchRow:
    """A stored lead with just the columns the rules read (``get`` like :meth:`Lead.get`)."""

    __slots__ = ("id", "_values", "_attributes")

    def __init__(self, id: int, values: dict[str, Any], attributes: dict[str, Any]) -> None:
        self.id = id
        self._values = values
        self._attributes = attributes

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, field: str, default: Any = None) -> Any:
        if field.startswith("attributes."):
            value: Any = self._attributes
            for part in field.split(".")[1:]:
                if not isinstance(value, dict) or part not in value:
                    return default
                value = value[part]
            return value
        return self._values.get(field, default)


def load_for_matching(conn: Connection, workspace: str, ids: Iterable[int], fields: Iterable[str]) -> dict[int, MatchRow]:
    """Matchable stored leads by id, reading only the columns the rules use (cheaper than whole leads)."""
    t = schema.leads
    plain = sorted({f for f in fields if not f.startswith("attributes.") and f in t.c})
    want_attrs = any(f.startswith("attributes.") for f in fields)
    cols = [t.c.id] + [t.c[f] for f in plain] + ([t.c.attributes] if want_attrs else [])
    out: dict[int, MatchRow] = {}
    for part in _chunks(sorted(set(ids))):
        q = sa.select(*cols).where(t.c.workspace == workspace, t.c.id.in_(part), t.c.status.in_(MATCHABLE))
        for row in conn.execute(q):
            values = dict(zip(plain, row[1 : 1 + len(plain)]))
            attrs = (_decode(row[-1]) or {}) if want_attrs else {}
            out[row[0]] = MatchRow(row[0], values, attrs)
    return out


def iter_leads(conn: Connection, workspace: str, batch: int = 5000) -> Iterator[Lead]:
    """Every matchable lead of the workspace, streamed in id order."""
    t = schema.leads
    last = 0
    while True:
        q = (
            sa.select(t)
            .where(t.c.workspace == workspace, t.c.status.in_(MATCHABLE), t.c.id > last)
            .order_by(t.c.id)
            .limit(batch)
        )
        rows = conn.execute(q).mappings().all()
        if not rows:
            return
        for row in rows:
            yield lead_from_row(row)
        last = rows[-1]["id"]


def lookup(conn: Connection, workspace: str, keys: Iterable[str]) -> dict[str, list[int]]:
    """Stored lead ids per blocking key, for a whole batch's keys at once."""
    out: dict[str, list[int]] = {}
    t = dedup_keys
    for part in _chunks(sorted(set(keys))):
        q = sa.select(t.c.key, t.c.lead_id).where(t.c.workspace == workspace, t.c.key.in_(part))
        for key, lead_id in conn.execute(q):
            out.setdefault(key, []).append(lead_id)
    return out


def index_leads(conn: Connection, workspace: str, keyed: Iterable[tuple[int, Sequence[str]]], *, replace: bool = True) -> int:
    """Store the keys of stored leads ``(lead_id, keys)``; their old keys are replaced. Returns rows written."""
    from corecrm.storage.db import bulk_insert

    items = list(keyed)
    if replace and items:
        for part in _chunks([lid for lid, _ in items]):
            conn.execute(sa.delete(dedup_keys).where(dedup_keys.c.workspace == workspace, dedup_keys.c.lead_id.in_(part)))
    rows = [(workspace, k, lid) for lid, keys in items for k in keys]
    bulk_insert(conn, dedup_keys, ("workspace", "key", "lead_id"), rows)
    return len(rows)


def clear_index(conn: Connection, workspace: str) -> None:
    conn.execute(sa.delete(dedup_keys).where(dedup_keys.c.workspace == workspace))


def candidate_pairs_sql(conn: Connection, workspace: str, max_block_size: int) -> Iterator[tuple[int, int]]:
    """Pairs of stored leads sharing a key, found by a self-join in the database (set-based)."""
    k1, k2 = dedup_keys.alias("k1"), dedup_keys.alias("k2")
    small = (
        sa.select(dedup_keys.c.key)
        .where(dedup_keys.c.workspace == workspace)
        .group_by(dedup_keys.c.key)
        .having(sa.func.count() >= 2, sa.func.count() <= max_block_size)
        .subquery()
    )
    q = (
        sa.select(k1.c.lead_id, k2.c.lead_id)
        .select_from(k1.join(small, small.c.key == k1.c.key))
        .join(k2, sa.and_(k2.c.workspace == k1.c.workspace, k2.c.key == k1.c.key, k2.c.lead_id > k1.c.lead_id))
        .where(k1.c.workspace == workspace)
        .distinct()
    )
    for a, b in conn.execute(q):
        yield a, b


def oversized_blocks(conn: Connection, workspace: str, max_block_size: int) -> int:
    q = (
        sa.select(sa.func.count())
        .select_from(
            sa.select(dedup_keys.c.key)
            .where(dedup_keys.c.workspace == workspace)
            .group_by(dedup_keys.c.key)
            .having(sa.func.count() > max_block_size)
            .subquery()
        )
    )
    return int(conn.execute(q).scalar_one())


def add_events(conn: Connection, workspace: str, events: Sequence[dict[str, Any]], at: dt.datetime, plugin: str) -> None:
    """Append ``events`` rows (``lead_id``, ``type``, ``detail``)."""
    if events:
        conn.execute(
            sa.insert(schema.events),
            [{"workspace": workspace, "lead_id": e["lead_id"], "type": e["type"], "at": at, "plugin": plugin, "detail": e["detail"]} for e in events],
        )
