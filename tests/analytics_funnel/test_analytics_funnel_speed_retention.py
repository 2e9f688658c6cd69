"""Speed to lead and retention on hand-built data with worked answers."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from af_helpers import NS, T0, day, svg_root
from af_helpers import crm, make_report_crm, sqlite_crm  # noqa: F401  (fixtures)
from corecrm.hooks import hookimpl
from corecrm.records import CustomerValue
from corecrm.storage import schema
from corecrm_plugins.analytics_funnel import retention, speed
from corecrm_plugins.analytics_funnel.common import percentile

H = dt.timedelta(hours=1)


def build_speed(crm):
    crm.lead(source="web", team="a", assigned_at=T0 + 1 * H, first_contact_at=T0 + 2 * H)
    crm.lead(source="web", team="a", assigned_at=T0 + 3 * H, first_contact_at=T0 + 10 * H)
    crm.lead(source="web", team="b", assigned_at=T0 + 5 * H)
    crm.lead(source="ads", team="b")
    crm.lead(ws="other", source="web", assigned_at=T0 + 100 * H)


def test_speed_percentiles(crm):
    build_speed(crm)
    table = speed.run(crm, "default", {})
    g = table.data["groups"]["(total)"] if "(total)" in table.data["groups"] else table.data["groups"]["all"]
    assert g["leads"] == 4 and g["assigned"] == 3 and g["contacted"] == 2
    # assignment delays [1, 3, 5] h; first contact [2, 10] h; linear interpolation between ranks
    assert g["assignment"]["p50"] == pytest.approx(3.0, abs=1e-6)
    assert g["assignment"]["p90"] == pytest.approx(4.6, abs=1e-6)
    assert g["assignment"]["p95"] == pytest.approx(4.8, abs=1e-6)
    assert g["first_contact"]["p50"] == pytest.approx(6.0, abs=1e-6)
    assert g["first_contact"]["p90"] == pytest.approx(9.2, abs=1e-6)


def test_speed_by_source_and_team(crm, tmp_path):
    build_speed(crm)
    by_source = speed.run(crm, "default", {"by": "source"}).data["groups"]
    assert by_source["ads"]["assignment"]["p50"] is None
    assert by_source["web"]["assignment"]["p50"] == pytest.approx(3.0, abs=1e-6)
    assert by_source["(total)"]["leads"] == 4
    table = speed.run(crm, "default", {"by": "team"})
    assert table.data["groups"]["a"]["first_contact"]["p50"] == pytest.approx(6.0, abs=1e-6)
    assert table.data["groups"]["b"]["assignment"]["p50"] == pytest.approx(5.0, abs=1e-6)
    speed.chart(table, tmp_path / "speed.svg")
    bars = svg_root(tmp_path / "speed.svg").findall("s:rect[@class='bar']", NS)
    assert {(b.get("data-category"), b.get("data-series")) for b in bars} >= {("a", "to assignment"), ("b", "to first contact")}


def test_speed_empty(crm):
    table = speed.run(crm, "default", {"from": "2026-01-01", "to": "2026-01-31"})
    assert table.rows == [] and any("no leads were captured" in n for n in table.notes)


def build_retention(crm):
    d = dt.date
    crm.tx(1, d(2026, 1, 5), 100.0, 60.0)
    crm.tx(1, d(2026, 4, 5), 50.0, 10.0)
    crm.tx(2, d(2026, 2, 1), 200.0, 50.0)
    crm.tx(2, d(2026, 3, 1), 100.0, 50.0)  # 300 in Q1, gone in Q2
    crm.tx(3, d(2026, 3, 30), 100.0, 40.0)
    crm.tx(3, d(2026, 6, 30), 20.0, 5.0)
    crm.tx(4, d(2026, 5, 1), 70.0, 20.0)  # new in Q2
    crm.tx(5, d(2026, 1, 1), 999.0, 1.0, ws="other")
    crm.tx(5, d(2026, 4, 1), 999.0, 1.0, ws="other")


def test_retention_rates(crm):
    build_retention(crm)
    table = retention.run(crm, "default", {"from": "2026-01-01", "to": "2026-06-30"})
    assert len(table.data["periods"]) == 1
    p = table.data["periods"][0]
    assert (p["period"], p["previous"]) == ("2026-Q2", "2026-Q1")
    assert p["customers_at_start"] == 3 and p["retained"] == 2 and p["new_or_returning"] == 1
    assert p["raw_retention"] == pytest.approx(2 / 3)
    assert p["churn_rate"] == pytest.approx(1 / 3)
    assert p["sales_adjusted"] == pytest.approx(200 / 500)  # A-sales of the retained / A-sales of all
    assert p["sales_next"] == pytest.approx(70 / 500)
    assert p["profit_adjusted"] == pytest.approx(100 / 300)  # profits 40, 200, 60


def test_retention_monthly_and_workspace(crm):
    build_retention(crm)
    table = retention.run(crm, "default", {"from": "2026-01-01", "to": "2026-06-30", "every": "month"})
    assert [p["period"] for p in table.data["periods"]] == ["2026-02", "2026-03", "2026-04", "2026-05", "2026-06"]
    feb = table.data["periods"][0]
    assert feb["customers_at_start"] == 1 and feb["retained"] == 0 and feb["raw_retention"] == 0.0
    mar = table.data["periods"][1]  # Feb: customer 2; Mar: 2 and 3
    assert mar["raw_retention"] == 1.0
    may = table.data["periods"][3]  # nobody bought in April except 1; 1 did not buy in May
    assert may["customers_at_start"] == 1 and may["retained"] == 0
    other = retention.run(crm, "other", {"from": "2026-01-01", "to": "2026-06-30"})
    assert other.data["periods"][0]["raw_retention"] == 1.0


def test_retention_empty_and_no_cost(crm, tmp_path):
    table = retention.run(crm, "default", {})
    assert any("no transactions" in n for n in table.notes)
    assert all(p["raw_retention"] is None for p in table.data["periods"])
    retention.chart(table, tmp_path / "empty.svg")
    assert svg_root(tmp_path / "empty.svg").find("s:text[@class='note']", NS) is not None
    crm.tx(1, dt.date(2026, 1, 5), 10.0)
    crm.tx(1, dt.date(2026, 4, 5), 10.0)
    p = retention.run(crm, "default", {"from": "2026-01-01", "to": "2026-06-30"}).data["periods"][0]
    assert p["raw_retention"] == 1.0 and p["profit_adjusted"] is None
    with pytest.raises(Exception, match="--every"):
        retention.run(crm, "default", {"every": "fortnight"})


class FakeClv:
    @hookimpl
    def crm_customer_values(self, customer_ids, ctx, settings):
        return [CustomerValue(customer_id=cid, value=10.0 * cid, detail={"p_alive": 0.2 if cid in (2, 4) else 0.9}) for cid in customer_ids]


def test_customers_at_risk_from_a_value_plugin(crm, tmp_path):
    build_retention(crm)
    table = retention.run(crm, "default", {"from": "2026-01-01", "to": "2026-06-30"})
    assert any("need a customer-value plugin" in n for n in table.notes)
    crm.plugins.register(FakeClv(), "fakeclv")
    table = retention.run(crm, "default", {"from": "2026-01-01", "to": "2026-06-30"})
    assert [r["customer_id"] for r in table.data["at_risk"]] == [4, 2]
    assert table.data["at_risk"][0]["plugin"] == "fakeclv"
    assert any("2 worth 60.00" in n for n in table.notes)
    retention.chart(table, tmp_path / "ret.svg")
    root = svg_root(tmp_path / "ret.svg")
    lines = root.findall("s:polyline[@class='line']", NS)
    assert {l.get("data-series") for l in lines} == {"raw retention", "sales-adjusted", "profit-adjusted"}
    pts = {(p.get("data-series"), p.get("data-category")): float(p.get("data-value")) for p in root.findall("s:circle[@class='point']", NS)}
    assert pts[("raw retention", "2026-Q2")] == pytest.approx(2 / 3)


_examples = iter(range(10**6))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hours=st.lists(st.floats(min_value=0, max_value=500, allow_nan=False), min_size=1, max_size=25))
def test_sql_percentiles_match_linear_interpolation(sqlite_crm, hours):
    """The window-function percentiles equal numpy-style interpolation over the same delays."""
    ws = f"p{next(_examples)}"
    rows = [dict(workspace=ws, stage="lead", status="open", created_at=T0, updated_at=T0, assigned_at=T0 + dt.timedelta(hours=h)) for h in hours]
    with sqlite_crm.engine.begin() as conn:
        conn.execute(schema.leads.insert(), rows)
    got = speed.run(sqlite_crm, ws, {}).data["groups"]["(total)"]["assignment"]
    ordered = sorted(hours)
    for p in (0.5, 0.9, 0.95):
        assert got[f"p{round(100 * p)}"] == pytest.approx(percentile(ordered, p), abs=1e-6)
