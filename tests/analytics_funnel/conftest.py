"""Fixtures for the analytics_funnel tests: a fresh CRM per test.

``crm`` runs on SQLite and on PostgreSQL (the root conftest's ``db_url``:
skipped locally without ``CORECRM_TEST_PG_URL``, a failure in CI).
"""

from __future__ import annotations

import pytest

from af_helpers import ReportCrm


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
