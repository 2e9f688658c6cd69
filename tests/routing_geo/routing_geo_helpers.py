"""Shared helpers for the routing_geo tests (imported by module name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import datetime as dt
import os
import tomllib
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from corecrm.models import Lead
from corecrm.storage import schema
from corecrm.storage.db import make_engine
from corecrm_plugins.routing_geo import config, store

DATA = Path(__file__).resolve().parent.parent / "data" / "routing_geo"
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)  # a Monday


def retailer_settings() -> dict[str, Any]:
    return tomllib.loads((DATA / "retailer.toml").read_text())["plugins"]["routing_geo"]


def compile_(settings: dict[str, Any]) -> config.Routing:
    return config.compile_settings(settings)


def team_settings(n: int, *, strategy: str = "round_robin", weights: list[float] | None = None, **member_extra: Any) -> dict[str, Any]:
    members = []
    for i in range(n):
        m = {"id": f"m{i:03d}", **member_extra}
        if weights:
            m["weight"] = weights[i]
        members.append(m)
    return {
        "members": members,
        "teams": [{"name": "t", "members": [m["id"] for m in members], "strategy": strategy}],
        "rules": [{"name": "all", "team": "t"}],
        "respect_working_hours": False,
    }


def lead(**kw: Any) -> Lead:
    return Lead(**kw)


# --------------------------------------------------------------------------- databases


def sqlite_engine(tmp_path: Path) -> sa.Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    schema.metadata.create_all(engine)
    store.ensure_schema(engine)
    return engine


def pg_url() -> str | None:
    return os.environ.get("CORECRM_TEST_PG_URL")


def require_pg() -> None:
    """Skip without a PostgreSQL server, except in CI (``CORECRM_REQUIRE_SERVERS=1``) where that is a failure."""
    import pytest

    if pg_url():
        return
    if os.environ.get("CORECRM_REQUIRE_SERVERS", "") not in ("", "0"):
        pytest.fail("PostgreSQL (CORECRM_TEST_PG_URL) is required (CORECRM_REQUIRE_SERVERS=1) but not set")
    pytest.skip("CORECRM_TEST_PG_URL is not set")


def pg_engine() -> tuple[sa.Engine, str]:
    """A fresh PostgreSQL database on the test server (dropped by :func:`drop_pg`)."""
    url = sa.engine.make_url(pg_url())
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"rg_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    target = url.set(database=name)
    engine = make_engine(target.render_as_string(hide_password=False))
    schema.metadata.create_all(engine)
    store.ensure_schema(engine)
    return engine, name


def drop_pg(engine: sa.Engine, name: str) -> None:
    engine.dispose()
    url = sa.engine.make_url(pg_url())
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def insert_leads(engine: sa.Engine, rows: list[dict[str, Any]], *, workspace: str = "default", at: dt.datetime = NOW) -> list[int]:
    """Store leads directly (the tests of claim/sweep need a filled ``leads`` table, not the intake pipeline)."""
    full = []
    for r in rows:
        full.append({
            "workspace": workspace, "stage": "lead", "status": "open", "created_at": at, "updated_at": at,
            "interests": [], "attributes": {}, "consent": {}, **r,
        })
        if full[-1].get("email"):
            full[-1]["email_norm"] = full[-1]["email"].lower()
    with engine.begin() as conn:
        res = conn.execute(schema.leads.insert().returning(schema.leads.c.id), full)
        return [x[0] for x in res]


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "changes nothing" assertions."""
    out = {}
    with engine.connect() as conn:
        for name in sorted(sa.inspect(conn).get_table_names()):
            t = sa.Table(name, sa.MetaData(), autoload_with=conn)
            out[name] = sorted((tuple(map(str, r)) for r in conn.execute(sa.select(t))), key=str)
    return out


def claim_worker(url: str, settings: dict[str, Any], member: str, start_event: Any, out: Any) -> None:
    """One rep in its own process: claim until the queue is empty; report what it got."""
    from corecrm_plugins.routing_geo import ops

    engine = make_engine(url)
    routing = config.compile_settings(settings)
    got = []
    start_event.wait()
    while True:
        res = ops.claim(engine, "default", routing, member, now=NOW)
        if res is None:
            break
        got.append(res["lead_id"])
    engine.dispose()
    out.put((member, got))


def queue_settings(n_members: int) -> dict[str, Any]:
    ids = [f"rep{i}" for i in range(n_members)]
    return {
        "members": [{"id": m} for m in ids],
        "teams": [{"name": "inside_sales", "members": ids, "mode": "pull", "sla_minutes": 30}],
        "rules": [{"name": "all", "team": "inside_sales"}],
        "respect_working_hours": False,
    }


class FakeCrm:
    """Just enough of ``corecrm.app.Crm`` for the hooks: an engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine


def intake(engine: sa.Engine, settings: Any, leads: list[Lead], now: dt.datetime = NOW, *, workspace: str = "default") -> list[Any]:
    """Route a batch through the plugin's hooks and store it the way the core's pipeline does."""
    from corecrm.context import HookContext
    from corecrm.models import Event
    from corecrm_plugins import routing_geo as plugin

    ctx = HookContext(crm=FakeCrm(engine), workspace=workspace, now=now, mode="intake")  # type: ignore[arg-type]
    out = plugin.crm_route_leads(leads=leads, ctx=ctx, settings=settings)
    by_index = {a.index: a for a in out}
    rows = []
    for i, x in enumerate(leads):
        a = by_index.get(i)
        rows.append({"country": x.country, "region": x.region, "postal_code": x.postal_code, "email": x.email,
                     "interests": x.interests, "source": x.source, "language": x.language,
                     "owner": a.owner if a else x.owner, "team": (a.team if a else x.team),
                     "assigned_at": now if a else None})
    ids = insert_leads(engine, rows, workspace=workspace, at=now)
    for x, lid in zip(leads, ids):
        x.id = lid
    events = [Event("assigned", now, "routing_geo", {"owner": a.owner, "team": a.team}, lead_id=leads[a.index].id) for a in out]
    plugin.crm_leads_assigned(events=events, ctx=ctx, settings=settings)
    return out
