"""Schema versioning, upgrades without data loss, and the bulk paths."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from corecrm.app import Crm
from corecrm.cli import main
from corecrm.config import Config
from corecrm.errors import CrmError
from corecrm.migrations import HEAD
from corecrm.storage import schema
from corecrm.storage.db import alembic_config, allocate_ids, bulk_insert, current_revision, head_revision, make_engine


def test_head_constant_matches_the_migration_scripts():
    assert HEAD == head_revision()


def test_migrations_produce_the_declared_schema(db_url):
    """Autogenerate finds nothing to change: the scripts and schema.py agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    crm = Crm(Config.from_dict({"plugins": {"enabled": []}}), database=db_url)
    crm.init_db()
    with crm.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []
    crm.close()


def test_db_upgrade_brings_an_older_database_forward_without_data_loss(tmp_path, monkeypatch, db_url):
    from alembic import command

    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        now = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
        conn.execute(schema.leads.insert(), {"workspace": "default", "stage": "lead", "status": "open", "email": "old@acme.test", "created_at": now, "updated_at": now})
    assert current_revision(engine) == "0001"
    engine.dispose()
    (tmp_path / "corecrm.toml").write_text(f'[crm]\ndatabase = "{db_url}"\n[plugins]\nenabled = ["capture_json"]\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CrmError, match="run `corecrm db upgrade`"):
        Crm.open()
    r = CliRunner().invoke(main, ["db", "upgrade"])
    assert r.exit_code == 0 and "0001 -> 0002" in r.output, r.output
    crm = Crm.open()
    assert [ld.email for ld in crm.leads()] == ["old@acme.test"]
    assert "ix_leads_workspace_created" in {ix["name"] for ix in sa.inspect(crm.engine).get_indexes("leads")}
    crm.close()


def test_bulk_insert_and_id_allocation(db_url):
    crm = Crm(Config.from_dict({"plugins": {"enabled": []}}), database=db_url)
    crm.init_db()
    now = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
    with crm.engine.begin() as conn:
        ids = allocate_ids(conn, schema.events, 3)
        assert len(set(ids)) == 3
        from corecrm.storage.db import dumps, ts

        bulk_insert(conn, schema.events, ("workspace", "lead_id", "type", "at", "detail"), [("default", i, "note", ts(now, conn), dumps({"n": i})) for i in ids])
    with crm.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.events.c.lead_id, schema.events.c.detail, schema.events.c.at).order_by(schema.events.c.id)).all()
    assert [(r.lead_id, r.detail) for r in rows] == [(i, {"n": i}) for i in ids]
    assert rows[0].at.replace(tzinfo=None) == now.replace(tzinfo=None)
    crm.close()
