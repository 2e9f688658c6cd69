"""Routing decisions per second with 50 territories and 200 members.

Usage: python bench/bench_routing_geo.py [LEADS] [RUNS]

Measures, in the same run:

* floor: a plain-Python router (first match over 50 (country, interest) tuples,
  then ``itertools.cycle`` per team) with no availability, capacity or
  explanation: the least any router must do;
* routing_geo's ``Router.route`` on batches of 1,000 leads (rules, normalisation,
  availability, capacity, rotation and a full explanation per lead);
* the same on batches of one lead (a web form);
* the ``crm_route_leads`` hook against a SQLite database holding 20,000
  assigned leads, i.e. including the batch snapshot queries (load per member,
  leads assigned today, rotation state).

Prints medians over RUNS and ratios to the floor. Timings are never asserted.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

COUNTRIES = ["GB", "DE", "FR", "IT", "ES", "NL", "BE", "AT", "CH", "SE", "NO", "DK", "FI", "PL", "CZ", "PT", "IE", "US", "CA", "MX", "BR", "AU", "JP", "IN", "ZA"]
INTERESTS = ["shoes", "coats", "bags", "watches"]
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)


def settings() -> dict:
    rnd = random.Random(7)
    members = []
    teams = []
    rules = []
    tzs = ["Europe/London", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
    for t in range(50):
        ids = []
        for k in range(4):
            mid = f"rep{t * 4 + k:03d}"
            ids.append(mid)
            members.append({"id": mid, "weight": rnd.choice([1, 1, 2]), "max_open": 10_000, "max_new_per_day": 5_000,
                            "timezone": tzs[t % 4], "hours": ["mon-sun 00:00-24:00"], "languages": ["en"]})
        teams.append({"name": f"team{t:02d}", "members": ids, "strategy": ["round_robin", "weighted", "least_loaded"][t % 3], "sla_minutes": 15})
    for i in range(50):
        c = COUNTRIES[i % len(COUNTRIES)]
        rule = {"name": f"territory{i:02d}", "country": [c], "team": f"team{i:02d}"}
        if i < len(COUNTRIES):
            rule["interests"] = [INTERESTS[i % 4], INTERESTS[(i + 1) % 4]]
        if c == "GB" and i >= len(COUNTRIES):
            rule["postal_prefix"] = ["SW", "EC", "WC", "N", "E"]
        if c == "US" and i >= len(COUNTRIES):
            rule["postal_range"] = ["00000-49999"]
        rules.append(rule)
    return {"members": members, "teams": teams, "rules": rules, "respect_working_hours": True, "default_queue": "unrouted"}


def make_leads(n: int, seed: int = 1):
    from corecrm.models import Lead

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        c = rnd.choice(COUNTRIES + ["United Kingdom", "Deutschland", "XX"])
        out.append(Lead(country=c, interests=[rnd.choice(INTERESTS)], postal_code=rnd.choice(["SW1A 1AA", "10001", "80331", "75001"]),
                        email=f"p{i}@x.test", origin_key=f"o{i}"))
    return out


def floor(leads) -> int:
    table = [((r_country, frozenset(r_int)), team) for r_country, r_int, team in
             [(COUNTRIES[i % len(COUNTRIES)], [INTERESTS[i % 4], INTERESTS[(i + 1) % 4]] if i < 25 else INTERESTS, f"team{i:02d}") for i in range(50)]]
    cycles = {f"team{t:02d}": itertools.cycle([f"rep{t * 4 + k:03d}" for k in range(4)]) for t in range(50)}
    n = 0
    for lead in leads:
        c = (lead.country or "").upper()
        for (country, ints), team in table:
            if country == c and ints.intersection(lead.interests):
                next(cycles[team])
                n += 1
                break
    return n


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    from corecrm_plugins.routing_geo import config, ops
    from corecrm_plugins.routing_geo.router import Snapshot

    s = settings()
    routing = config.compile_settings(s)
    router = ops.make_router(routing)
    leads = make_leads(n)
    print(f"{len(routing.rules)} territories, {len(routing.directory.members)} members, {len(routing.directory.teams)} teams, {n} leads, {runs} runs")

    floor_t = timed(lambda: floor(leads), runs)

    def batched(size: int):
        def go():
            snap = Snapshot(open_load={m: 3 for m in routing.directory.members})
            for i in range(0, n, size):
                router.route(leads[i:i + size], NOW, snap)
        return go

    b1000 = timed(batched(1000), runs)
    single_n = min(n, 5000)
    single_leads = leads[:single_n]

    def singles():
        snap = Snapshot(open_load={m: 3 for m in routing.directory.members})
        for lead in single_leads:
            router.route([lead], NOW, snap)

    b1 = timed(singles, runs)

    # the hook against SQLite with 20,000 stored, assigned leads

    from corecrm.context import HookContext
    from corecrm.storage import schema
    from corecrm.storage.db import make_engine
    from corecrm_plugins import routing_geo as plugin
    from corecrm_plugins.routing_geo import store

    tmp = Path(tempfile.mkdtemp())
    engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
    schema.metadata.create_all(engine)
    store.ensure_schema(engine)
    rnd = random.Random(3)
    members = list(routing.directory.members)
    rows = [{"workspace": "default", "stage": "lead", "status": rnd.choice(["open", "open", "converted"]), "created_at": NOW, "updated_at": NOW,
             "owner": rnd.choice(members), "team": "team00", "assigned_at": NOW - dt.timedelta(hours=rnd.randint(0, 72)),
             "email": f"old{i}@x.test", "email_norm": f"old{i}@x.test"} for i in range(20_000)]
    with engine.begin() as conn:
        conn.execute(schema.leads.insert(), rows)

    class FakeCrm:
        def __init__(self, engine):
            self.engine = engine

    frozen = MappingProxyType(s)
    hook_n = min(n, 10_000)

    def hook():
        ctx = HookContext(crm=FakeCrm(engine), workspace="default", now=NOW, mode="simulate")
        for i in range(0, hook_n, 1000):
            plugin.crm_route_leads(leads=leads[i:i + 1000], ctx=ctx, settings=frozen)

    hk = timed(hook, runs)
    engine.dispose()

    def rate(count: int, ts: list[float]) -> tuple[float, float, float]:
        med = statistics.median(ts)
        return count / med, count / max(ts), count / min(ts)

    f = rate(n, floor_t)
    print(f"{'case':<48} {'decisions/s median [min-max]':>34} {'x floor':>8}")
    for name, (r, lo, hi) in [
        ("floor: first match + itertools.cycle", f),
        ("Router.route, batches of 1,000", rate(n, b1000)),
        ("Router.route, batches of 1", rate(single_n, b1)),
        ("crm_route_leads hook + SQLite snapshot, 1,000", rate(hook_n, hk)),
    ]:
        print(f"{name:<48} {r:>14,.0f} [{lo:,.0f}-{hi:,.0f}] {f[0] / r:>8.1f}")


if __name__ == "__main__":
    main()
