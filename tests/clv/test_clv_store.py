"""The SQL side: import, the summary computed by the database, fits, predictions and RFM stored per customer.

Runs on SQLite, and on PostgreSQL too when CORECRM_TEST_PG_URL is set.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import sqlalchemy as sa

from corecrm.storage import db, schema

from clv_testdata import cdnow_csv, cdnow_transactions  # noqa: F401  (fixtures)

from corecrm_plugins.clv import importer, service, store
from corecrm_plugins.clv.errors import ClvError

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.timezone.utc)
CAL_END = dt.date(1997, 9, 30)

BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get("CORECRM_TEST_PG_URL") else [])


@pytest.fixture(params=BACKENDS, scope="module")
def engine(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('clvdb') / 'crm.db'}"
        eng = db.make_engine(url)
        schema.metadata.create_all(eng)
        store.ensure_tables(eng)
        yield eng
        eng.dispose()
        return
    base = db.make_engine(os.environ["CORECRM_TEST_PG_URL"])
    name = f"clv_{uuid.uuid4().hex[:10]}"
    with base.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    url = base.url.set(database=name)
    eng = db.make_engine(url.render_as_string(hide_password=False))
    schema.metadata.create_all(eng)
    store.ensure_tables(eng)
    yield eng
    eng.dispose()
    with base.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql(f"DROP DATABASE {name}")
    base.dispose()


@pytest.fixture(scope="module")
def cdnow_ws(engine, cdnow_csv):
    res = importer.import_transactions(engine, "cdnow", cdnow_csv, now=NOW)
    assert res.imported == 6919 and res.customers_created == 2357 and not res.rejected
    return "cdnow"


def test_sql_summary_matches_numpy_summary(engine, cdnow_ws, cdnow_transactions):
    import numpy as np

    from corecrm_plugins.clv import summary

    with engine.connect() as conn:
        agg = store.fetch_aggregates(conn, cdnow_ws, CAL_END)
    sql = summary.summarise(agg, CAL_END, "week")
    ids = np.array([t[0] for t in cdnow_transactions])
    days = np.array([summary.day_number(t[1]) for t in cdnow_transactions])
    amounts = np.array([t[2] for t in cdnow_transactions])
    mem = summary.summarise(summary.aggregates_from_transactions(ids, days, amounts, until=CAL_END), CAL_END, "week")
    order = np.argsort(sql.external_id.astype(int))
    assert (sql.external_id[order].astype(int) == mem.external_id).all()
    for a, b in [(sql.frequency, mem.frequency), (sql.recency, mem.recency), (sql.T, mem.T)]:
        assert (a[order] == b).all()
    assert np.allclose(sql.monetary[order], mem.monetary, rtol=1e-12)


def test_fit_predict_store_on_cdnow(engine, cdnow_ws):
    bg = service.fit(engine, cdnow_ws, "bgnbd", now=NOW, until=CAL_END, holdout_end=dt.date(1998, 6, 30))
    assert [round(bg["params"][k], 3) for k in ("r", "alpha", "a", "b")] == [0.243, 4.414, 0.793, 2.426]
    assert round(bg["log_likelihood"], 1) == -9582.4 and bg["n_customers"] == 2357
    assert bg["holdout"]["actual_total"] == 1882
    pa = service.fit(engine, cdnow_ws, "pareto", now=NOW, until=CAL_END)
    assert [round(pa["params"][k], 3) for k in ("r", "alpha", "s", "beta")] == [0.553, 10.578, 0.606, 11.669]
    gg = service.fit(engine, cdnow_ws, "gg", now=NOW, until=CAL_END)
    assert [round(gg["params"][k], 2) for k in ("p", "q", "gamma")] == [6.25, 3.74, 15.44]
    assert gg["n_customers"] == 946
    assert gg["version"] == pa["version"] + 1 == bg["version"] + 2

    out = service.predict(engine, cdnow_ws, now=NOW, horizon=39, model="bgnbd")
    assert out["model_version"] == f"bgnbd@{bg['version']}+gg@{gg['version']}"
    assert out["n_customers"] == 2357
    first = next(c for c in out["customers"] if c["customer_id"] == "1")
    assert first["frequency"] == 2 and first["expected_purchases"] > 0 and 0 < first["p_alive"] <= 1
    assert all(c["clv"] >= 0 for c in out["customers"])
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(store.clv_values).where(store.clv_values.c.workspace == cdnow_ws)).scalar_one()
        vals = store.values_for(conn, cdnow_ws, [1, 2, 3])
    assert n == 2357
    assert {v["model_version"] for v in vals} == {out["model_version"]}


def test_rfm_and_pareto_on_cdnow(engine, cdnow_ws):
    out = service.rfm(engine, cdnow_ws, now=NOW, as_of=dt.date(1998, 6, 30))
    codes = [c["code"] for c in out["customers"]]
    assert codes.count(555) == 248 and codes.count(111) == 171
    assert [round(v, 2) for v in out["mean_spend_by_m"]] == [12.27, 23.73, 43.76, 88.87, 348.84]
    for dim in ("r", "f", "m"):
        sizes = [sum(1 for c in out["customers"] if c[dim] == k) for k in range(1, 6)]
        assert sizes == [472, 471, 471, 471, 472]
    p = out["pareto"]
    assert p["top_customers"] == 472 and round(p["top_share_of_value"] * 100, 2) == 67.46
    assert p["customers_for_value_share"] == 777
    assert round(p["total"], 2) == 244091.94
    assert sum(s["customers"] for s in out["segments"]) == 2357


def test_reimport_is_refused_and_rejected_rows_are_reported(engine, tmp_path):
    f = tmp_path / "tx.csv"
    f.write_text(
        "customer_id,date,amount,cost\n"
        "a,2025-01-02,10.00,4\n"
        "b,2025-13-40,5,\n"
        "c,2025-01-03,-5,\n"
        "d,2030-01-01,5,\n"
        ",2025-01-03,5,\n"
        "e,20250104,7.5,\n"
        "f,2025-01-04,abc,\n"
        "g,2025-01-04,3,-1\n"
    )
    res = importer.import_transactions(engine, "rej", f, now=NOW)
    assert res.imported == 2 and res.rows == 8
    msgs = [r.format(str(f)) for r in res.rejected]
    assert msgs == [
        f"{f}:3: date: not a date (YYYY-MM-DD or YYYYMMDD): '2025-13-40'",
        f"{f}:4: amount: negative amount -5 (refunds must be netted before import)",
        f"{f}:5: date: 2030-01-01 is in the future (today is 2026-01-15)",
        f"{f}:6: customer_id: missing customer id",
        f"{f}:8: amount: not a number: 'abc'",
        f"{f}:9: cost: negative cost -1 (refunds must be netted before import)",
    ]
    with pytest.raises(ClvError, match="already imported"):
        importer.import_transactions(engine, "rej", f, now=NOW)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(schema.transactions).where(schema.transactions.c.workspace == "rej")).scalar_one()
    assert n == 2
    # strict: nothing written
    g = tmp_path / "tx2.csv"
    g.write_text("customer_id,date,amount\nz,2025-01-02,1\nz,bad,1\n")
    res = importer.import_transactions(engine, "strict", g, now=NOW, strict=True)
    assert not res.written and len(res.rejected) == 1
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(schema.transactions).where(schema.transactions.c.workspace == "strict")).scalar_one()
    assert n == 0


def test_missing_header_column_names_it(engine, tmp_path):
    f = tmp_path / "nohdr.csv"
    f.write_text("who,when,amount\nx,2025-01-01,1\n")
    with pytest.raises(ClvError, match=r"nohdr.csv:1: header: no customer id column"):
        importer.import_transactions(engine, "h", f, now=NOW)


def test_bad_data_in_the_table_gives_clear_errors(engine):
    with pytest.raises(ClvError, match="workspace 'empty' has no transactions"):
        service.fit(engine, "empty", "bgnbd", now=NOW)
    with engine.begin() as conn:
        conn.execute(schema.transactions.insert(), [
            {"workspace": "neg", "customer_id": 1, "at": dt.date(2025, 1, 1), "amount": 10.0},
            {"workspace": "neg", "customer_id": 1, "at": dt.date(2025, 2, 1), "amount": -4.0},
            {"workspace": "fut", "customer_id": 1, "at": dt.date(2025, 1, 1), "amount": 10.0},
            {"workspace": "fut", "customer_id": 1, "at": dt.date(2027, 1, 1), "amount": 4.0},
            {"workspace": "one", "customer_id": 1, "at": dt.date(2025, 1, 1), "amount": 10.0},
        ])
    with pytest.raises(ClvError, match=r"transaction \d+ \(customer 1\): negative amount -4.0"):
        service.fit(engine, "neg", "bgnbd", now=NOW)
    with pytest.raises(ClvError, match=r"dated 2027-01-01 which is after today \(2026-01-15\)"):
        service.fit(engine, "fut", "bgnbd", now=NOW)
    with pytest.raises(ClvError, match="no customer has a repeat purchase"):
        service.fit(engine, "one", "bgnbd", now=NOW)
    with pytest.raises(ClvError, match="no fitted bgnbd or pareto model"):
        service.predict(engine, "one", now=NOW, horizon=10)


def test_workspaces_are_isolated(engine, cdnow_ws, tmp_path):
    f = tmp_path / "other.csv"
    f.write_text("customer_id,date,amount\n1,2025-01-02,10\n1,2025-02-02,20\n2,2025-01-05,5\n")
    importer.import_transactions(engine, "other", f, now=NOW)
    with engine.connect() as conn:
        agg = store.fetch_aggregates(conn, "other", dt.date(2025, 12, 31))
    assert len(agg) == 2 and sorted(agg.external_id.tolist()) == ["1", "2"]


def test_time_unit_rescales_alpha_only(engine, cdnow_ws):
    """BG/NBD in days: r, a, b are unit-free, α scales by 7, and the LL shifts by Σx·ln 7."""
    import math

    week = service.fit(engine, cdnow_ws, "bgnbd", now=NOW, until=CAL_END, unit="week")
    day = service.fit(engine, cdnow_ws, "bgnbd", now=NOW, until=CAL_END, unit="day")
    assert day["unit"] == "day"
    for k in ("r", "a", "b"):
        assert day["params"][k] == pytest.approx(week["params"][k], rel=1e-4)
    assert day["params"]["alpha"] == pytest.approx(7 * week["params"]["alpha"], rel=1e-4)
    assert day["log_likelihood"] == pytest.approx(week["log_likelihood"] - 2457 * math.log(7), abs=1e-3)
