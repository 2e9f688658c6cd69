"""Benchmark: ``score recompute`` over N stored leads vs a plain SQL UPDATE of the same rows.

Usage::

    python bench/bench_scoring_basic.py [N=1000000] [RUNS=3] [DB_URL]

Builds a SQLite database (or uses DB_URL, e.g. a PostgreSQL URL) with N leads
and ~N/3 engagement events, then measures, each RUNS times (median [min-max]):

* ``sql_update``: one set-based ``UPDATE leads SET score = <the fit rules as
  CASE expressions>`` over the same rows, in one transaction: the database
  floor for touching every row (no engagement, no explanation, no events);
* ``raw_executemany``: the driver's ``executemany`` UPDATE of pre-computed
  (score, grade, detail) tuples for every row: the write floor of the path
  ``recompute`` takes;
* ``recompute_first``: rules changed, every lead is rescored and written with
  its explanation, plus ``scored``/``graded``/``stage_changed`` events
  (timed once per run on a fresh copy of the scores);
* ``recompute_steady``: the rules are unchanged, nothing to write: read,
  score and compare only.

Prints medians, leads/s and the ratios to ``sql_update`` and ``raw_executemany``.
Nothing is asserted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time

import sqlalchemy as sa

from corecrm.config import Config
from corecrm.plugins import PluginManager
from corecrm.storage import schema
from corecrm.storage.db import bulk_insert, make_engine

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)

RULES = [
    {"name": "exec", "op": "regex", "field": "title", "pattern": r"(?i)\b(cto|ceo|cio|vp|head)\b", "points": 25, "group": "fit"},
    {"name": "company_mail", "op": "email_domain", "value": "company", "points": 10, "group": "fit"},
    {"name": "free_mail", "op": "email_domain", "value": "free", "points": -10},
    {"name": "dach", "op": "country", "values": ["DACH"], "points": 10, "group": "fit"},
    {"name": "mid_market", "op": "range", "field": "attributes.employees", "min": 50, "max": 1000, "points": 15, "group": "fit"},
    {"name": "saas", "op": "in", "field": "attributes.industry", "values": ["saas", "fintech"], "points": 10, "group": "fit"},
    {"name": "partner", "op": "source", "values": ["partner-*"], "points": 5},
    {"name": "opens", "event": "email_opened", "points": 3, "group": "engagement", "half_life_days": 30},
    {"name": "pricing", "event": "page_visited", "where": {"path": "/pricing"}, "points": 8, "group": "engagement", "half_life_days": 14},
    {"name": "demo", "event": "demo_booked", "points": 40, "group": "engagement"},
]
SETTINGS = {
    "rules": RULES,
    "groups": {"engagement": {"max": 45}, "fit": {"max": 60}},
    "grades": {"A": 70, "B": 45, "C": 20, "D": 0},
    "qualification": {"mql": 45, "sql": 70, "nurture_below": 15},
}
# The fit rules as one SQL expression (what a hand-written UPDATE would do; no regex in SQLite, LIKE instead).
SQL_SCORE = """
  (CASE WHEN lower(title) LIKE '%cto%' OR lower(title) LIKE '%ceo%' OR lower(title) LIKE '%vp%' OR lower(title) LIKE '%head%' THEN 25 ELSE 0 END)
