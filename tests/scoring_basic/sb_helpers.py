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

from corecrm.storage import schema  # noqa: E402


def config(settings: dict | None = None, *, workspaces: dict | None = None, also: tuple[str, ...] = ()) -> dict:
    """A configuration with only capture_json and scoring_basic enabled (other bundled plugins stay out)."""
    data: dict = {"plugins": {"enabled": ["capture_json", "scoring_basic", *also], "scoring_basic": settings or {}}}
    if workspaces:
        data["workspaces"] = {ws: {"plugins": {"scoring_basic": over}} for ws, over in workspaces.items()}
    return data


def detail_of(value):
    return value if isinstance(value, dict) or value is None else json.loads(value)


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
