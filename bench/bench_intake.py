"""Intake benchmark: the core pipeline against its floor, measured in the same run.

Batch: N leads from a CSV through ``Crm.intake`` with trivial plugins on the
four main decision hooks (verify, score, qualify, route), into SQLite, versus
two floors measured in the same run, both stdlib ``csv`` + ``sqlite3.executemany``
into the same table and indexes (created by corecrm's migrations), committing
every batch:

* **same rows** (the goal's floor): a plain script writing exactly the rows
  corecrm writes — every column, the score explanation and the intake history
  included, built the cheapest way (the trivial plugins' constant results
  encoded once per batch). After the run the two tables are compared, so
  "same rows" is checked, not assumed.
* **contact columns**: the CSV's columns only, no explanation or history: what
  the explainability itself costs on top.

Single: capture → routed latency of one JSON lead (``Crm.capture``: the raw
capture committed, then the pipeline and the lead committed), versus one bare
single-row SQLite transaction into the same table, and versus plain
``sqlite3`` doing the same work (commit the raw capture; then insert the lead
and mark the capture processed in a second transaction).

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

#: What the trivial plugins make corecrm store with every lead, for the floors that write the same rows.
TRIVIAL_DETAIL = json.dumps(
    {"score": 1.0, "rulesets": {}, "contributions": [{"rule": "base", "points": 1, "reason": "captured", "group": None, "plugin": "trivial"}]},
    separators=(",", ":"),
)
TRIVIAL_HISTORY = json.dumps(
    [{"type": "scored", "plugin": "trivial", "detail": {"points": 1.0, "ruleset": None}},
     {"type": "assigned", "plugin": "trivial", "detail": {"team": "sales"}}],
    separators=(",", ":"),
)  # fmt: skip


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


def run_floor_same(csv_path: Path, db: Path, batch: int) -> float:
    """The rows corecrm's intake writes, written by a plain script (see the module docstring)."""
    from corecrm.pipeline import INSERT_COLUMNS

    con = floor_table(db)
    sql = f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"
    detail, history = TRIVIAL_DETAIL, TRIVIAL_HISTORY

    def flush(rows: list[tuple[Any, ...]]) -> None:
        con.execute("BEGIN IMMEDIATE")
        con.executemany(sql, rows)
        con.execute("COMMIT")

    t0 = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as fh:
        r = csv.reader(fh)
        next(r)
        rows: list[tuple[Any, ...]] = []
        n = 0
        for fn, ln, em, ph, co, ti, cc, rg, ci, pc, so in r:
            if not rows:  # a batch's time, once per batch
                now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
            n += 1
            rows.append((n, "default", "lead", "open", fn, ln, em, ph, co, ti, cc, rg, ci, pc, so, None, None, None, 1.0, None, None, "sales",
                         None, f"b:{n}", em.strip().lower(), None, None, None, detail, history, now, now, now))  # fmt: skip
            if len(rows) == batch:
                flush(rows)
                rows = []
        if rows:
            flush(rows)
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def same_rows(a: Path, b: Path) -> tuple[bool, int]:
    """Do two leads tables hold the same rows (times aside)? Returns (same, rows compared)."""
    from corecrm.pipeline import INSERT_COLUMNS

    times = {"created_at", "updated_at", "assigned_at"}
    cols = [c for c in INSERT_COLUMNS if c not in times]
    json_cols = {"interests", "attributes", "consent", "score_detail", "intake"}

    def norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for c, v in zip(cols, row):
            if c in json_cols and v is not None:
                v = json.loads(v)
                if c == "intake":
                    v = [{k: x for k, x in e.items() if k != "at"} for e in v]
                v = json.dumps(v, sort_keys=True)
            out.append(v)
        return tuple(out)

    q = f"SELECT {', '.join(cols)} FROM leads ORDER BY id"
    ca, cb = sqlite3.connect(a), sqlite3.connect(b)
    try:
        n = 0
        for ra, rb in zip(ca.execute(q), cb.execute(q)):
            n += 1
            if norm(ra) != norm(rb):
                print(f"  rows differ at {n}:\n    {norm(ra)}\n    {norm(rb)}", file=sys.stderr)
                return False, n
        counts = [c.execute("SELECT count(*) FROM leads").fetchone()[0] for c in (ca, cb)]
        return counts[0] == counts[1] == n, n
    finally:
        ca.close()
        cb.close()


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


