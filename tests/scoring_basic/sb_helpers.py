"""Shared helpers for the scoring_basic tests (not a test module)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from corecrm.context import HookContext
from corecrm.models import Event, Lead

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


def ctx(events: dict[int, list[Event]] | None = None, *, now: dt.datetime = NOW, mode: str = "intake") -> HookContext:
    events = events or {}
    return HookContext(crm=None, workspace="default", now=now, mode=mode, events_loader=lambda ids: {i: events.get(i, []) for i in ids})


def ev(type_: str, days_ago: float, **detail: Any) -> Event:
    return Event(type=type_, at=NOW - dt.timedelta(days=days_ago), detail=detail)


def lead(**kw: Any) -> Lead:
    return Lead(**kw)


# --------------------------------------------------------------------------- stored leads

import json  # noqa: E402

import sqlalchemy as sa  # noqa: E402

from corecrm.config import Config  # noqa: E402
from corecrm.plugins import PluginManager  # noqa: E402
from corecrm.storage import schema  # noqa: E402
from corecrm.storage.db import make_engine  # noqa: E402


class MiniCrm:
    """The parts of ``corecrm.app.Crm`` the recompute/diff/report paths use."""

    def __init__(self, url: str, data: dict, *, now: dt.datetime = NOW, extra_plugins=()):
        import corecrm_plugins.scoring_basic as sb

        self.config = Config.from_dict(data)
        self.plugins = PluginManager(self.config).load(entry_points=False)
        self.plugins.register(sb, "scoring_basic", bundled=True)
        for name, plugin in extra_plugins:
            self.plugins.register(plugin, name)
        self.engine = make_engine(url)
        schema.metadata.create_all(self.engine)
        self._now = now

    def now(self) -> dt.datetime:
        return self._now


def insert_leads(engine, rows: list[dict]) -> list[int]:
    """Insert leads given as dicts of column values (defaults filled); return their ids."""
    ids = []
    with engine.begin() as conn:
        for r in rows:
            full = {
                "workspace": "default",
                "stage": "lead",
                "status": "open",
                "created_at": NOW - dt.timedelta(days=10),
                "updated_at": NOW - dt.timedelta(days=10),
                **r,
            }
            ids.append(conn.execute(sa.insert(schema.leads).values(**full)).inserted_primary_key[0])
    return ids


def insert_events(engine, rows: list[tuple]) -> None:
    """rows: (lead_id, type, days_ago, detail[, workspace])."""
    with engine.begin() as conn:
        for row in rows:
            lead_id, typ, days, detail = row[:4]
            ws = row[4] if len(row) > 4 else "default"
            conn.execute(sa.insert(schema.events).values(workspace=ws, lead_id=lead_id, type=typ, at=NOW - dt.timedelta(days=days), detail=detail))


def table_dump(engine) -> dict:
    """Every row of every core table, for 'nothing was written' checks."""
    out = {}
    with engine.connect() as conn:
        for t in schema.metadata.sorted_tables:
            out[t.name] = [tuple(json.dumps(v, default=str) for v in row) for row in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
    return out
