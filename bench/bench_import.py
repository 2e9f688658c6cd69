"""Import benchmark: a realistic lead CSV through ``corecrm import`` against the floor.

Generates a CSV (fixed seed): realistic names, companies, countries, phones;
~5 % of rows are the same person again with a typo or a re-cased e-mail; ~1 %
are invalid (no contact, broken e-mail). Then, in the same run:

* floor: stdlib ``csv`` + ``sqlite3.executemany`` of the same rows into the
  same ``leads`` table with the same indexes, committing every batch;
* ``corecrm import`` with a configuration you choose (``--plugins``): by
  default the whole bundled pipeline (verification, screening, de-duplication,
  scoring, routing), or e.g. ``--plugins capture_csv`` for the bare pipeline.

Each import runs in its own process, so its peak memory (max RSS) is its own.

    python bench/bench_import.py --rows 1000000 --runs 1
    python bench/bench_import.py --rows 200000 --plugins capture_csv,capture_json
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_CONFIG = HERE.parent / "corecrm" / "demo" / "demo.toml"


def generate(path: Path, n: int, seed: int = 42) -> dict[str, int]:
    sys.path.insert(0, str(HERE.parent))
    from corecrm.demo import sample

    rng = random.Random(seed)
    stats = {"rows": 0, "duplicates": 0, "invalid": 0}
    header = ["First Name", "Last Name", "E-mail", "Phone", "Company", "Job Title", "Country", "City", "Postcode", "Lead Source", "Campaign", "Interests"]
    recent: list[list[str]] = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            if recent and rng.random() < 0.05:
                row = list(rng.choice(recent))
                kind = rng.random()
                if kind < 0.4:
                    row[2] = row[2].upper()
                elif kind < 0.7:
                    row[1] = row[1][:-1] + rng.choice("aeiou") if len(row[1]) > 3 else row[1]
                else:
                    row[3] = ""
                stats["duplicates"] += 1
            elif rng.random() < 0.01:
                row = ["", "", rng.choice(["", "not-an-email", "a@b"]), "", "", "", rng.choice(["GB", "DE"]), "", "", "web", "", ""]
                stats["invalid"] += 1
            else:
                first, last = rng.choice(sample.FIRST), rng.choice(sample.LAST)
                country, _region, city, postal = rng.choice(sample.PLACES)
                company, domain = rng.choice(sample.COMPANIES) if rng.random() < 0.6 else ("", rng.choice(sample.FREEMAIL))
                local = f"{first}.{last}".lower().replace(" ", "").replace("'", "").replace("ü", "ue").replace("é", "e").replace("ë", "e").replace("í", "i")
                source, campaign = sample._pick_source(rng)
                row = [first, last, f"{local}{i}@{domain}", sample.PHONE_PREFIX[country] + f"{rng.randrange(100, 999)}", company,
                       rng.choice(sample.TITLES) or "", country, city, postal, source, campaign or "", ";".join(rng.sample(sample.INTERESTS, rng.choice([0, 1, 2])))]  # fmt: skip
                if len(recent) < 5000:
                    recent.append(row)
                elif rng.random() < 0.01:
                    recent[rng.randrange(5000)] = row
            w.writerow(row)
            stats["rows"] += 1
    return stats


FLOOR = r'''
import csv, sqlite3, sys, time, datetime as dt
from corecrm.app import Crm
from corecrm.config import Config
csv_path, db, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
crm = Crm(Config.from_dict({"plugins": {"enabled": []}}), database=f"sqlite:///{db}"); crm.init_db(); crm.close()
con = sqlite3.connect(db, isolation_level=None); con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA synchronous=NORMAL")
cols = ["id","workspace","stage","status","first_name","last_name","email","phone","company","title","country","city","postal_code","source","campaign","interests","email_norm","origin_key","created_at","updated_at"]
sql = f"INSERT INTO leads ({','.join(cols)}) VALUES ({','.join('?' for _ in cols)})"
now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
t0 = time.perf_counter()
with open(csv_path, newline="", encoding="utf-8") as fh:
    r = csv.reader(fh); next(r); rows = []; n = 0
    for row in r:
        n += 1
        rows.append((n, "default", "lead", "open", *row, row[2].lower(), f"f:{n}", now, now))
        if len(rows) == batch:
            con.execute("BEGIN IMMEDIATE"); con.executemany(sql, rows); con.execute("COMMIT"); rows = []
    if rows:
        con.execute("BEGIN IMMEDIATE"); con.executemany(sql, rows); con.execute("COMMIT")
print(time.perf_counter() - t0)
'''


def run_child(args: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run a child process; return (wall seconds, its max RSS in MiB, stdout)."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(rss, before) / 1024, out.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--plugins", default=None, help="comma-separated plugins to enable (default: all bundled, demo settings)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="corecrm-import-bench-"))
    csv_path = tmp / "leads.csv"
    t0 = time.perf_counter()
    stats = generate(csv_path, args.rows)
    print(f"generated {stats} ({csv_path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    floor_t, core_t, core_wall, rss = [], [], [], []
    for run in range(args.runs):
        db = tmp / f"floor{run}.db"
        _w, _r, out = run_child([sys.executable, "-c", FLOOR, str(csv_path), str(db), str(args.batch)], tmp)
        floor_t.append(float(out.strip()))
        work = tmp / f"crm{run}"
        work.mkdir()
        cfg = DEMO_CONFIG.read_text(encoding="utf-8")
        if args.plugins:
            names = ", ".join(f'"{p.strip()}"' for p in args.plugins.split(","))
            cfg = cfg.replace("[plugins]\n", f"[plugins]\nenabled = [{names}]\n", 1)
        (work / "corecrm.toml").write_text(cfg, encoding="utf-8")
        wall, mib, out = run_child([sys.executable, "-m", "corecrm.cli", "import", str(csv_path), "--json"], work)
        core_wall.append(wall)
        rss.append(mib)
        print(f"run {run + 1}: floor {floor_t[-1]:.1f} s, import {wall:.1f} s (process), peak RSS {mib:.0f} MiB", file=sys.stderr)
        print(out[out.index("{"):][:600], file=sys.stderr)
    n = args.rows
    med_floor, med_core = statistics.median(floor_t), statistics.median(core_wall)
    print(f"import of {n:,} rows ({args.plugins or 'all bundled plugins, demo settings'}), {args.runs} run(s)")
    print(f"  floor csv+sqlite3.executemany: {med_floor:.1f} s = {n / med_floor:,.0f} rows/s")
    print(f"  corecrm import (whole process): {med_core:.1f} s = {n / med_core:,.0f} rows/s, peak RSS {statistics.median(rss):.0f} MiB")
    print(f"  ratio import/floor: {med_core / med_floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