+ (CASE WHEN email LIKE '%@gmail.com' OR email LIKE '%@yahoo.com' THEN -10 ELSE 10 END)
+ (CASE WHEN country IN ('DE', 'AT', 'CH') THEN 10 ELSE 0 END)
+ (CASE WHEN source LIKE 'partner-%' THEN 5 ELSE 0 END)
"""


class BenchCrm:
    def __init__(self, url: str, settings: dict) -> None:
        import corecrm_plugins.scoring_basic as sb

        self.config = Config.from_dict({"plugins": {"scoring_basic": settings}})
        self.plugins = PluginManager(self.config).load(entry_points=False)
        self.plugins.register(sb, "scoring_basic", bundled=True)
        self.engine = make_engine(url)

    def now(self) -> dt.datetime:
        return NOW


def build(url: str, n: int) -> None:
    rnd = random.Random(42)
    eng = make_engine(url)
    schema.metadata.drop_all(eng)
    schema.metadata.create_all(eng)
    titles = ["CTO", "VP Engineering", "Developer", "Head of Sales", "Analyst", "Intern", "CEO", "Manager", None]
    domains = ["gmail.com", "yahoo.com", "acme.io", "corp.example", "example.org"]
    countries = ["DE", "AT", "CH", "US", "GB", "FR", None]
    industries = ["saas", "fintech", "retail", "automotive"]
    sources = ["web", "partner-a", "partner-b", "import", None]
    t0 = time.perf_counter()
    created = NOW - dt.timedelta(days=30)
    with eng.begin() as conn:
        pg = conn.dialect.name == "postgresql"
        created_db = created if pg else created.strftime("%Y-%m-%d %H:%M:%S.%f")
        cols = ("id", "workspace", "stage", "status", "first_name", "email", "email_norm", "title", "country", "source", "interests", "attributes", "created_at", "updated_at")
        chunk = []
        for i in range(1, n + 1):
            email = f"user{i}@{rnd.choice(domains)}"
            attrs_ = json.dumps({"employees": rnd.randint(1, 5000), "industry": rnd.choice(industries)})
            chunk.append((i, "default", "lead", "open", f"User{i}", email, email, rnd.choice(titles), rnd.choice(countries), rnd.choice(sources), "[]", attrs_, created_db, created_db))
            if len(chunk) == 50000:
                bulk_insert(conn, schema.leads, cols, chunk)
                chunk = []
        bulk_insert(conn, schema.leads, cols, chunk)
        ev_cols = ("workspace", "lead_id", "type", "at", "plugin", "detail")
        chunk = []
        for _ in range(n // 3):
            typ = rnd.choice(["email_opened", "email_opened", "page_visited", "demo_booked", "link_clicked"])
            at = NOW - dt.timedelta(days=rnd.uniform(0, 120))
            detail = json.dumps({"path": rnd.choice(["/pricing", "/blog", "/docs"])}) if typ == "page_visited" else "{}"
            chunk.append(("default", rnd.randint(1, n), typ, at if pg else at.strftime("%Y-%m-%d %H:%M:%S.%f"), "bench", detail))
            if len(chunk) == 50000:
                bulk_insert(conn, schema.events, ev_cols, chunk)
                chunk = []
        bulk_insert(conn, schema.events, ev_cols, chunk)
    if not url.startswith("sqlite"):
        with eng.begin() as conn:
            conn.exec_driver_sql("SELECT setval('leads_id_seq', (SELECT max(id) FROM leads))")
            conn.exec_driver_sql("ANALYZE")
    print(f"built {n:,} leads and {n // 3:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
    eng.dispose()


def reset_scores(url: str) -> None:
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("UPDATE leads SET score = NULL, grade = NULL, score_detail = NULL, stage = 'lead'")
        conn.exec_driver_sql("DELETE FROM events WHERE type IN ('scored', 'graded', 'stage_changed')")
    eng.dispose()


def time_sql_update(url: str) -> float:
    eng = make_engine(url)
    t0 = time.perf_counter()
    with eng.begin() as conn:
        # text(): SQLAlchemy escapes the LIKE patterns' % for psycopg's placeholders
        conn.execute(sa.text(f"UPDATE leads SET score = {SQL_SCORE} WHERE workspace = 'default' AND status <> 'merged'"))
    t = time.perf_counter() - t0
    eng.dispose()
    return t


def time_raw_executemany(url: str, n: int) -> float:
    from corecrm_plugins.scoring_basic.recompute import _executemany

    detail = json.dumps({"ruleset": "sb1-bench", "contributions": [{"rule": "exec", "points": 25, "reason": "title matches", "group": "fit", "plugin": "scoring_basic"}]})
    rows = [(float(i % 100), "B", detail, "lead", "open", "2026-06-01 00:00:00.000000", i, "default") for i in range(1, n + 1)]
    eng = make_engine(url)
    t0 = time.perf_counter()
    with eng.begin() as conn:
        _executemany(conn, "UPDATE leads SET score = ?, grade = ?, score_detail = ?, stage = ?, status = ?, updated_at = ? WHERE id = ? AND workspace = ?", rows)
    t = time.perf_counter() - t0
    eng.dispose()
    return t


def time_recompute(url: str) -> tuple[float, object]:
    from corecrm_plugins.scoring_basic.recompute import recompute

    crm = BenchCrm(url, SETTINGS)
    t0 = time.perf_counter()
    stats = recompute(crm, "default", batch_size=20000)
    t = time.perf_counter() - t0
    crm.engine.dispose()
    return t, stats


def fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts):.2f} s [{min(ts):.2f}-{max(ts):.2f}]"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    url = sys.argv[3] if len(sys.argv) > 3 else None
    tmp = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="bench-scoring-")
        url = f"sqlite:///{os.path.join(tmp, 'bench.db')}"
    build(url, n)
    results: dict[str, list[float]] = {"sql_update": [], "raw_executemany": [], "recompute_first": [], "recompute_steady": []}
    last = {}
    for r in range(runs):
        results["sql_update"].append(time_sql_update(url))
        results["raw_executemany"].append(time_raw_executemany(url, n))
        reset_scores(url)
        t, stats = time_recompute(url)
        results["recompute_first"].append(t)
        last["first"] = stats
        t, stats = time_recompute(url)
        results["recompute_steady"].append(t)
        last["steady"] = stats
        print(f"run {r + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()), flush=True)
    base = statistics.median(results["sql_update"])
    floor = statistics.median(results["raw_executemany"])
    print(f"\n{n:,} leads, {runs} runs, {url.split(':', 1)[0]}")
    print(f"{'case':<18} {'median [min-max]':<26} {'leads/s':>12} {'x sql_update':>13} {'x raw_executemany':>18}")
    for k, v in results.items():
        med = statistics.median(v)
        print(f"{k:<18} {fmt(v):<26} {n / med:>12,.0f} {med / base:>13.2f} {med / floor:>18.2f}")
    for k, s in last.items():
        print(f"recompute_{k}: {s.to_json()}")
    if tmp is not None:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
