"""Intake benchmark: the core pipeline against its floor, measured in the same run.

Batch: N leads from a CSV through ``Crm.intake`` with trivial plugins on the
four main decision hooks (verify, score, qualify, route), into SQLite, versus
the floor: stdlib ``csv`` + ``sqlite3.executemany`` of the same rows into a
table with the same columns and indexes, committing every batch.

Single: capture → routed latency of one JSON lead (``Crm.capture``: the raw
capture committed, then the pipeline and the lead committed), versus one bare
single-row SQLite transaction into the same table.

    python bench/bench_intake.py                 # 200,000 rows, 3 runs
    python bench/bench_intake.py --rows 1000000 --runs 3

Prints medians [min–max] and the ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

COLUMNS = ["first_name", "last_name", "email", "phone", "company", "title", "country", "region", "city", "postal_code", "source"]


def make_csv(path: Path, n: int, seed: int = 42) -> None:
    rng = random.Random(seed)
    first = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Mateo"]
    last = ["Smith", "Jones", "Müller", "Dubois", "Rossi", "García", "Tanaka", "Patel", "Larsen", "Nowak"]
    countries = [("GB", "GB-ENG", "London"), ("DE", "DE-BE", "Berlin"), ("FR", "FR-IDF", "Paris"), ("US", "US-NY", "New York")]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i in range(n):
            f, la = rng.choice(first), rng.choice(last)
            c, r, city = rng.choice(countries)
            w.writerow([f, la, f"{f}.{la}{i}@example{i % 97}.com".lower(), f"+44 20 7946 {i % 10000:04d}", f"Company {i % 5000}", "Buyer",
                        c, r, city, f"{10000 + i % 80000}", rng.choice(["web", "ads", "referral"])])  # fmt: skip


# --------------------------------------------------------------------------- trivial plugins


class TrivialPlugins:
    """One cheap implementation per main decision hook (what 'trivial plugins' means here)."""

    from corecrm.hooks import hookimpl

    @hookimpl
    def crm_verify_leads(self, leads):
        return None

    @hookimpl
    def crm_score_leads(self, leads):
        from corecrm.records import ScoreContribution

        return [ScoreContribution(i, "base", 1, "captured") for i in range(len(leads))]

    @hookimpl
    def crm_qualify_leads(self, leads, scores):
        return None

    @hookimpl
    def crm_route_leads(self, leads):
        from corecrm.records import Assignment

        return [Assignment(i, team="sales") for i in range(len(leads))]


def open_crm(db: Path, clock: Any = None) -> Any:
    from corecrm.app import Crm
    from corecrm.config import Config

    cfg = Config.from_dict({"plugins": {"enabled": ["capture_json"]}})
    crm = Crm(cfg, database=f"sqlite:///{db}", clock=clock, load_plugins=False)
    crm.plugins.load(extra={"trivial": TrivialPlugins()})
    crm.ensure_schema()
    return crm


def floor_table(db: Path) -> sqlite3.Connection:
    """The same leads table and indexes as corecrm's, created by corecrm's own migrations."""
    crm = open_crm(db)
    crm.close()
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


# --------------------------------------------------------------------------- batch


def run_floor(csv_path: Path, db: Path, batch: int) -> float:
    con = floor_table(db)
    cols = ["id", "workspace", "stage", "status", *COLUMNS, "email_norm", "origin_key", "created_at", "updated_at"]
    sql = f"INSERT INTO leads ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    t0 = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as fh:
        r = csv.reader(fh)
        next(r)
        rows: list[tuple[Any, ...]] = []
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        n = 0
        for row in r:
            n += 1
            rows.append((n, "default", "lead", "open", *row, row[2].lower(), f"f:{n}", now, now))
            if len(rows) == batch:
                con.execute("BEGIN IMMEDIATE")
                con.executemany(sql, rows)
                con.execute("COMMIT")
                rows = []
        if rows:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(sql, rows)
            con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def run_core(csv_path: Path, db: Path, batch: int) -> float:
    from corecrm.models import Lead

    crm = open_crm(db)
    t0 = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as fh:
        r = csv.reader(fh)
        next(r)
        leads: list[Lead] = []
        n = 0
        for fn, ln, em, ph, co, ti, cc, rg, ci, pc, so in r:
            n += 1
            leads.append(Lead(first_name=fn, last_name=ln, email=em, phone=ph, company=co, title=ti, country=cc, region=rg, city=ci, postal_code=pc, source=so, origin_key=f"b:{n}"))
            if len(leads) == batch:
                crm.intake(leads)
                leads = []
        if leads:
            crm.intake(leads)
    elapsed = time.perf_counter() - t0
    crm.close()
    return elapsed


# --------------------------------------------------------------------------- single lead


def single_floor(db: Path, n: int) -> list[float]:
    con = floor_table(db)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            "INSERT INTO leads (workspace, stage, status, email, email_norm, origin_key, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
            ("default", "lead", "open", f"s{i}@example.com", f"s{i}@example.com", f"s:{i}", now, now),
        )
        con.execute("COMMIT")
        lat.append(time.perf_counter() - t0)
    con.close()
    return lat


def single_core(db: Path, n: int) -> list[float]:
    from corecrm.records import RawCapture

    crm = open_crm(db)
    crm.capture([RawCapture(payload=b'{"email": "warm@up.test"}', origin="warm.json")])  # formats, caches
    lat = []
    for i in range(n):
        payload = json.dumps({"first_name": "Ann", "email": f"s{i}@example.com", "source": "web"}).encode()
        t0 = time.perf_counter()
        [res] = crm.capture([RawCapture(payload=payload, origin="form.json")])
        lat.append(time.perf_counter() - t0)
        assert res.lead_ids
    crm.close()
    return lat


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def fmt(values: Iterable[float]) -> str:
    v = list(values)
    return f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--single", type=int, default=2000, help="single-lead captures per run")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="corecrm-bench-"))
    csv_path = tmp / "leads.csv"
    make_csv(csv_path, args.rows)
    floor_t, core_t, ratios = [], [], []
    for run in range(args.runs):
        # alternate which goes first so drift affects both alike
        order = [("floor", run_floor), ("core", run_core)] if run % 2 == 0 else [("core", run_core), ("floor", run_floor)]
        got = {}
        for name, fn in order:
            db = tmp / f"{name}-{run}.db"
            got[name] = fn(csv_path, db, args.batch)
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
        floor_t.append(got["floor"])
        core_t.append(got["core"])
        ratios.append(got["core"] / got["floor"])
        print(f"run {run + 1}: floor {got['floor']:.2f} s, core {got['core']:.2f} s, ratio {ratios[-1]:.2f}", file=sys.stderr)
    n = args.rows
    print(f"batch intake, {n:,} leads, batches of {args.batch}, SQLite, {args.runs} runs")
    print(f"  floor (csv + sqlite3.executemany):  {fmt(floor_t)} s  = {n / statistics.median(floor_t):,.0f} leads/s")
    print(f"  corecrm intake (4 trivial hooks):   {fmt(core_t)} s  = {n / statistics.median(core_t):,.0f} leads/s")
    print(f"  ratio core/floor (median of paired runs): {statistics.median(ratios):.2f}  [{min(ratios):.2f}–{max(ratios):.2f}]")
    fl, co = [], []
    for run in range(args.runs):
        fl += single_floor(tmp / f"sf-{run}.db", args.single)
        co += single_core(tmp / f"sc-{run}.db", args.single)
    print(f"single lead, {args.single * args.runs} captures")
    print(f"  floor (one bare single-row transaction): p50 {pct(fl, 50) * 1e6:.0f} µs, p99 {pct(fl, 99) * 1e6:.0f} µs")
    print(f"  corecrm capture→routed:                  p50 {pct(co, 50) * 1e6:.0f} µs, p99 {pct(co, 99) * 1e6:.0f} µs")
    print(f"  ratio p50 {pct(co, 50) / pct(fl, 50):.2f}, p99 {pct(co, 99) / pct(fl, 99):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
