"""Weighted pipeline forecast: $10k@10% + $20k@75% + $5k@90% + $12k@20% = $22,900."""

from __future__ import annotations

import datetime as dt

import pytest

from af_helpers import NS, svg_root
from af_helpers import crm, make_report_crm  # noqa: F401  (fixtures)
from corecrm_plugins.analytics_funnel import forecast

UTC = dt.timezone.utc
D = dt.date
SF = {
    "pipelines": {
        "sf": {
            "stages": [
                {"name": "prospecting", "probability": 0.1},
                {"name": "needs_analysis", "probability": 0.2},
                {"name": "proposal", "probability": 0.75},
                {"name": "negotiation", "probability": 0.9},
                {"name": "won", "probability": 1.0, "closed": "won"},
                {"name": "lost", "probability": 0.0, "closed": "lost"},
            ]
        }
    }
}
NOW = dt.datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def ts(y, m, d):
    return dt.datetime(y, m, d, 10, 0, tzinfo=UTC)


@pytest.fixture
def fcrm(make_report_crm, db_url):
    return make_report_crm(db_url, config=SF, now=NOW)


def build(crm):
    deal = lambda **kw: crm.deal(pipeline="sf", created=ts(2026, 1, 2), **kw)  # noqa: E731
    deal(stage="prospecting", amount=10_000.0, expected_close=D(2026, 4, 10), owner="ann")
    deal(stage="proposal", amount=20_000.0, expected_close=D(2026, 4, 20), owner="bob")
    deal(stage="negotiation", amount=5_000.0, expected_close=D(2026, 5, 3), owner="ann")
    deal(stage="needs_analysis", amount=12_000.0, expected_close=D(2026, 5, 30), owner="bob")
    # won in March: in "proposal" on March 1st (moved there on Feb 15) -> forecast at start 8k × 0.75
    won = deal(stage="won", status="won", amount=8_000.0, expected_close=D(2026, 3, 10), closed=ts(2026, 3, 5), owner="ann")
    crm.event(None, "deal_stage_changed", ts(2026, 2, 15), {"deal_id": won, "from": "prospecting", "to": "proposal"}, deal_id=won)
    crm.event(None, "deal_stage_changed", ts(2026, 3, 5), {"deal_id": won, "from": "proposal", "to": "won"}, deal_id=won)
    # lost in March: still prospecting on March 1st -> 4k × 0.1 in the forecast made then
    lost = deal(stage="lost", status="lost", amount=4_000.0, expected_close=D(2026, 3, 20), closed=ts(2026, 3, 10), owner="bob")
    crm.event(None, "deal_stage_changed", ts(2026, 3, 10), {"deal_id": lost, "from": "prospecting", "to": "lost"}, deal_id=lost)
    # won in March without any stage history: its stage on March 1st is unknown -> left out, with a note
    deal(stage="won", status="won", amount=900.0, expected_close=D(2026, 3, 12), closed=ts(2026, 3, 12))
    # overdue: expected in February, still open
    deal(stage="prospecting", amount=1_000.0, expected_close=D(2026, 2, 10), owner="ann")
    # left out, each with a note
    deal(stage="proposal", amount=None, expected_close=D(2026, 4, 1))
    deal(stage="mystery", amount=3_000.0, expected_close=D(2026, 4, 1))
    deal(stage="proposal", amount=7_000.0, expected_close=None)
    crm.deal(ws="other", pipeline="sf", stage="proposal", amount=50_000.0, expected_close=D(2026, 4, 10), created=ts(2026, 1, 2))


def cells(table, group="all"):
    return {c["month"]: c for c in table.data["cells"] if c["group"] == group}


def test_weighted_forecast_and_won_vs_forecast(fcrm):
    build(fcrm)
    table = forecast.run(fcrm, "default", {})
    m = cells(table)
    assert m["2026-04"]["weighted"] == pytest.approx(1_000 + 15_000)
    assert m["2026-05"]["weighted"] == pytest.approx(4_500 + 2_400)
    assert m["2026-04"]["weighted"] + m["2026-05"]["weighted"] == pytest.approx(22_900)
    assert m["2026-04"]["open_amount"] == pytest.approx(30_000)
    assert m["2026-03"]["won"] == pytest.approx(8_900)
    assert m["2026-03"]["forecast_at_start"] == pytest.approx(6_000 + 400)
    assert m["2026-03"]["won_vs_forecast"] == pytest.approx(8_900 / 6_400)
    assert m["2026-02"]["weighted"] == pytest.approx(100)  # overdue
    assert m["2026-02"]["forecast_at_start"] == pytest.approx(100)
    assert m["2026-04"]["forecast_at_start"] is None  # April has not begun
    assert table.data["weighted_total"] == pytest.approx(23_000)
    notes = " | ".join(table.notes)
    assert "100.00 of the weighted pipeline is overdue" in notes
    assert "1 open deal(s) without an amount" in notes
    assert "sf/mystery" in notes
    assert "without an expected close date (7,000.00)" in notes
    assert "1 closed deal(s) without deal_stage_changed history" in notes


def test_by_owner_and_workspace(fcrm):
    build(fcrm)
    table = forecast.run(fcrm, "default", {"by": ["owner"]})
    assert cells(table, "ann")["2026-04"]["weighted"] == pytest.approx(1_000)
    assert cells(table, "bob")["2026-05"]["weighted"] == pytest.approx(2_400)
    assert cells(table, "ann")["2026-03"]["forecast_at_start"] == pytest.approx(6_000)
    assert cells(table, "ann")["2026-03"]["won"] == pytest.approx(8_000)
    other = forecast.run(fcrm, "other", {})
    assert other.data["weighted_total"] == pytest.approx(37_500)


def test_window_and_empty(fcrm, tmp_path):
    table = forecast.run(fcrm, "default", {})
    assert table.rows == [] and any("no open or won deals" in n for n in table.notes)
    forecast.chart(table, tmp_path / "empty.svg")
    assert svg_root(tmp_path / "empty.svg").find("s:text[@class='note']", NS) is not None
    build(fcrm)
    table = forecast.run(fcrm, "default", {"date_from": D(2026, 4, 1), "date_to": D(2026, 4, 30)})
    assert table.data["months"] == ["2026-04"]
    assert any("outside the window" in n for n in table.notes)
    forecast.chart(table, tmp_path / "f.svg")
    bars = svg_root(tmp_path / "f.svg").findall("s:rect[@class='bar']", NS)
    got = {(b.get("data-category"), b.get("data-series")): float(b.get("data-value")) for b in bars}
    assert got[("2026-04", "weighted open")] == pytest.approx(16_000)
