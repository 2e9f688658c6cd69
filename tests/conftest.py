"""Shared fixtures: a fresh CRM per test, on SQLite and (when available) PostgreSQL.

PostgreSQL tests use the server named by ``CORECRM_TEST_PG_URL`` (``.ci/run``
starts a throwaway one). Without it they skip — unless
``CORECRM_REQUIRE_SERVERS=1`` (CI), where a missing server is a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from corecrm.app import Crm
from corecrm.config import Config

PG_URL = os.environ.get("CORECRM_TEST_PG_URL")
REQUIRE_SERVERS = os.environ.get("CORECRM_REQUIRE_SERVERS", "") not in ("", "0")


def require_server(what: str) -> None:
    """Skip (locally) or fail (CI) when a server the test needs is not available."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{what} is required (CORECRM_REQUIRE_SERVERS=1) but not available")
    pytest.skip(f"{what} not available")


class Clock:
    """A controllable clock for tests: ``clock.advance(minutes=5)``."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> dt.datetime:
        self.now += dt.timedelta(**kw)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _pg_database() -> Iterator[str]:
    import sqlalchemy as sa

    if not PG_URL:
        require_server("PostgreSQL (CORECRM_TEST_PG_URL)")
    name = f"corecrm_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database: SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        yield from _pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


MakeCrm = Callable[..., Crm]

#: Core tests run with only the core's own capture plugin, so that bundled
#: plugins added later do not change what they assert.
CORE_ONLY: dict[str, Any] = {"plugins": {"enabled": ["capture_json"]}}


@pytest.fixture
def make_crm(tmp_path: Path, sqlite_url: str, clock: Clock) -> Iterator[MakeCrm]:
    """Build a CRM: ``make_crm({"plugins": {...}}, plugins={"name": obj}, database=url)``.

    Entry-point plugins load as configured; ``plugins`` registers extra
    in-process plugins (like a third party would, minus packaging).
    """
    made: list[Crm] = []

    def factory(
        config: dict[str, Any] | None = None,
        *,
        plugins: dict[str, Any] | None = None,
        database: str | None = None,
        workspace: str | None = None,
        entry_points: bool = True,
    ) -> Crm:
        if config is None:
            config = CORE_ONLY
        cfg = Config.from_dict(config, path=tmp_path / "corecrm.toml")
        crm = Crm(cfg, database=database or sqlite_url, workspace=workspace, clock=clock, load_plugins=False)
        crm.plugins.load(entry_points=entry_points, extra=plugins)
        crm.ensure_schema()
        made.append(crm)
        return crm

    yield factory
    for crm in made:
        crm.close()


def json_capture(docs: Any, origin: str = "test.json") -> Any:
    import json

    from corecrm.records import RawCapture

    return RawCapture(payload=json.dumps(docs).encode(), origin=origin)
