"""Hooks against a real database: stored rotation, sticky owners, SLA sweeps with a controlled clock, simulation."""

from __future__ import annotations

import collections
import datetime as dt
from types import MappingProxyType

import pytest
import sqlalchemy as sa
from routing_geo_helpers import (
    NOW, compile_, drop_pg, dump, insert_leads, intake, lead, pg_engine, require_pg, retailer_settings, sqlite_engine, team_settings,
)

from corecrm.storage import schema
from corecrm_plugins.routing_geo import ops, store

MIN = dt.timedelta(minutes=1)


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


def frozen(s):
    return MappingProxyType(s)


def leads_table(engine):
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(sa.select(schema.leads))}


def events(engine, type_):
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.events).where(schema.events.c.type == type_).order_by(schema.events.c.id)).all()


def test_rotation_state_survives_between_batches(engine):
    s = frozen(team_settings(5))
    c = collections.Counter()
    for i in range(60):
        [a] = intake(engine, s, [lead(country="GB", origin_key=f"k{i}")], NOW + i * MIN)
        c[a.owner] += 1
    assert sorted(c.values()) == [12] * 5
    with engine.connect() as conn:
        passes, clocks = store.load_rotation(conn, "default")
    assert sorted(passes.values()) == [12.0] * 5 and clocks == {"t": 11.0}


def test_sticky_owner_from_an_open_lead_with_the_same_email(engine):
    s = team_settings(4, strategy="sticky")
    insert_leads(engine, [{"email": "Ann@Example.com", "owner": "m003", "team": "t"}])
    [a, b] = intake(engine, frozen(s), [lead(email="ann@example.com "), lead(email="new@example.com")])
    assert a.owner == "m003" and a.explanation["choice"].startswith("sticky: open lead")
    assert b.owner is not None


def test_sla_breach_reassigns_to_another_member_with_a_controlled_clock(engine):
    s = retailer_settings()
    out = intake(engine, frozen(s), [lead(country="GB", interests=["shoes"]), lead(country="GB", interests=["shoes"])])
    first, second = out[0].owner, out[1].owner
    routing = compile_(s)
    ids = sorted(leads_table(engine))
    # contact the second lead in time
    with engine.begin() as conn:
        conn.execute(schema.leads.update().where(schema.leads.c.id == ids[1]).values(first_contact_at=NOW + 5 * MIN))
    res = ops.sweep(engine, "default", routing, now=NOW + 14 * MIN)
    assert res["breached"] == 0
    res = ops.sweep(engine, "default", routing, now=NOW + 16 * MIN)
    assert (res["breached"], res["reassigned"], res["fulfilled"]) == (1, 1, 1)
    rows = leads_table(engine)
    new_owner = rows[ids[0]].owner
    assert new_owner not in (None, first)
    assert rows[ids[1]].owner == second  # contacted in time: untouched
    [breach] = events(engine, "sla_breached")
    d = breach.detail
    assert (d["owner"], d["new_owner"], d["action"], d["sla_minutes"], d["rule"]) == (first, new_owner, "reassigned", 15.0, "uk-shoes")
    assert d["waited_minutes"] == 16.0
    reassigned = [e for e in events(engine, "assigned") if e.detail.get("via") == "sweep"]
    assert reassigned[0].detail["owner"] == new_owner and "SLA of 15 min lapsed" in reassigned[0].detail["reason"]
    # the new owner has a fresh 15 minutes; nothing more happens until it lapses
    assert ops.sweep(engine, "default", routing, now=NOW + 30 * MIN)["breached"] == 0
    res = ops.sweep(engine, "default", routing, now=NOW + 32 * MIN)
    assert res["reassigned"] == 1
    assert leads_table(engine)[ids[0]].owner not in (None, new_owner)


def test_sla_breach_escalates_or_records(engine):
    s = retailer_settings()
    s["members"].append({"id": "boss"})
    s["teams"][0].update(on_breach="escalate", escalate_to="boss")
    s["teams"][2].update(sla_minutes=10, on_breach="record")
    intake(engine, frozen(s), [lead(country="GB", interests=["shoes"]), lead(country="DE")])
    ids = sorted(leads_table(engine))
    dach_owner = leads_table(engine)[ids[1]].owner
    res = ops.sweep(engine, "default", compile_(s), now=NOW + 20 * MIN)
    assert (res["breached"], res["escalated"], res["recorded"]) == (2, 1, 1)
    rows = leads_table(engine)
    assert rows[ids[0]].owner == "boss"
    assert rows[ids[1]].owner == dach_owner
    # a recorded breach is not recorded again; the escalation target has a fresh clock, and
    # when that lapses too the breach is recorded without escalating to the same person again
    res = ops.sweep(engine, "default", compile_(s), now=NOW + 34 * MIN)
    assert res["breached"] == 0
    res = ops.sweep(engine, "default", compile_(s), now=NOW + 36 * MIN)
    assert (res["breached"], res["recorded"]) == (1, 1)
    assert events(engine, "sla_breached")[-1].detail["note"] == "already escalated to boss"


