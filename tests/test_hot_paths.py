"""The hot paths' plumbing: the kept write transaction, compact intake history, cached call order, JSON encoding."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from conftest import json_capture
from crmtest_plugins import DomainScorer, RoundRobinRouter

from corecrm.models import Lead
from corecrm.records import ScoreContribution
from corecrm.storage import schema
from corecrm.storage.db import dumps


def _lead_count(crm) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(schema.leads)).scalar_one()


def test_write_commits_driver_and_sqlalchemy_statements_together(make_crm, db_url):
    crm = make_crm(database=db_url)
    with crm.write() as conn:
        conn.execute(schema.activities.insert(), {"workspace": "default", "type": "note", "note": "via SQLAlchemy", "done": True, "at": crm.now()})
        conn.connection.driver_connection.execute(
            "INSERT INTO activities (workspace, type, note, done, at) VALUES ('default', 'note', 'via driver', 1, '2026-01-01 00:00:00.000000')"
            if conn.dialect.name == "sqlite"
            else "INSERT INTO activities (workspace, type, note, done, at) VALUES ('default', 'note', 'via driver', true, now())"
        )
    with crm.engine.connect() as conn:
        notes = sorted(conn.execute(sa.select(schema.activities.c.note)).scalars())
    assert notes == ["via SQLAlchemy", "via driver"]


def test_write_rolls_back_everything_on_error(make_crm, db_url):
    crm = make_crm(database=db_url)
    with pytest.raises(RuntimeError, match="boom"):
        with crm.write() as conn:
            conn.execute(schema.activities.insert(), {"workspace": "default", "type": "note", "note": "lost", "done": True, "at": crm.now()})
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with crm.write() as conn:
            conn.connection.driver_connection.execute(
                "INSERT INTO activities (workspace, type, note, done, at) VALUES ('default', 'note', 'lost too', "
                + ("1, '2026-01-01 00:00:00.000000')" if conn.dialect.name == "sqlite" else "true, now())")
            )
            raise RuntimeError("boom")
    with crm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.activities)).scalar_one() == 0
    # and the kept connection is usable afterwards
    [res] = crm.capture([json_capture({"email": "after@x.test"})])
    assert res.status == "processed" and _lead_count(crm) == 1


def test_write_is_not_reentrant_and_serialises_threads(make_crm, sqlite_url):
    crm = make_crm(database=sqlite_url)
    with crm.write():
        with pytest.raises(RuntimeError, match="not re-entrant"):
            with crm.write():
                pass
    errors: list[BaseException] = []

    def capture_many(t: int) -> None:
        try:
            for i in range(25):
                crm.capture([json_capture({"email": f"t{t}-{i}@x.test"})])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=capture_many, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert _lead_count(crm) == 100


def test_intake_history_is_stored_without_times_and_read_back_with_the_leads(make_crm, db_url, clock):
    crm = make_crm(database=db_url, plugins={"scorer": DomainScorer(), "router": RoundRobinRouter()})
    [res] = crm.capture([json_capture({"email": "ann@acme.test"})])
    with crm.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.leads.c.intake).where(schema.leads.c.id == res.lead_ids[0])).scalar_one()
    assert stored and all("at" not in h for h in stored)
    assert {h["type"] for h in stored} >= {"scored", "assigned"}
    lead = crm.lead(res.lead_ids[0])
    history = crm.history(lead.id)
    steps = [e for e in history if e.type in ("scored", "assigned")]
    assert steps and all(e.at == lead.created_at == clock.now for e in steps)
    assert {e.plugin for e in steps} == {"scorer", "router"}


def test_quarantined_history_keeps_its_times(make_crm, db_url):
    from crmtest_plugins import ExplodingScorer, Normaliser

    crm = make_crm(database=db_url, plugins={"norm": Normaliser(), "exploder": ExplodingScorer()}, )
    crm.capture([json_capture([{"email": "BOOM@x.test"}])])
    [q] = crm.quarantined()
    history = q["lead"]["history"]
    assert {h["type"] for h in history} == {"field_updated", "finding"}
    assert all(h["at"] == crm.now().isoformat() for h in history)
    q_id = q["id"]
    crm.plugins.pm.unregister(name="exploder")
    assert crm.retry()["resolved"] == 1
    with crm.engine.connect() as conn:
        lead_id = conn.execute(sa.select(schema.quarantine.c.lead_id).where(schema.quarantine.c.id == q_id)).scalar_one()
    kinds = [e.type for e in crm.history(lead_id)]
    assert kinds.count("field_updated") == 1 and kinds.count("finding") == 1


def test_identical_scores_and_assignments_are_explained_once_per_batch(make_crm):
    class Flat:
        from corecrm.hooks import hookimpl

        @hookimpl
        def crm_score_leads(self, leads):
            return [ScoreContribution(i, "flat", 5, "everyone") for i in range(len(leads))] + [ScoreContribution(0, "first", 1, "the first")]

    crm = make_crm(plugins={"flat": Flat(), "router": RoundRobinRouter()})
    res = crm.intake([Lead(email=f"p{i}@x.test", origin_key=f"o{i}") for i in range(6)])
    leads = [crm.lead(i) for i in res.created]
    assert [ld.score for ld in leads] == [6, 5, 5, 5, 5, 5]
    assert leads[0].score_detail["contributions"][1]["rule"] == "first"
    assert [c["rule"] for c in leads[3].score_detail["contributions"]] == ["flat"]
    assert {ld.owner for ld in leads} == {"alice", "bob"}


def test_call_order_cache_follows_registration(make_crm):
    crm = make_crm()
    assert crm.plugins.impls("crm_score_leads", "default") == []
    scorer = DomainScorer()
    crm.plugins.pm.register(scorer, name="late")
    assert [n for n, _ in crm.plugins.impls("crm_score_leads", "default")] == ["late"]
    crm.plugins.pm.unregister(name="late")
    assert crm.plugins.impls("crm_score_leads", "default") == []


def test_dumps_falls_back_for_what_orjson_refuses():
    import datetime as dt

    assert dumps(None) is None
    assert dumps({"n": 2**70}) == '{"n":1180591620717411303424}'
    assert dumps({1: "a"}) == '{"1":"a"}'
    assert dumps({"at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "s": {"x"}}) == '{"at":"2026-01-02T03:04:05+00:00","s":["x"]}'
    assert dumps({"é": "ü"}) == '{"é":"ü"}'


def _wal_frames(path) -> int:
    import os

    wal = f"{path}-wal"
    return os.path.getsize(wal) if os.path.exists(wal) else 0


def test_wal_checkpoints_run_on_a_background_thread(make_crm, tmp_path):
    import sqlite3
    import time

    db = tmp_path / "ckpt.db"
    crm = make_crm(database=f"sqlite:///{db}")
    crm.capture([json_capture({"email": "first@x.test"})])
    ckpt = crm._checkpointer
    assert ckpt is not None
    with crm.write() as conn:  # the hot connection does not checkpoint inline
        assert conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(30):
        crm.capture([json_capture({"email": f"p{i}@x.test"})])
    deadline = time.monotonic() + 10
    while ckpt.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ckpt.checkpoints >= 1
    # Everything the log held is in the database file now: a reader that ignores the log sees it all.
    before = ckpt.checkpoints
    crm.capture([json_capture({"email": "last@x.test"})])
    deadline = time.monotonic() + 10
    while ckpt.checkpoints == before and time.monotonic() < deadline:
        time.sleep(0.05)
    snap = tmp_path / "copy.db"
    snap.write_bytes(db.read_bytes())  # the main file alone, without -wal
    con = sqlite3.connect(snap)
    try:
        assert con.execute("SELECT count(*) FROM leads").fetchone()[0] == 32
    finally:
        con.close()


def test_checkpoint_thread_ends_when_idle_and_on_close(make_crm, tmp_path, monkeypatch):
    import time

    from corecrm.storage.checkpoint import BackgroundCheckpointer

    monkeypatch.setattr(BackgroundCheckpointer, "idle_exit", 0.3)
    crm = make_crm(database=f"sqlite:///{tmp_path / 'idle.db'}")
    crm.capture([json_capture({"email": "a@x.test"})])
    ckpt = crm._checkpointer
    assert ckpt is not None and ckpt._thread is not None and ckpt._thread.is_alive()
    deadline = time.monotonic() + 10
    while ckpt._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ckpt._thread.is_alive()
    crm.capture([json_capture({"email": "b@x.test"})])  # the next commit starts it again
    assert ckpt._thread.is_alive()
    thread = ckpt._thread
    crm.close()
    assert not thread.is_alive()


def test_a_forked_child_opens_its_own_write_connection(make_crm, tmp_path):
    import os

    crm = make_crm(database=f"sqlite:///{tmp_path / 'fork.db'}")
    crm.capture([json_capture({"email": "parent@x.test"})])
    parent_conn = crm._write_conn
    pid = os.fork()
    if pid == 0:  # child: capture through its own connection, report by exit code
        code = 1
        try:
            [res] = crm.capture([json_capture({"email": "child@x.test"})])
            code = 0 if res.status == "processed" and crm._write_conn is not parent_conn else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    [res] = crm.capture([json_capture({"email": "parent-again@x.test"})])
    assert res.status == "processed" and crm._write_conn is parent_conn
    assert _lead_count(crm) == 3


def test_ts_writes_the_text_sqlalchemy_reads_back(make_crm, sqlite_url):
    import datetime as dt

    from corecrm.storage.db import ts

    crm = make_crm(database=sqlite_url)
    with crm.engine.connect() as conn:
        assert ts(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), conn) == "2026-01-02 03:04:05.000000"
        assert ts(dt.datetime(999, 5, 6, 7, 8, 9, 10), conn) == "0999-05-06 07:08:09.000010"
        assert ts(None, conn) is None
        when = dt.datetime(2026, 7, 8, 9, 10, 11, 123456, tzinfo=dt.timezone.utc)
        conn.exec_driver_sql("INSERT INTO activities (workspace, type, done, at) VALUES ('default', 'note', 1, ?)", (ts(when, conn),))
        stored = conn.execute(sa.select(schema.activities.c.at)).scalar_one()
    assert stored.replace(tzinfo=dt.timezone.utc) == when
