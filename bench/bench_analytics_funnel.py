"""Benchmark: the analytics_funnel reports beside a plain SQL aggregation of the same numbers.

    python bench/bench_analytics_funnel.py [--scale 1.0] [--runs 3] [--db PATH] [--keep]

At ``--scale 1`` the database holds 1,000,000 leads with their stage and
touch events (~2.3M events), ~80k deals, and 5,000,000 transactions. Data are
generated with seeded random numbers and bulk-inserted through the driver
(``executemany`` in one transaction); generation is not timed.

For each report the script times ``Report.run`` through a real ``Crm`` (the
plugin as ``corecrm report`` runs it) and a baseline: plain ``sqlite3`` with
the simplest SQL that gives the same headline numbers (no plugin, no
SQLAlchemy), and checks both agree. It prints the median [min–max] of
``--runs`` runs and the ratio report/baseline. Nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

UTC = dt.timezone.utc
SOURCES = ["web", "ads", "email", "social", "partner", "event"]
CAMPAIGNS = [f"c{i:02d}" for i in range(20)]
TEAMS = ["north", "south", "east", "west", "inside"]
OWNERS = [f"rep{i:02d}" for i in range(30)]
TOUCH = ["form_submitted", "email_clicked", "page_visited"]
STAGES = ["lead", "mql", "sql", "opportunity", "customer"]
DEAL_STAGES = ["new", "qualified", "proposal", "negotiation"]
START = dt.datetime(2025, 1, 1, tzinfo=UTC)
SPAN_DAYS = 540
NOW = dt.datetime(2026, 7, 15, 12, 0, tzinfo=UTC)


def ts(x: dt.datetime) -> str:
    return x.strftime("%Y-%m-%d %H:%M:%S.%f")


# --------------------------------------------------------------------------- data


def generate(db: Path, scale: float) -> dict[str, int]:
    from corecrm.app import Crm
    from corecrm.config import Config

    cfg = Config.from_dict({"crm": {"database": f"sqlite:///{db}"}, "plugins": {"enabled": ["analytics_funnel"]}})
    Crm.open(cfg).close()  # schema (core migrations + the plugin's table)
    rnd = random.Random(42)
    n_leads = int(1_000_000 * scale)
    n_tx = int(5_000_000 * scale)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    leads, events, customers, deals = [], [], [], []
    eid = 0
    did = 0
    cid = 0
    for lid in range(1, n_leads + 1):
        created = START + dt.timedelta(seconds=rnd.random() * SPAN_DAYS * 86400)
        src, camp = rnd.choice(SOURCES), rnd.choice(CAMPAIGNS)
        team, owner = rnd.choice(TEAMS), rnd.choice(OWNERS)
        r = rnd.random()
        top = 4 if r < 0.03 else 3 if r < 0.08 else 2 if r < 0.20 else 1 if r < 0.40 else 0
        assigned = created + dt.timedelta(hours=rnd.expovariate(1 / 4)) if rnd.random() < 0.9 else None
        contact = created + dt.timedelta(hours=rnd.expovariate(1 / 20)) if rnd.random() < 0.7 else None
        at = created
        eid += 1
        events.append((eid, "default", lid, None, "stage_changed", ts(at), "bench", json.dumps({"from": None, "to": "lead"})))
        for k in range(1, top + 1):
            at = at + dt.timedelta(days=rnd.expovariate(1 / 6))
            eid += 1
            events.append((eid, "default", lid, None, "stage_changed", ts(at), "bench", json.dumps({"from": STAGES[k - 1], "to": STAGES[k]})))
        for _ in range(rnd.choice((0, 0, 1, 1, 2))):
            t_at = created + dt.timedelta(days=rnd.random() * 30)
            eid += 1
            events.append((eid, "default", lid, None, rnd.choice(TOUCH), ts(t_at), "bench",
                           json.dumps({"campaign": rnd.choice(CAMPAIGNS), "source": rnd.choice(SOURCES)})))
        customer_id = None
        if top == 4:
            cid += 1
            customer_id = cid
            customers.append((cid, "default", lid, None, None, None, ts(at)))
        if top >= 3:
            did += 1
            amount = None if rnd.random() < 0.01 else round(rnd.uniform(500, 20000), 2)
            if top == 4:
                deals.append((did, "default", lid, customer_id, "sales", "won", None, amount, owner, "won", None,
                              (at.date()).isoformat(), ts(created), ts(at)))
            else:
                exp = (NOW + dt.timedelta(days=rnd.uniform(-60, 300))).date().isoformat()
                deals.append((did, "default", lid, None, "sales", rnd.choice(DEAL_STAGES), None, amount, owner, "open", None, exp, ts(created), None))
        leads.append((lid, "default", STAGES[top], "open", src, camp, owner, team, ts(created), ts(created),
                      ts(assigned) if assigned else None, ts(contact) if contact else None, customer_id))
    with con:
        con.executemany("INSERT INTO leads (id, workspace, stage, status, source, campaign, owner, team, created_at, updated_at, assigned_at, "
                        "first_contact_at, customer_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", leads)
        con.executemany("INSERT INTO events (id, workspace, lead_id, deal_id, type, at, plugin, detail) VALUES (?,?,?,?,?,?,?,?)", events)
        con.executemany("INSERT INTO customers (id, workspace, lead_id, external_id, name, email, created_at) VALUES (?,?,?,?,?,?,?)", customers)
        con.executemany("INSERT INTO deals (id, workspace, lead_id, customer_id, pipeline, stage, name, amount, owner, status, lost_reason, "
                        "expected_close, created_at, closed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", deals)
        costs = []
        for camp in CAMPAIGNS:
            for m in range(18):
                y, mo = 2025 + m // 12, m % 12 + 1
                first = dt.date(y, mo, 1)
                last = (dt.date(y + (mo == 12), mo % 12 + 1, 1) - dt.timedelta(days=1))
                costs.append(("default", camp, None, first.isoformat(), last.isoformat(), round(rnd.uniform(1000, 9000), 2), None, ts(NOW)))
        con.executemany("INSERT INTO analytics_campaign_costs (workspace, campaign, source, period_start, period_end, amount, note, created_at) "
                        "VALUES (?,?,?,?,?,?,?,?)", costs)
    del leads, events, deals, customers
    # transactions: the lead customers plus imported ones, Pareto-skewed activity
    n_cust_tx = max(cid, int(150_000 * scale))
    if n_cust_tx > cid:
        with con:
            con.executemany("INSERT INTO customers (id, workspace, lead_id, external_id, name, email, created_at) VALUES (?,?,?,?,?,?,?)",
                            ((i, "default", None, f"x{i}", None, None, ts(START)) for i in range(cid + 1, n_cust_tx + 1)))
    day0 = dt.date(2024, 7, 1).toordinal()
    batch = []
    with con:
        for i in range(n_tx):
            c = min(n_cust_tx, int(rnd.paretovariate(1.2))) if rnd.random() < 0.3 else rnd.randint(1, n_cust_tx)
            d = dt.date.fromordinal(day0 + int(rnd.random() * 730)).isoformat()
            amt = round(rnd.uniform(5, 300), 2)
            batch.append(("default", c, d, amt, round(amt * rnd.uniform(0.4, 0.8), 2)))
            if len(batch) == 200_000:
                con.executemany("INSERT INTO transactions (workspace, customer_id, at, amount, cost) VALUES (?,?,?,?,?)", batch)
                batch = []
        con.executemany("INSERT INTO transactions (workspace, customer_id, at, amount, cost) VALUES (?,?,?,?,?)", batch)
    con.execute("ANALYZE")
    con.close()
    return {"leads": n_leads, "events": eid, "deals": did, "customers": n_cust_tx, "transactions": n_tx}


# --------------------------------------------------------------------------- baselines (plain sqlite3)

RANK = "CASE {c} WHEN 'prospect' THEN 0 WHEN 'lead' THEN 1 WHEN 'mql' THEN 2 WHEN 'sql' THEN 3 WHEN 'opportunity' THEN 4 WHEN 'customer' THEN 5 END"


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    n = len(values)
    return None if not n else (values[(n - 1) // 2] + values[n // 2]) / 2


def base_funnel(con: sqlite3.Connection) -> dict:
    """Stage counts per source and the median days in each stage (per source and overall)."""
    cohort = "l.workspace = 'default' AND l.created_at >= '2025-01-01' AND l.created_at < '2026-07-01'"
    rows = con.execute(f"""
        SELECT src, top, COUNT(*) FROM (
            SELECT l.id, l.source AS src, MAX({RANK.format(c="json_extract(e.detail, '$.to')")}) AS top
            FROM leads l JOIN events e ON e.lead_id = l.id AND e.type = 'stage_changed'
            WHERE {cohort} GROUP BY l.id) GROUP BY src, top""").fetchall()
    by_top: dict[int, int] = {}
    for _src, top, n in rows:
        by_top[top] = by_top.get(top, 0) + n
    stays: dict[tuple, list[float]] = {}
    for src, stage, days in con.execute(f"""
        SELECT src, stage, julianday(next_at) - julianday(at) FROM (
            SELECT l.source AS src, json_extract(e.detail, '$.to') AS stage, e.at AS at,
                   LEAD(e.at) OVER (PARTITION BY e.lead_id ORDER BY e.at, e.id) AS next_at
            FROM leads l JOIN events e ON e.lead_id = l.id AND e.type = 'stage_changed' WHERE {cohort})
        WHERE next_at IS NOT NULL"""):
        stays.setdefault((src, stage), []).append(days)
        stays.setdefault((None, stage), []).append(days)
    medians = {k: _median(v) for k, v in stays.items()}
    return {"lead": sum(n for t, n in by_top.items() if t >= 1), "customer": sum(n for t, n in by_top.items() if t >= 5),
            "median_mql": medians.get((None, "mql"))}


def base_attribution(con: sqlite3.Connection) -> dict:
    (rev,) = con.execute("SELECT SUM(amount) FROM deals WHERE workspace = 'default' AND status = 'won' AND amount IS NOT NULL "
                         "AND closed_at >= '2025-01-01' AND closed_at < '2026-07-01'").fetchone()
    # linear credit per campaign in plain SQL: each touch gets amount / touches of its deal
    rows = con.execute("""
        WITH won AS (SELECT id, amount, closed_at, lead_id FROM deals WHERE workspace = 'default' AND status = 'won' AND amount IS NOT NULL
                     AND closed_at >= '2025-01-01' AND closed_at < '2026-07-01'),
        t AS (SELECT w.id, w.amount, l.campaign AS k FROM won w JOIN leads l ON l.id = w.lead_id
              UNION ALL
              SELECT w.id, w.amount, json_extract(e.detail, '$.campaign') FROM won w JOIN events e ON e.lead_id = w.lead_id
              WHERE e.type IN ('form_submitted','email_clicked','page_visited') AND e.at <= w.closed_at
                AND julianday(e.at) >= julianday(w.closed_at) - 90),
        n AS (SELECT id, COUNT(*) AS n FROM t GROUP BY id)
        SELECT t.k, SUM(t.amount * 1.0 / n.n) FROM t JOIN n ON n.id = t.id GROUP BY t.k""").fetchall()
    return {"revenue": rev or 0.0, "linear_c00": dict(rows).get("c00", 0.0)}


def base_economics(con: sqlite3.Connection) -> dict:
    """Leads, qualified, customers and cost per campaign, plus the linear attribution."""
    counts = {}
    for camp, leads, qual, cust in con.execute(f"""
        SELECT camp, COUNT(*), SUM(top >= 2), SUM(top >= 5) FROM (
            SELECT l.id, l.campaign AS camp, MAX({RANK.format(c="json_extract(e.detail, '$.to')")}) AS top
            FROM leads l JOIN events e ON e.lead_id = l.id AND e.type = 'stage_changed'
            WHERE l.workspace = 'default' AND l.created_at >= '2025-01-01' AND l.created_at < '2026-07-01' GROUP BY l.id)
        GROUP BY camp"""):
        counts[camp] = (leads, qual, cust)
    cost = dict(con.execute("SELECT campaign, SUM(amount) FROM analytics_campaign_costs WHERE workspace = 'default' "
                            "AND period_start >= '2025-01-01' AND period_end <= '2026-06-30' GROUP BY campaign").fetchall())
    base_attribution(con)
    return {"c00_leads": counts["c00"][0], "c00_qualified": counts["c00"][1], "c00_cost": cost["c00"]}


def base_forecast(con: sqlite3.Connection) -> dict:
    rows = con.execute("""SELECT substr(expected_close, 1, 7), SUM(amount * CASE stage WHEN 'new' THEN 0.1 WHEN 'qualified' THEN 0.3
                          WHEN 'proposal' THEN 0.6 WHEN 'negotiation' THEN 0.8 END)
                          FROM deals WHERE workspace = 'default' AND status = 'open' AND amount IS NOT NULL GROUP BY 1""").fetchall()
    con.execute("SELECT substr(closed_at, 1, 7), SUM(amount) FROM deals WHERE workspace = 'default' AND status = 'won' GROUP BY 1").fetchall()
    return {"weighted_2026_08": dict(rows).get("2026-08", 0.0)}


def base_retention(con: sqlite3.Connection) -> dict:
    rows = con.execute("""
        WITH cp AS (SELECT customer_id AS c, (CAST(substr(at,1,4) AS INTEGER) * 12 + CAST(substr(at,6,2) AS INTEGER) - 1 - 24297) / 3 AS p,
                    SUM(amount) AS s FROM transactions WHERE workspace = 'default' AND at >= '2024-10-01' AND at < '2026-07-01' GROUP BY 1, 2)
        SELECT a.p, COUNT(*), COUNT(b.c) FROM cp a LEFT JOIN cp b ON b.c = a.c AND b.p = a.p + 1 GROUP BY a.p""").fetchall()
    last = [r for r in rows if r[0] == 5][0]
    return {"raw_2026_Q2": last[2] / last[1]}


def base_speed(con: sqlite3.Connection) -> dict:
    """p50/p90/p95 hours to assignment and to first contact: fetch the sorted delays, interpolate."""
    out = {}
    for col in ("assigned_at", "first_contact_at"):
        vals = [r[0] for r in con.execute(f"SELECT (julianday({col}) - julianday(created_at)) * 24 FROM leads WHERE workspace = 'default' "
                                          f"AND {col} IS NOT NULL AND created_at >= '2025-01-01' AND created_at < '2026-07-01' ORDER BY 1")]
        n = len(vals)
        for p in (0.5, 0.9, 0.95):
            h = (n - 1) * p
            lo = int(h)
            out[f"{col}_p{round(p * 100)}"] = vals[lo] + (h - lo) * (vals[min(lo + 1, n - 1)] - vals[lo])
    return {"p50": out["assigned_at_p50"], "contact_p95": out["first_contact_at_p95"]}


# --------------------------------------------------------------------------- run


def timed(fn, runs: int):
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), max(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 1M leads and 5M transactions")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--db", type=Path, default=None, help="reuse (or create) this SQLite file")
    ap.add_argument("--only", default="", help="comma-separated report names")
    args = ap.parse_args()

    from corecrm.app import Crm
    from corecrm.config import Config

    tmp = None
    db = args.db
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-af-")
        db = Path(tmp.name) / "bench.db"
    if not db.exists():
        t = time.perf_counter()
        sizes = generate(db, args.scale)
        print(f"generated {sizes} in {time.perf_counter() - t:.1f} s -> {db} ({db.stat().st_size / 2**20:.0f} MiB)", flush=True)
    cfg = Config.from_dict({"crm": {"database": f"sqlite:///{db}"}, "plugins": {"enabled": ["analytics_funnel"]}})
    crm = Crm.open(cfg, clock=lambda: NOW)
    reports = crm.plugins.collect_named("crm_reports", workspace="default", what="report")
    period = {"date_from": dt.date(2025, 1, 1), "date_to": dt.date(2026, 6, 30)}
    plan = [
        ("funnel", {**period, "by": ["source"]}, base_funnel, lambda t: {"lead": t.data["total"]["stages"][0]["reached"],
                                                                      "customer": t.data["total"]["stages"][-1]["reached"],
                                                                      "median_mql": t.data["total"]["stages"][1]["median_days"]}),
        ("attribution", period, base_attribution, lambda t: {"revenue": t.data["revenue"], "linear_c00": t.data["credits"]["linear"].get("c00", 0.0)}),
        ("campaign_economics", period, base_economics, lambda t: {"c00_leads": t.data["groups"]["c00"]["leads"],
                                                                         "c00_qualified": t.data["groups"]["c00"]["qualified"],
                                                                         "c00_cost": t.data["groups"]["c00"]["cost"]}),
        ("forecast", {}, base_forecast, lambda t: {"weighted_2026_08": sum(c["weighted"] for c in t.data["cells"] if c["month"] == "2026-08")}),
        ("retention", {"date_from": dt.date(2024, 10, 1), "date_to": dt.date(2026, 6, 30)}, base_retention,
         lambda t: {"raw_2026_Q2": t.data["periods"][-1]["raw_retention"]}),
        ("speed_to_lead", period, base_speed, lambda t: {"p50": t.data["groups"]["(total)"]["assignment"]["p50"],
                                                              "contact_p95": t.data["groups"]["(total)"]["first_contact"]["p95"]}),
    ]
    only = {s for s in args.only.split(",") if s}
    print(f"{'report':<20} {'report s (median [min-max])':<30} {'plain SQL s':<28} {'ratio':>6}  check")
    for name, params, base, pick in plan:
        if only and name not in only:
            continue
        rep = reports[name]
        r_med, r_min, r_max, table = timed(lambda: rep.run(crm, "default", params), args.runs)
        con = sqlite3.connect(db)
        b_med, b_min, b_max, expected = timed(lambda: base(con), args.runs)
        con.close()
        got = pick(table)
        ok = all(abs((got[k] or 0) - (expected[k] or 0)) <= 1e-6 * max(1.0, abs(expected[k] or 0)) for k in expected)
        print(f"{name:<20} {r_med:8.2f} [{r_min:.2f}-{r_max:.2f}]{'':<12} {b_med:8.2f} [{b_min:.2f}-{b_max:.2f}]{'':<8} {r_med / b_med:6.2f}  "
              f"{'same numbers' if ok else 'DIFFERENT: ' + repr((got, expected))}", flush=True)
    crm.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