def single_floor_same(db: Path, n: int) -> list[float]:
    """Plain sqlite3 doing what a capture must: commit the raw payload, then the lead (and mark the capture processed)."""
    import hashlib

    from corecrm.pipeline import INSERT_COLUMNS

    con = floor_table(db)
    now = dt.datetime.now(dt.timezone.utc)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    cap_sql = "INSERT INTO captures (workspace, content_hash, origin, payload, status, received_at) VALUES (?,?,?,?,?,?)"
    lead_sql = f"INSERT INTO leads ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"
    detail, history = TRIVIAL_DETAIL, TRIVIAL_HISTORY
    lat = []
    for i in range(n):
        payload = json.dumps({"first_name": "Ann", "email": f"s{i}@example.com", "source": "web"}).encode()
        t0 = time.perf_counter()
        digest = hashlib.sha256(payload).hexdigest()
        con.execute("BEGIN IMMEDIATE")
        cid = con.execute(cap_sql, ("default", digest, "form.json", payload, "new", stamp)).lastrowid
        con.execute("COMMIT")
        d = json.loads(payload)
        em = d["email"]
        con.execute("BEGIN IMMEDIATE")
        con.execute(lead_sql, (None, "default", "lead", "open", d["first_name"], None, em, None, None, None, None, None, None, None, d["source"], None, None, None,
                               1.0, None, None, "sales", cid, f"{digest[:40]}:0", em.strip().lower(), None, None, None, detail, history, stamp, stamp, stamp))  # fmt: skip
        con.execute("UPDATE captures SET status = ?, format = ?, processed_at = ? WHERE id = ?", ("processed", "json", stamp, cid))
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
    runners = {"same": run_floor_same, "contact": run_floor, "core": run_core}
    times: dict[str, list[float]] = {k: [] for k in runners}
    ratios: dict[str, list[float]] = {"same": [], "contact": []}
    checked: tuple[bool, int] | None = None
    for run in range(args.runs):
        # rotate the order so drift affects all alike
        names = list(runners)[run % 3 :] + list(runners)[: run % 3]
        got = {}
        for name in names:
            db = tmp / f"{name}-{run}.db"
            got[name] = runners[name](csv_path, db, args.batch)
        if checked is None:
            checked = same_rows(tmp / f"core-{run}.db", tmp / f"same-{run}.db")
        for name in names:
            for suffix in ("", "-wal", "-shm"):
                Path(str(tmp / f"{name}-{run}.db") + suffix).unlink(missing_ok=True)
        for name in runners:
            times[name].append(got[name])
        for name in ratios:
            ratios[name].append(got["core"] / got[name])
        print(f"run {run + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in got.items()), file=sys.stderr)
    n = args.rows
    print(f"batch intake, {n:,} leads, batches of {args.batch}, SQLite, {args.runs} runs")
    print(f"  floor, same rows (csv + sqlite3.executemany):  {fmt(times['same'])} s  = {n / statistics.median(times['same']):,.0f} leads/s")
    print(f"  floor, contact columns only:                   {fmt(times['contact'])} s  = {n / statistics.median(times['contact']):,.0f} leads/s")
    print(f"  corecrm intake (4 trivial hooks):              {fmt(times['core'])} s  = {n / statistics.median(times['core']):,.0f} leads/s")
    assert checked is not None
    print(f"  same rows checked: {'yes' if checked[0] else 'NO'} ({checked[1]:,} rows compared, times aside)")
    print(f"  ratio core / same-rows floor (median of paired runs):   {statistics.median(ratios['same']):.2f}  [{min(ratios['same']):.2f}–{max(ratios['same']):.2f}]")
    print(f"  ratio core / contact-only floor (median of paired runs): {statistics.median(ratios['contact']):.2f}  [{min(ratios['contact']):.2f}–{max(ratios['contact']):.2f}]")
    fl, fs, co = [], [], []
    for run in range(args.runs):
        fl += single_floor(tmp / f"sf-{run}.db", args.single)
        fs += single_floor_same(tmp / f"ss-{run}.db", args.single)
        co += single_core(tmp / f"sc-{run}.db", args.single)
    print(f"single lead, {args.single * args.runs} captures")
    print(f"  floor, one bare single-row transaction:           p50 {pct(fl, 50) * 1e6:.0f} µs, p99 {pct(fl, 99) * 1e6:.0f} µs")
    print(f"  floor, same work (capture committed, then lead):  p50 {pct(fs, 50) * 1e6:.0f} µs, p99 {pct(fs, 99) * 1e6:.0f} µs")
    print(f"  corecrm capture→routed:                           p50 {pct(co, 50) * 1e6:.0f} µs, p99 {pct(co, 99) * 1e6:.0f} µs")
    print(f"  ratio to the bare transaction: p50 {pct(co, 50) / pct(fl, 50):.2f}, p99 {pct(co, 99) / pct(fl, 99):.2f}")
    print(f"  ratio to the same-work floor:  p50 {pct(co, 50) / pct(fs, 50):.2f}, p99 {pct(co, 99) / pct(fs, 99):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
