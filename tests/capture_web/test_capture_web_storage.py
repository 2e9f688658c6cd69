"""The plugin's tables on SQLite and PostgreSQL: keys, the delivery queue's idempotency and claiming, form tokens."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json

import httpx
import sqlalchemy as sa

from corecrm.models import Event
from corecrm_plugins.capture_web import deliveries, keys, tables
from cw_helpers import lead_rows, serve, wait_processed, web_crm  # noqa: F401 (fixtures)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


def test_keys_on_each_database(web_crm, db_url):
    crm = web_crm(database=db_url)
    kid, key = keys.create(crm.engine, "default", "vendor", T0)
    assert keys.verify(crm.engine, "default", "vendor", key) == kid
    assert keys.verify(crm.engine, "other-ws", "vendor", key) is None  # workspaces are separate
    kid2, key2 = keys.create(crm.engine, "default", "vendor", T0, revoke_others=True)
    assert keys.verify(crm.engine, "default", "vendor", key) is None and keys.verify(crm.engine, "default", "vendor", key2) == kid2
    assert [k.key_id for k in keys.list_keys(crm.engine, "default") if k.revoked_at is None] == [kid2]
    assert keys.revoke(crm.engine, "default", kid2, T0) and not keys.revoke(crm.engine, "default", kid2, T0)


def _targets() -> dict[str, deliveries.Target]:
    return deliveries.parse_targets(
        {"a": {"kind": "webhook", "url": "http://127.0.0.1:9/a", "secret": "s", "events": ["captured", "stage_changed"]}, "b": {"kind": "form", "url": "http://127.0.0.1:9/b", "events": ["captured"]}},
        "targets",
    )


def test_queue_is_idempotent_and_claims_are_exclusive(web_crm, db_url):
    crm = web_crm(database=db_url)
    events = [Event("captured", T0, None, {"capture_id": i}, lead_id=i) for i in range(1, 41)]
    items = deliveries.plan(_targets(), "captured", events, {i: {"id": i} for i in range(1, 41)}, "default")
    assert len(items) == 80  # two targets subscribe
    assert deliveries.enqueue(crm.engine, "default", items, T0) == 80
    again = deliveries.plan(_targets(), "captured", events, {}, "default")
    assert deliveries.enqueue(crm.engine, "default", again, T0) == 0  # same events: nothing new
    with crm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.deliveries)).scalar_one() == 80

    def claim(_):
        return [r["id"] for r in deliveries.claim(crm.engine, "default", T0, 15, lease=60)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(claim, range(8)))
    ids = [i for b in batches for i in b]
    assert len(ids) == len(set(ids)) == 80  # every row claimed exactly once
    assert deliveries.claim(crm.engine, "default", T0, 100, lease=60) == []
    assert len(deliveries.claim(crm.engine, "default", T0 + dt.timedelta(seconds=61), 100, lease=60)) == 80  # leases expire


def test_stage_change_events_are_distinct_deliveries(web_crm, db_url):
    crm = web_crm(database=db_url)
    evs = [Event("stage_changed", T0, "x", {"from": "lead", "to": "mql", "reason": "r"}, lead_id=1), Event("stage_changed", T0 + dt.timedelta(minutes=1), "x", {"from": "mql", "to": "sql", "reason": "r"}, lead_id=1)]
    assert deliveries.enqueue(crm.engine, "default", deliveries.plan(_targets(), "stage_changed", evs, {}, "default"), T0) == 2
    rows = deliveries.list_rows(crm.engine, "default")
    assert {json.loads(r["payload"])["detail"]["to"] for r in rows} == {"mql", "sql"}
    assert deliveries.list_rows(crm.engine, "other") == []


def test_double_submit_token_on_each_database(web_crm, serve, db_url):
    crm = web_crm(database=db_url)
    srv = serve(crm)
    page = httpx.get(f"{srv.url}/forms/contact").text
    token = page.split('name="_cw_token" value="', 1)[1].split('"', 1)[0]

    def post(i):
        # different bodies (a field changed between clicks), same token: still one submission
        return httpx.post(f"{srv.url}/capture/contact", data={"last_name": "Db", "email": "db@example.com", "company": f"c{i}", "_cw_token": token}).json()

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        res = list(pool.map(post, range(3)))
    assert len({r["capture_id"] for r in res}) == 1
    wait_processed(crm)
    assert len(lead_rows(crm)) == 1