def test_pull_team_breach_puts_the_lead_back_in_the_queue(engine):
    s = retailer_settings()
    s["teams"][3].update(sla_minutes=30)
    intake(engine, frozen(s), [lead(country="FR")])
    routing = compile_(s)
    got = ops.claim(engine, "default", routing, "manon", now=NOW + 1 * MIN)
    assert got is not None
    res = ops.sweep(engine, "default", routing, now=NOW + 40 * MIN)
    assert res["requeued"] == 1
    row = leads_table(engine)[got["lead_id"]]
    assert (row.owner, row.team) == (None, "france")


def test_sweep_assigns_waiting_leads_when_a_member_becomes_available(engine):
    s = team_settings(2, max_open=1)
    intake(engine, frozen(s), [lead() for _ in range(3)])
    rows = leads_table(engine)
    waiting = [r.id for r in rows.values() if r.owner is None]
    assert len(waiting) == 1 and rows[waiting[0]].team == "t"
    routing = compile_(s)
    assert ops.sweep(engine, "default", routing, now=NOW + MIN)["assigned_from_queue"] == 0
    # one rep closes a lead: capacity frees up
    closed = next(r.id for r in rows.values() if r.owner == "m000")
    with engine.begin() as conn:
        conn.execute(schema.leads.update().where(schema.leads.c.id == closed).values(status="disqualified"))
    res = ops.sweep(engine, "default", routing, now=NOW + 2 * MIN)
    assert res["assigned_from_queue"] == 1
    assert leads_table(engine)[waiting[0]].owner == "m000"


def test_simulation_changes_nothing_and_reports_differences(engine):
    s = retailer_settings()
    intake(engine, frozen(s), [lead(country="GB", interests=["shoes"]), lead(country="DE"), lead(country="AT"), lead(country="JP"), lead(country="FR")])
    new = retailer_settings()
    new["rules"][2]["country"] = ["DE"]  # Austria and Switzerland leave the DACH team...
    new["rules"].append({"name": "rest-of-world", "queue": "unrouted", "country": ["JP", "AT"]})
    before = dump(engine)
    res = ops.simulate(engine, "default", compile_(s), compile_(new), now=NOW + MIN)
    assert dump(engine) == before  # nothing written, not even rotation state
    assert res["leads"] == 5
    changed = {c["country"]: (c["current"]["target"], c["new"]["target"]) for c in res["changes"]}
    assert changed == {"AT": ("dach", "unrouted"), "JP": ("unrouted", "unrouted")}
    by = {b["target"]: (b["current"], b["new"]) for b in res["by_target"]}
    assert by["dach"] == (2, 1)
    sample = ops.simulate(engine, "default", compile_(s), compile_(new), now=NOW, sample=2)
    assert sample["leads"] == 2
    assert dump(engine) == before


def test_routing_report_percentiles_breaches_and_load(engine):
    s = retailer_settings()
    intake(engine, frozen(s), [lead(country="GB", interests=["shoes"]) for _ in range(3)])
    ids = sorted(leads_table(engine))
    with engine.begin() as conn:
        conn.execute(schema.leads.update().where(schema.leads.c.id == ids[0]).values(first_contact_at=NOW + 4 * MIN))
        conn.execute(schema.leads.update().where(schema.leads.c.id == ids[1]).values(first_contact_at=NOW + 10 * MIN))
    ops.sweep(engine, "default", compile_(s), now=NOW + 20 * MIN)
    table = ops.report(engine, "default")
    assert table.columns[0] == "member"
    total = table.rows[-1]
    assert total[0] == "ALL" and total[1] == 3 and total[2] == 3 and total[7] == 1
    assert table.data["time_to_first_contact"] == {"p50": 7.0, "p90": 9.4, "p99": 9.9, "n": 2}
    assert table.data["breaches"] == 1


def test_workspaces_do_not_share_state(engine):
    s = frozen(team_settings(3))
    intake(engine, s, [lead() for _ in range(3)], workspace="a")
    intake(engine, s, [lead()], workspace="b")
    with engine.connect() as conn:
        pa, _ = store.load_rotation(conn, "a")
        pb, _ = store.load_rotation(conn, "b")
    assert sum(pa.values()) == 3.0 and sum(pb.values()) == 1.0
