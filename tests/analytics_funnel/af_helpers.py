"""Test helpers for the analytics_funnel plugin: a database and hand-built rows.

Rows are inserted straight into the core tables (``corecrm.storage.schema``),
so each test states exactly the history its expected numbers come from.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from corecrm.config import Config
from corecrm.app import Crm
from corecrm.storage import schema

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


class ReportCrm(Crm):
    """A real :class:`Crm` with only this plugin enabled, plus row builders for hand-built histories."""

    @classmethod
    def build(cls, url: str, config: dict | None = None, now: dt.datetime | None = None) -> "ReportCrm":
        data = {"plugins": {"enabled": ["analytics_funnel"]}}
        data.update(config or {})
        cfg = Config.from_dict(data)
        when = now or day(400)
        crm = cls(cfg, database=url, clock=lambda: when, load_plugins=False)
        crm.plugins.load()
        crm.ensure_schema()
        return crm

    # ------------------------------------------------------------- row builders
    def _insert(self, table: sa.Table, **values: Any) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(table.insert().values(**values))
            return int(res.inserted_primary_key[0])

    def lead(self, *, ws: str = "default", created: dt.datetime = T0, stage: str = "lead", stages: tuple = (), source: str | None = None,
             campaign: str | None = None, owner: str | None = None, team: str | None = None, assigned_at: dt.datetime | None = None,
             first_contact_at: dt.datetime | None = None, customer_id: int | None = None) -> int:
        """A lead with a ``stage_changed`` row for its intake stage and one per ``(stage, at)`` in ``stages``."""
        final = stages[-1][0] if stages else stage
        lid = self._insert(schema.leads, workspace=ws, stage=final, status="open", source=source, campaign=campaign, owner=owner, team=team,
                           created_at=created, updated_at=created, assigned_at=assigned_at, first_contact_at=first_contact_at, customer_id=customer_id)
        self.event(lid, "stage_changed", created, {"from": None, "to": stage, "reason": "captured"}, ws=ws)
        prev = stage
        for st, at in stages:
            self.event(lid, "stage_changed", at, {"from": prev, "to": st, "reason": "test"}, ws=ws)
            prev = st
        return lid

    def event(self, lead_id: int | None, type_: str, at: dt.datetime, detail: dict | None = None, *, ws: str = "default", deal_id: int | None = None) -> int:
        return self._insert(schema.events, workspace=ws, lead_id=lead_id, deal_id=deal_id, type=type_, at=at, plugin="test", detail=detail or {})

    def customer(self, *, ws: str = "default", lead_id: int | None = None, created: dt.datetime = T0, name: str | None = None) -> int:
        return self._insert(schema.customers, workspace=ws, lead_id=lead_id, name=name, created_at=created)

    def deal(self, *, ws: str = "default", lead_id: int | None = None, customer_id: int | None = None, pipeline: str = "sales", stage: str = "new",
             amount: float | None = None, owner: str | None = None, status: str = "open", expected_close: dt.date | None = None,
             created: dt.datetime = T0, closed: dt.datetime | None = None) -> int:
        return self._insert(schema.deals, workspace=ws, lead_id=lead_id, customer_id=customer_id, pipeline=pipeline, stage=stage, amount=amount,
                            owner=owner, status=status, expected_close=expected_close, created_at=created, closed_at=closed)

    def tx(self, customer_id: int, at: dt.date, amount: float, cost: float | None = None, *, ws: str = "default") -> None:
        self._insert(schema.transactions, workspace=ws, customer_id=customer_id, at=at, amount=amount, cost=cost)


def svg_root(path: Any):
    import xml.etree.ElementTree as ET

    return ET.parse(path).getroot()


NS = {"s": "http://www.w3.org/2000/svg"}
# --------------------------------------------------------------------------- fixtures
# Test modules import these (no conftest.py here: the core's tests import their
# own ``conftest`` module by name, and a second one would shadow it).

import pytest  # noqa: E402


@pytest.fixture
def make_report_crm(tmp_path):
    made = []

    def factory(url=None, config=None, now=None):
        crm = ReportCrm.build(url or f"sqlite:///{tmp_path / 'crm.db'}", config, now)
        made.append(crm)
        return crm

    yield factory
    for crm in made:
        crm.close()


@pytest.fixture
def crm(make_report_crm, db_url):
    """A CRM on SQLite, then on PostgreSQL: every report is SQL, so every test runs on both."""
    return make_report_crm(db_url)


@pytest.fixture
def sqlite_crm(make_report_crm):
    return make_report_crm()


__all__ = ["NS", "ReportCrm", "T0", "crm", "day", "json", "make_report_crm", "sqlite_crm", "svg_root"]
