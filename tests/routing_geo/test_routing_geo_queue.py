"""Pull queues: atomic claims on SQLite and PostgreSQL, including several processes at once."""

from __future__ import annotations

import multiprocessing as mp

import pytest
import sqlalchemy as sa
from routing_geo_helpers import (
    NOW, claim_worker, compile_, drop_pg, insert_leads, pg_engine, require_pg, queue_settings, retailer_settings, sqlite_engine,
)

from corecrm.errors import CrmError, NotFound
from corecrm.storage import schema
from corecrm_plugins.routing_geo import ops, store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = sqlite_engine(tmp_path)
        yield eng
        eng.dispose()
        return
    require_pg()
    eng, name = pg_engine()
    yield eng
    drop_pg(eng, name)


def url_of(engine):
    return engine.url.render_as_string(hide_password=False)


def test_concurrent_claims_from_several_processes_take_each_lead_exactly_once(engine):
    n_leads, n_reps = 160, 4
    ids = insert_leads(engine, [{"team": "inside_sales", "country": "GB"} for _ in range(n_leads)])
    settings = queue_settings(n_reps)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    engine.dispose()
    procs = [ctx.Process(target=claim_worker, args=(url_of(engine), settings, f"rep{i}", start, out)) for i in range(n_reps)]
    for p in procs:
        p.start()
    start.set()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    claimed = [lid for got in results.values() for lid in got]
    assert sorted(claimed) == sorted(ids)  # every lead once, none twice, none lost
    assert len(set(claimed)) == n_leads
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(schema.leads.c.id, schema.leads.c.owner)).all())
        events = conn.execute(sa.select(schema.events.c.lead_id, schema.events.c.detail).where(schema.events.c.type == "assigned")).all()
    for rep, got in results.items():
        assert all(rows[lid] == rep for lid in got)  # the stored owner is who got it
    assert len(events) == n_leads
    assert sum(1 for r in results.values() if r) >= 2  # the work was actually shared


def test_claim_takes_the_oldest_lead_of_the_members_teams(engine):
    routing = compile_(retailer_settings())
    a, b, c = insert_leads(engine, [{"team": "france"}, {"team": "unrouted"}, {"team": "france"}])
    got = ops.claim(engine, "default", routing, "manon", now=NOW)
    assert got["lead_id"] == a and got["team"] == "france"
    got = ops.claim(engine, "default", routing, "manon", team="france", now=NOW)
    assert got["lead_id"] == c
    assert ops.claim(engine, "default", routing, "manon", team="france", now=NOW) is None
    # the unrouted default queue may be worked by anyone
    assert ops.claim(engine, "default", routing, "alice", now=NOW)["lead_id"] == b
    with engine.connect() as conn:
        owners = dict(conn.execute(sa.select(schema.leads.c.id, schema.leads.c.owner)).all())
    assert owners == {a: "manon", b: "alice", c: "manon"}


def test_claim_refuses_strangers_absent_reps_and_full_capacity(engine):
    s = retailer_settings()
    s["members"][5]["max_open"] = 1
    routing = compile_(s)
    insert_leads(engine, [{"team": "france"}, {"team": "france"}])
    with pytest.raises(CrmError, match="alice is not a member of 'france'"):
        ops.claim(engine, "default", routing, "alice", team="france", now=NOW)
    with pytest.raises(NotFound, match="unknown member 'zed'"):
        ops.claim(engine, "default", routing, "zed", now=NOW)
    assert ops.claim(engine, "default", routing, "manon", now=NOW) is not None
    with pytest.raises(CrmError, match=r"manon cannot claim: at capacity \(1/1 open leads\)"):
        ops.claim(engine, "default", routing, "manon", now=NOW)
    s["members"][5].pop("max_open")
    s["members"][5]["away"] = [{"from": "2026-11-01", "to": "2026-11-30"}]
    with pytest.raises(CrmError, match="manon cannot claim: away until"):
        ops.claim(engine, "default", compile_(s), "manon", now=NOW)


def test_claims_only_see_their_workspace(engine):
    routing = compile_(retailer_settings())
    insert_leads(engine, [{"team": "france"}], workspace="other")
    assert ops.claim(engine, "default", routing, "manon", now=NOW) is None


def test_the_queue_has_a_partial_index(engine):
    with engine.connect() as conn:
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("leads")}
    assert store.QUEUE_INDEX in names
