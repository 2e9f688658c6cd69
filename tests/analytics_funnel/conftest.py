"""Fixtures for the analytics_funnel tests: a fresh database per test.

``crm`` runs on SQLite; ``any_crm`` runs on SQLite and, when
``CORECRM_TEST_PG_URL`` is set, also on that PostgreSQL server.
"""

from __future__ import annotations

import os

import pytest

from af_helpers import ReportCrm, make_engine, pg_url, reset_pg


@pytest.fixture
def crm(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    yield ReportCrm(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_crm(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'crm.db'}")
    else:
        url = pg_url()
        if not url:
            if os.environ.get("CORECRM_REQUIRE_SERVERS"):
                pytest.fail("CORECRM_REQUIRE_SERVERS is set but CORECRM_TEST_PG_URL is not")
            pytest.skip("CORECRM_TEST_PG_URL is not set")
        engine = reset_pg(url)
    yield ReportCrm(engine)
    engine.dispose()
