"""The commands and reports end to end through the real ``corecrm`` CLI (in-process, click's runner).

CDNOW sample imported with ``corecrm transactions import``, fitted with
``corecrm clv fit``, predicted with ``corecrm clv predict``, shown with
``corecrm report clv|rfm``; then other plugins read values through
``crm_customer_values``.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from clv_testdata import cdnow_csv  # noqa: F401  (fixture)

from corecrm.app import Crm
from corecrm.cli import main
from corecrm.config import Config
from corecrm.context import HookContext


@pytest.fixture(scope="module")
def cli(tmp_path_factory, cdnow_csv):  # noqa: F811
    d = tmp_path_factory.mktemp("clvcli")
    cfg = d / "corecrm.toml"
    cfg.write_text(
        '[crm]\ndatabase = "sqlite:///crm.db"\n\n'
        "[plugins.clv]\nhorizon = 39.0\nmargin = 1.0\n\n"
        '[[plugins.clv.segments]]\nname = "best"\nr = [5, 5]\nf = [5, 5]\nm = [5, 5]\n\n'
        '[[plugins.clv.segments]]\nname = "gone"\nr = 1\nf = 1\n'
    )
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        res = runner.invoke(main, ["--config", str(cfg), *args], env={"CORECRM_NOW": "2026-01-15T12:00:00+00:00"})
        if ok:
            assert res.exit_code == 0, res.output + str(res.exception)
        return res

    res = run("transactions", "import", str(cdnow_csv))
    assert "imported: 6919 of 6919 rows, 2357 new customers, 0 rejected" in res.output
    run.config = cfg  # type: ignore[attr-defined]
    return run


def test_fit_json_prints_the_papers_parameters(cli):
    out = json.loads(cli("clv", "fit", "--model", "bgnbd", "--until", "1997-09-30", "--json").output)
    assert out["model"] == "bgnbd" and out["n_customers"] == 2357
    assert [round(out["params"][k], 3) for k in ("r", "alpha", "a", "b")] == [0.243, 4.414, 0.793, 2.426]
    assert round(out["log_likelihood"], 1) == -9582.4
    out = json.loads(cli("clv", "fit", "--model", "pareto", "--until", "1997-09-30", "--json").output)
    assert [round(out["params"][k], 3) for k in ("r", "alpha", "s", "beta")] == [0.553, 10.578, 0.606, 11.669]
    out = json.loads(cli("clv", "fit", "--model", "gg", "--until", "1997-09-30", "--json").output)
    assert [round(out["params"][k], 2) for k in ("p", "q", "gamma")] == [6.25, 3.74, 15.44]
    assert out["n_customers"] == 946


def test_fit_table_with_holdout(cli):
    res = cli("clv", "fit", "--model", "bgnbd", "--until", "1997-09-30", "--holdout-end", "1998-06-30")
    assert "log-likelihood: -9582.4292" in res.output
    assert "actual 1882" in res.output


def test_predict_json_and_report(cli):
    cli("clv", "fit", "--model", "gg", "--until", "1997-09-30")
    out = json.loads(cli("clv", "predict", "--horizon", "39", "--model", "bgnbd", "--json").output)
    assert out["n_customers"] == 2357 and out["horizon"] == 39
    c1 = next(c for c in out["customers"] if c["customer_id"] == "1")
    assert set(c1) >= {"customer_id", "expected_purchases", "p_alive", "expected_spend", "clv"}
    assert all(c["clv"] >= 0 and 0 < c["p_alive"] <= 1 for c in out["customers"])

    rep = json.loads(cli("report", "clv", "--json", "--top", "5").output)
    assert rep["report"] == "clv" and len(rep["rows"]) == 5
    assert rep["model_version"] == out["model_version"]
    assert rep["rows"][0][1] == max(c["clv"] for c in out["customers"])
    text = cli("report", "clv", "--csv").output
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:2] == ["customer_id", "clv"] and len(rows) == 2358


def test_rfm_report_and_stored_segments(cli):
    rep = json.loads(cli("report", "rfm", "--to", "1998-06-30", "--json").output)
    assert rep["pareto"]["top_customers"] == 472
    assert round(rep["pareto"]["top_share_of_value"], 4) == 0.6746
    segs = {r[0]: r[1] for r in rep["rows"]}
    assert segs["best"] == 248  # the TOML segment "best" is exactly the 555 cell
    assert sum(segs.values()) == 2357
    rep = json.loads(cli("report", "rfm", "--to", "1998-06-30", "--customers", "--json").output)
    assert len(rep["rows"]) == 2357
    res = cli("clv", "rfm", "--as-of", "1998-06-30")
    assert "2357 customers scored as of 1998-06-30; stored" in res.output


def test_customer_values_hook(cli):
    cli("clv", "predict", "--horizon", "39", "--model", "bgnbd")
    cli("clv", "rfm", "--as-of", "1998-06-30")
    crm = Crm(Config.load(cli.config))
    try:
        ctx = HookContext(crm=crm, workspace=crm.workspace, now=crm.now())
        values = crm.plugins.collect("crm_customer_values", customer_ids=[1, 2, 3], ctx=ctx)
    finally:
        crm.close()
    assert sorted(v.customer_id for v in values) == [1, 2, 3]
    assert all(v.kind == "clv" and v.value >= 0 and v.plugin == "clv" for v in values)
    assert all(v.detail["model_version"].startswith("bgnbd@") and v.detail["segment"] for v in values)


def test_errors_are_one_line(cli, tmp_path):
    res = cli("clv", "fit", "--until", "31/12/1997", ok=False)
    assert res.exit_code == 1 and res.output.strip() == "error: --until: not a date (YYYY-MM-DD): '31/12/1997'"
    res = cli("clv", "fit", "--until", "1996-01-01", ok=False)
    assert res.exit_code == 1 and "before the first transaction" in res.output
    res = cli("-w", "empty", "clv", "fit", ok=False)
    assert "error: workspace 'empty' has no transactions" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,date,amount\nx,2025-01-01,-3\n")
    res = cli("-w", "bad", "transactions", "import", str(bad), "--strict", ok=False)
    assert res.exit_code == 1 and "bad.csv:2: amount: negative amount -3" in res.output
    assert "nothing imported (--strict)" in res.output


def test_bad_segment_config_names_the_key(tmp_path):
    cfg = tmp_path / "corecrm.toml"
    cfg.write_text('[crm]\ndatabase = "sqlite:///crm.db"\n\n[[plugins.clv.segments]]\nname = "x"\nr = [4, 9]\n')
    res = CliRunner().invoke(main, ["--config", str(cfg), "clv", "rfm"])
    assert res.exit_code == 1
    assert "plugins.clv.segments[0].r: expected a score 1..5 or a range [low, high] within 1..5, got [4, 9]" in res.output


def test_customer_values_before_any_prediction_are_historic(tmp_path):
    f = tmp_path / "tx.csv"
    f.write_text("customer_id,date,amount,cost\nA,2025-01-02,100,60\nA,2025-02-02,50,\nB,2025-01-05,20,5\n")
    cfg = tmp_path / "corecrm.toml"
    cfg.write_text('[crm]\ndatabase = "sqlite:///crm.db"\n\n[plugins.clv]\nmargin = 0.3\n')
    res = CliRunner().invoke(main, ["--config", str(cfg), "transactions", "import", str(f)])
    assert res.exit_code == 0, res.output
    crm = Crm(Config.load(cfg))
    try:
        values = {v.customer_id: v for v in crm.customer_values([1, 2, 99])}
    finally:
        crm.close()
    assert set(values) == {1, 2}
    assert values[1].kind == "historic_clv" and values[1].value == pytest.approx(40 + 15)  # (100-60) + 50 x 0.3
    assert values[2].value == pytest.approx(15)


def test_plugin_import_and_command_listing_stay_light():
    """`corecrm --help` must stay fast: loading the plugin and its commands imports no numpy/scipy."""
    import subprocess
    import sys

    code = (
        "import sys, corecrm_plugins.clv as p; p.crm_cli_commands(); p.crm_plugin_settings(); p.crm_reports({}); "
        "print(sorted(m for m in ('numpy', 'scipy', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
