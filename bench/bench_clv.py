"""Benchmark of the clv plugin: summaries and fits, beside baselines measured in the same run.

Run by hand (never in the test suite)::

    pip install -e '.[bench-clv]'          # adds lifetimes 0.11.3 and what it needs
    python bench/bench_clv.py              # CDNOW + 1M bootstrap + 1M simulated
    python bench/bench_clv.py --quick      # CDNOW + 100k only

Prints the median wall time of each step (``--repeat`` runs) and the ratio
against its baseline:

* fits: the ``lifetimes`` package on the same summary (its fitters take
  ``weights``; its documented way to scale is to compress identical rows, so
  it gets the compressed rows too, and the raw rows where noted);
* the SQL summary: a plain ``sqlite3`` GROUP BY over the same table (the
  floor: one pass, no per-customer work) and lifetimes'
  ``summary_data_from_transaction_data`` on the same transactions in pandas.

Timings are printed, never asserted. lifetimes is optional: without it the
baseline columns say "n/a".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from corecrm_plugins.clv import models, summary

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "clv" / "CDNOW_sample.txt"
CAL_END = dt.date(1997, 9, 30)

try:  # optional baseline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lifetimes
        import pandas as pd
except Exception as exc:  # noqa: BLE001
    lifetimes = None
    pd = None
    LIFETIMES_ERROR = f"{type(exc).__name__}: {exc}"
else:
    LIFETIMES_ERROR = ""


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def row(label: str, ours: float, base: float | None, base_label: str, note: str = "") -> None:
    ratio = f"{base / ours:7.1f}x faster" if base else "      n/a"
    b = f"{base:9.3f} s" if base else "      n/a  "
    print(f"  {label:<44} ours {ours:8.3f} s   {base_label:<22} {b}   {ratio}  {note}")


def read_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, days, amounts = [], [], []
    with open(SAMPLE, encoding="ascii") as fh:
        for line in fh:
            _m, idx, ymd, _n, dollars = line.split()
            ids.append(int(idx))
            days.append(summary.day_number(dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))))
            amounts.append(float(dollars))
    return np.array(ids), np.array(days), np.array(amounts)


# --------------------------------------------------------------------------- lifetimes baselines


def lt_fit(model: str, x: np.ndarray, tx: np.ndarray, T: np.ndarray, m: np.ndarray | None = None, weights: np.ndarray | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model == "bgnbd":
            f = lifetimes.BetaGeoFitter(penalizer_coef=0.0)
            f.fit(x, tx, T, weights=weights)
            return tuple(f.params_[k] for k in ("r", "alpha", "a", "b"))
        if model == "pareto":
            f = lifetimes.ParetoNBDFitter(penalizer_coef=0.0)
            f.fit(x, tx, T, weights=weights)
            return tuple(f.params_[k] for k in ("r", "alpha", "s", "beta"))
        f = lifetimes.GammaGammaFitter(penalizer_coef=0.0)
        f.fit(x, m, weights=weights)
        return tuple(f.params_[k] for k in ("p", "q", "v"))


def lt_compress(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    df = pd.DataFrame({f"c{i}": c for i, c in enumerate(cols)})
    g = df.groupby(list(df.columns)).size().reset_index(name="w")
    return [g[f"c{i}"].to_numpy() for i in range(len(cols))], g["w"].to_numpy()


# --------------------------------------------------------------------------- sections


def bench_cdnow(repeat: int) -> None:
    print("\n== CDNOW sample: 2,357 customers, 6,919 transactions, calibration to 1997-09-30, weeks")
    ids, days, amounts = read_sample()
    t_sum, s = timed(lambda: summary.summarise(summary.aggregates_from_transactions(ids, days, amounts, until=CAL_END), CAL_END, "week"), repeat)
    base = None
    if lifetimes is not None:
        tx = pd.DataFrame({"id": ids, "date": pd.to_datetime(days, unit="D"), "amount": amounts})
        base, _ = timed(lambda: lifetimes.utils.summary_data_from_transaction_data(
            tx, "id", "date", monetary_value_col="amount", observation_period_end="1997-09-30", freq="D", freq_multiplier=7), repeat)
    row("summary from transactions (numpy path)", t_sum, base, "lifetimes summary_data")
    x, tx_, T, m = s.frequency, s.recency, s.T, s.monetary
    for name, fn in (("bgnbd", lambda: models.fit_bgnbd(x, tx_, T)), ("pareto", lambda: models.fit_pareto(x, tx_, T)),
                     ("gg", lambda: models.fit_gg(x, m))):
        ours, fit = timed(fn, repeat)
        base, lt = (None, None)
        if lifetimes is not None:
            if name == "gg":
                sel = x > 0
                base, lt = timed(lambda: lt_fit("gg", x[sel], tx_[sel], T[sel], m[sel]), repeat)
            else:
                base, lt = timed(lambda: lt_fit(name, x, tx_, T), repeat)
        note = "params " + ", ".join(f"{v:.4f}" for v in fit.as_tuple()) + f"; LL {fit.log_likelihood:.4f}"
        if lt is not None:
            note += " | lifetimes " + ", ".join(f"{v:.4f}" for v in lt)
        row(f"fit {name}", ours, base, "lifetimes fit", note)


def bench_bootstrap(n: int, repeat: int) -> None:
    print(f"\n== bootstrap of the CDNOW summary: {n:,} customers (same distinct rows)")
    ids, days, amounts = read_sample()
    s = summary.summarise(summary.aggregates_from_transactions(ids, days, amounts, until=CAL_END), CAL_END, "week")
    pick = np.random.default_rng(42).integers(0, len(s), n)
    x, tx, T, m = s.frequency[pick], s.recency[pick], s.T[pick], s.monetary[pick]
    t_c, (rows, w, _inv) = timed(lambda: models.collapse(x, tx, T), repeat)
    print(f"  collapse to distinct rows: {t_c:.3f} s ({rows[0].size:,} distinct rows)")
    for name, fn in (("bgnbd", lambda: models.fit_bgnbd(x, tx, T)), ("pareto", lambda: models.fit_pareto(x, tx, T)),
                     ("gg", lambda: models.fit_gg(x, m))):
        ours, fit = timed(fn, repeat)
        base = None
        if lifetimes is not None:
            if name == "gg":
                sel = x > 0

                def go() -> Any:
                    (cx, cm), cw = lt_compress(x[sel], m[sel])
                    return lt_fit("gg", cx, None, None, cm, weights=cw)
            else:
                def go(name: str = name) -> Any:
                    (cx, ctx, cT), cw = lt_compress(x, tx, T)
                    return lt_fit(name, cx, ctx, cT, weights=cw)
            base, _ = timed(go, 1)
        row(f"fit {name} (incl. collapse)", ours, base, "lifetimes compressed", f"{fit.n_rows:,} rows")
    if lifetimes is not None and n <= 1_000_000 and os.environ.get("CLV_BENCH_LIFETIMES_RAW"):
        ours, _ = timed(lambda: models.fit_bgnbd(x, tx, T), 1)
        base, _ = timed(lambda: lt_fit("bgnbd", x, tx, T), 1)
        row("fit bgnbd, lifetimes on raw rows", ours, base, "lifetimes raw")


def simulate_bgnbd(n: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Customers drawn from BG/NBD (CDNOW parameters), born over 12 weeks, observed to week 78, day grain."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.243, 1 / 4.414, n)
    p = rng.beta(0.793, 2.426, n)
    birth = rng.integers(0, 84, n)
    T = (78 * 7 - birth) / 7.0
    x = np.zeros(n)
    last = np.zeros(n)
    t = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        t[idx] += rng.exponential(1.0 / lam[idx])
        inside = t[idx] <= T[idx]
        alive[idx[~inside]] = False
        ok = idx[inside]
        x[ok] += 1
        last[ok] = t[ok]
        alive[ok[rng.random(ok.size) < p[ok]]] = False
    tx = np.floor(last * 7) / 7
    # same-day purchases merge on the day grain: keep x consistent with distinct days is out of scope here
    m = np.where(x > 0, rng.gamma(6.25, 1.0, n) * 15.44 / rng.gamma(3.74, 1.0, n), 0.0)
    return x, tx, T, m


def bench_simulated(n: int, repeat: int, pareto: bool) -> None:
    print(f"\n== {n:,} customers simulated from BG/NBD, day grain (many distinct rows)")
    x, tx, T, m = simulate_bgnbd(n)
    rows = models.collapse(x, tx, T)[0][0].size
    print(f"  {rows:,} distinct (x, t_x, T) rows")
    todo = [("bgnbd", lambda: models.fit_bgnbd(x, tx, T)), ("gg", lambda: models.fit_gg(x, m))]
    if pareto:
        todo.insert(1, ("pareto", lambda: models.fit_pareto(x, tx, T)))
    for name, fn in todo:
        ours, fit = timed(fn, repeat)
        base = None
        if lifetimes is not None and name == "bgnbd":
            def go() -> Any:
                (cx, ctx, cT), cw = lt_compress(x, tx, T)
                return lt_fit("bgnbd", cx, ctx, cT, weights=cw)
            base, _ = timed(go, 1)
        if lifetimes is not None and name == "gg":
            sel = x > 0
            base, _ = timed(lambda: lt_fit("gg", x[sel], None, None, m[sel]), 1)
        row(f"fit {name}", ours, base, "lifetimes (compressed)" if name == "bgnbd" else "lifetimes raw",
            "params " + ", ".join(f"{v:.3f}" for v in fit.as_tuple()))


def bench_sql(n_customers: int, repeat: int) -> None:
    """The SQL summary (the plugin's query) against a plain sqlite3 GROUP BY floor and lifetimes in pandas."""

    from corecrm.storage import db, schema
    from corecrm_plugins.clv import store

    print(f"\n== SQL summary on SQLite: {n_customers:,} customers")
    rng = np.random.default_rng(3)
    per = rng.geometric(0.4, n_customers)  # purchases per customer
    cust = np.repeat(np.arange(1, n_customers + 1), per)
    first = rng.integers(0, 90, n_customers)
    offset = rng.integers(0, 500, cust.size)
    offset[np.cumsum(per) - per] = 0  # each customer's first purchase is on its first day
    day = np.repeat(first, per) + offset
    base_day = summary.day_number(dt.date(2024, 1, 1))
    amount = np.round(rng.gamma(2.0, 20.0, cust.size), 2)
    until = dt.date(2024, 1, 1) + dt.timedelta(days=600)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.db"
        eng = db.make_engine(f"sqlite:///{path}")
        schema.metadata.create_all(eng)
        with eng.begin() as conn:
            db.bulk_insert(conn, schema.transactions, ("workspace", "customer_id", "at", "amount"),
                           [("w", int(c), (dt.date(1970, 1, 1) + dt.timedelta(days=int(base_day + dd))).isoformat(), float(a))
                            for c, dd, a in zip(cust, day, amount)])
        print(f"  {cust.size:,} transactions")

        def ours() -> Any:
            with eng.connect() as conn:
                # what `clv fit` runs: no margin, so only the covering index is read
                return summary.summarise(store.fetch_aggregates(conn, "w", until, with_margin=False), until, "week")

        def floor() -> Any:
            con = sqlite3.connect(path)
            try:
                return con.execute(
                    "SELECT customer_id, COUNT(DISTINCT at), MIN(at), MAX(at), SUM(amount) FROM transactions "
                    "WHERE workspace = 'w' AND at <= ? GROUP BY customer_id", (until.isoformat(),)).fetchall()
            finally:
                con.close()

        t_ours, s = timed(ours, repeat)
        t_floor, _ = timed(floor, repeat)
        print(f"  plugin SQL summary {t_ours:.3f} s; plain sqlite3 GROUP BY floor {t_floor:.3f} s; ratio {t_ours / t_floor:.2f}x the floor ({len(s):,} customers)")
        if lifetimes is not None:
            df = pd.DataFrame({"id": cust, "date": pd.to_datetime(base_day + day, unit="D"), "amount": amount})
            t_lt, _ = timed(lambda: lifetimes.utils.summary_data_from_transaction_data(
                df, "id", "date", monetary_value_col="amount", observation_period_end=until.isoformat(), freq="D", freq_multiplier=7), 1)
            print(f"  lifetimes summary_data_from_transaction_data on the same rows in memory: {t_lt:.3f} s ({t_lt / t_ours:.1f}x the plugin's SQL)")
        eng.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k instead of 1M customers")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pareto-simulated", action="store_true", help="also fit Pareto/NBD on the simulated set (slow: many distinct rows)")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, cpus {os.cpu_count()}")
    print("lifetimes " + (lifetimes.__version__ if lifetimes else f"not available ({LIFETIMES_ERROR})"))
    bench_cdnow(args.repeat)
    bench_bootstrap(n, args.repeat)
    bench_simulated(n, 1, args.pareto_simulated)
    bench_sql(n // 5, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
