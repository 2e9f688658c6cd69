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
