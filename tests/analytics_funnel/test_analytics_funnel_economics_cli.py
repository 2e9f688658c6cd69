"""Campaign economics, the cost commands and the reports through `corecrm report`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from af_helpers import NS, day, svg_root
from af_helpers import crm, make_report_crm  # noqa: F401  (fixtures)
from corecrm.cli import main
from corecrm_plugins.analytics_funnel import costs, economics
from test_analytics_funnel_speed_retention import FakeClv

JAN = {"date_from": "2026-01-01", "date_to": "2026-01-31"}


def build(crm):
    l1 = crm.lead(campaign="spring", source="web", stages=(("mql", day(1)), ("sql", day(2)), ("opportunity", day(3)), ("customer", day(19))))
    crm.lead(campaign="spring", source="web", stages=(("mql", day(1)), ("sql", day(2))))
    crm.lead(campaign="spring", source="web", stages=(("mql", day(5)),))
    crm.lead(campaign="autumn", source="ads", stages=(("mql", day(5)),))
    crm.lead(campaign="autumn", source="ads")
    crm.lead(source="web")
    cust = crm.customer(lead_id=l1, created=day(19))
    crm.deal(lead_id=l1, customer_id=cust, amount=2000.0, status="won", stage="won", closed=day(19))
    costs.store(crm, "default", costs.iter_costs([
        {"campaign": "spring", "amount": "1000", "period_start": "2026-01-01", "period_end": "2026-01-31", "source": "web"},
        {"campaign": "autumn", "amount": "600", "period_start": "2026-01-01", "period_end": "2026-02-28", "source": "ads"},
    ]))
    costs.store(crm, "other", costs.iter_costs([{"campaign": "spring", "amount": "99999", "period_start": "2026-01-01", "period_end": "2026-01-31"}]))
    return cust


def test_cost_ratios_and_return(crm):
    build(crm)
    table = economics.run(crm, "default", JAN)
    g = table.data["groups"]
    s = g["spring"]
    assert (s["cost"], s["leads"], s["qualified"], s["customers"]) == (1000.0, 3, 3, 1)
    assert s["cost_per_lead"] == pytest.approx(1000 / 3)
    assert s["cost_per_qualified"] == pytest.approx(1000 / 3)
    assert s["cost_per_customer"] == pytest.approx(1000.0)
    assert s["revenue"] == pytest.approx(2000.0)
    assert s["return_on_spend"] == pytest.approx(1.0)
    assert s["roas"] == pytest.approx(2.0)
    a = g["autumn"]
    assert a["cost"] == pytest.approx(600 * 31 / 59)  # pro-rated: 31 of its 59 days fall in January
    assert (a["leads"], a["qualified"], a["customers"]) == (2, 1, 0)
    assert a["cost_per_customer"] is None  # no customer: no ratio, no ZeroDivisionError
    assert a["return_on_spend"] == pytest.approx(-1.0)
    assert g["(none)"]["cost"] is None and g["(none)"]["return_on_spend"] is None
    assert table.data["value_plugins"] == []


def test_by_source_and_predicted_value(crm, tmp_path):
    cust = build(crm)
    by_source = economics.run(crm, "default", {**JAN, "by": ["source"]}).data["groups"]
    assert by_source["web"]["cost"] == 1000.0 and by_source["web"]["leads"] == 4
    crm.plugins.register(FakeClv(), "fakeclv")
    table = economics.run(crm, "default", JAN)
    s = table.data["groups"]["spring"]
    assert s["predicted_value"] == pytest.approx(10.0 * cust)
    assert s["predicted_return_on_spend"] == pytest.approx((10.0 * cust - 1000) / 1000)
    assert "predicted value" in table.columns
    economics.chart(table, tmp_path / "e.svg")
    bars = svg_root(tmp_path / "e.svg").findall("s:rect[@class='bar']", NS)
    assert {b.get("data-series") for b in bars} == {"cost", "revenue", "predicted value"}


def test_empty_period(crm):
    table = economics.run(crm, "default", {"date_from": "2030-01-01", "date_to": "2030-01-31"})
    assert table.rows == [] and any("no leads, costs or won revenue" in n for n in table.notes)


def test_cost_validation_names_row_and_field(tmp_path):
    bad = tmp_path / "costs.csv"
    bad.write_text("campaign,amount,from,to\nspring,100,2026-01-01,2026-01-31\nautumn,ten,2026-01-01,2026-01-31\n")
    with pytest.raises(costs.CostError, match=r"costs.csv: row 3: amount: not a number"):
        costs.read_csv(bad)
    bad.write_text("campaign,amount,from\nx,1,2026-01-01\n")
    with pytest.raises(costs.CostError, match=r"row 1: missing column\(s\) period_end"):
        costs.read_csv(bad)
    bad.write_text("campaign,amount,from,to\nx,1,2026-02-01,2026-01-01\n")
    with pytest.raises(costs.CostError, match=r"row 2: period_end: 2026-01-01 is before"):
        costs.read_csv(bad)


@pytest.fixture
def cli_env(tmp_path):
    cfg = tmp_path / "corecrm.toml"
    cfg.write_text(f'[crm]\ndatabase = "sqlite:///{tmp_path / "crm.db"}"\n[plugins]\nenabled = ["analytics_funnel"]\n')
    runner = CliRunner()

    def run(*args, ok=True):
        res = runner.invoke(main, ["--config", str(cfg), *args], catch_exceptions=False)
        if ok:
            assert res.exit_code == 0, res.output
        return res

    return run


def test_cost_commands(cli_env, tmp_path):
    out = cli_env("campaigns", "cost", "add", "spring", "1000", "--from", "2026-01-01", "--to", "2026-01-31", "--source", "web")
    assert "added: spring 1,000.00" in out.output
    out = cli_env("campaigns", "cost", "add", "spring", "1200", "--from", "2026-01-01", "--to", "2026-01-31", "--source", "web")
    assert "replaced" in out.output
    good = tmp_path / "c.csv"
    good.write_text("campaign,amount,period_start,period_end,source\nautumn,600,2026-01-01,2026-02-28,ads\nwinter,50,2026-01-01,2026-01-01,\n")
    assert "2 cost(s) imported (0 replaced)" in cli_env("campaigns", "cost", "import", str(good)).output
    assert "2 cost(s) imported (2 replaced)" in cli_env("campaigns", "cost", "import", str(good)).output
    bad = tmp_path / "bad.csv"
    bad.write_text("campaign,amount,period_start,period_end\nok,1,2026-01-01,2026-01-02\n,5,2026-01-01,2026-01-02\n")
    res = cli_env("campaigns", "cost", "import", str(bad), ok=False)
    assert res.exit_code != 0 and "row 3: campaign: missing" in res.output
    listed = json.loads(cli_env("campaigns", "cost", "list", "--json").output)
    assert sorted((r["campaign"], r["amount"]) for r in listed) == [("autumn", 600.0), ("spring", 1200.0), ("winter", 50.0)]  # nothing of bad.csv


def test_report_list_and_run_through_the_cli(cli_env, tmp_path):
    out = cli_env("report", "--list").output
    for name in ("funnel", "attribution", "campaign_economics", "forecast", "retention", "speed_to_lead"):
        assert name in out
    cli_env("campaigns", "cost", "add", "spring", "1000", "--from", "2026-01-01", "--to", "2026-01-31")
    for name in ("funnel", "attribution", "campaign-economics", "forecast", "retention", "speed-to-lead"):
        chart = tmp_path / f"{name}.svg"
        res = cli_env("report", name, "--json", "--chart", str(chart))
        data = json.loads(res.stdout)
        assert data["report"] == name.replace("-", "_") and data["notes"]
        assert svg_root(chart).tag.endswith("svg")
    res = cli_env("report", "campaign-economics", "--from", "2026-01-01", "--to", "2026-01-31", "--csv")
    assert res.stdout.splitlines()[1] == 'spring,1000.0,0,0,0,,,,0.0,-1.0'
    res = cli_env("report", "funnel", "--by", "colour", ok=False)
    assert res.exit_code != 0 and "--by: unknown dimension 'colour'" in res.output
    res = cli_env("report", "attribution", "--half-life", "3")
    assert "half-life 3 days" in res.output
