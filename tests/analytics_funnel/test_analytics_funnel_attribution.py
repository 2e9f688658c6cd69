"""Attribution: $1,000 won with touches on days 0, 10, 20 and 27 before a sale on day 28."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from af_helpers import NS, day, svg_root
from af_helpers import crm, make_report_crm  # noqa: F401  (fixtures)
from corecrm_plugins.analytics_funnel import attribution
from corecrm_plugins.analytics_funnel.settings import MODELS


def build_worked_example(crm, *, ws="default"):
    lead = crm.lead(ws=ws, created=day(0), campaign="A", source="search")
    crm.event(lead, "form_submitted", day(10), {"campaign": "B", "source": "social"}, ws=ws)
    crm.event(lead, "email_clicked", day(20), {"campaign": "C", "source": "email"}, ws=ws)
    crm.event(lead, "page_visited", day(27), {"campaign": "D", "source": "email"}, ws=ws)
    crm.event(lead, "scored", day(21), {"score": 10}, ws=ws)  # not a touchpoint
    crm.event(lead, "page_visited", day(29), {"campaign": "late"}, ws=ws)  # after the sale: ignored
    crm.deal(ws=ws, lead_id=lead, amount=1000.0, status="won", stage="won", closed=day(28))
    return lead


# the shares worked out by hand: w_i = 2^(-Δ/7) for Δ = 28, 18, 8, 1 days
DECAY = {"A": 39.3247, "B": 105.8555, "C": 284.9400, "D": 569.8799}


def test_worked_example_each_model(crm):
    build_worked_example(crm)
    table = attribution.run(crm, "default", {"date_from": dt.date(2026, 1, 1), "date_to": dt.date(2026, 2, 28)})
    cr = table.data["credits"]
    assert cr["first_touch"] == {"A": 1000.0, "B": 0.0, "C": 0.0, "D": 0.0}
    assert cr["last_touch"] == {"A": 0.0, "B": 0.0, "C": 0.0, "D": 1000.0}
    assert cr["linear"] == pytest.approx({"A": 250.0, "B": 250.0, "C": 250.0, "D": 250.0})
    assert cr["position_based"] == pytest.approx({"A": 400.0, "B": 100.0, "C": 100.0, "D": 400.0})
    assert cr["time_decay"] == pytest.approx(DECAY, abs=1e-3)
    for m in MODELS:
        assert sum(cr[m].values()) == pytest.approx(1000.0)
    assert table.rows[-1] == ["(total)", 1000.0, 1000.0, 1000.0, 1000.0, 1000.0]
    assert table.columns == ["campaign", "first touch", "last touch", "linear", "time decay", "position based"]


def test_by_source_sums_touches_of_the_same_source(crm):
    build_worked_example(crm)
    cr = attribution.run(crm, "default", {"by": "source"}).data["credits"]
    assert cr["linear"] == pytest.approx({"search": 250.0, "social": 250.0, "email": 500.0})
    assert cr["time_decay"]["email"] == pytest.approx(DECAY["C"] + DECAY["D"], abs=1e-3)


def test_half_life_parameter(crm):
    build_worked_example(crm)
    cr = attribution.run(crm, "default", {"half_life": 14}).data["credits"]["time_decay"]
    w = [2 ** (-d / 14) for d in (28, 18, 8, 1)]
    assert cr["A"] == pytest.approx(1000 * w[0] / sum(w))


@pytest.mark.parametrize("n,expected", [(1, [1.0]), (2, [0.5, 0.5]), (3, [0.4, 0.2, 0.4]), (5, [0.4, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.4])])
def test_position_based_small_paths(n, expected):
    times = [day(i) for i in range(n)]
    assert attribution.weights("position_based", times, day(n)) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.floats(min_value=0, max_value=200, allow_nan=False), min_size=1, max_size=12),
    amount=st.floats(min_value=0.01, max_value=1e7, allow_nan=False),
    half_life=st.floats(min_value=0.1, max_value=60),
)
def test_credits_always_sum_to_the_amount(offsets, amount, half_life):
    touches = [(day(o), f"k{i % 3}") for i, o in enumerate(offsets)]
    conv = day(max(offsets) + 0.5)
    for model, per in attribution.attribute(amount, touches, conv, half_life_days=half_life).items():
        assert sum(per.values()) == pytest.approx(amount, rel=1e-9), model
        assert all(v >= 0 for v in per.values())


def test_deals_without_amount_or_lead_and_workspaces(crm):
    build_worked_example(crm)
    build_worked_example(crm, ws="other")
    crm.deal(lead_id=None, amount=None, status="won", stage="won", closed=day(28))
    crm.deal(lead_id=None, amount=300.0, status="won", stage="won", closed=day(28))
    crm.deal(amount=999.0, status="lost", stage="lost", closed=day(28))
    crm.deal(amount=999.0, status="open")
    table = attribution.run(crm, "default", {})
    assert table.data["deals"] == 2
    assert table.data["revenue"] == pytest.approx(1300.0)
    assert table.data["deals_without_amount"] == 1
    assert table.data["credits"]["linear"]["(unattributed)"] == pytest.approx(300.0)
    assert any("without an amount" in n for n in table.notes)
    assert any("no lead" in n for n in table.notes)
    other = attribution.run(crm, "other", {})
    assert other.data["revenue"] == pytest.approx(1000.0)


def test_lead_through_customer_and_lookback(crm):
    lead = crm.lead(created=day(0), campaign="old")
    crm.event(lead, "form_submitted", day(95), {"campaign": "fresh"})
    cust = crm.customer(lead_id=lead)
    crm.deal(customer_id=cust, amount=100.0, status="won", stage="won", closed=day(100))
    cr = attribution.run(crm, "default", {}).data["credits"]
    # the capture always counts, however old; both touches share linear credit
    assert cr["linear"] == pytest.approx({"old": 50.0, "fresh": 50.0})
    crm.event(lead, "email_clicked", day(5), {"campaign": "too-old"})  # 95 days before the sale > lookback 90
    cr = attribution.run(crm, "default", {}).data["credits"]
    assert "too-old" not in cr["linear"]


def test_empty_and_chart(crm, tmp_path):
    table = attribution.run(crm, "default", {})
    assert table.rows == [] and any("no won deals" in n for n in table.notes)
    attribution.chart(table, tmp_path / "empty.svg")
    assert svg_root(tmp_path / "empty.svg").find("s:text[@class='note']", NS) is not None
    build_worked_example(crm)
    table = attribution.run(crm, "default", {})
    attribution.chart(table, tmp_path / "attr.svg")
    bars = svg_root(tmp_path / "attr.svg").findall("s:rect[@class='bar']", NS)
    assert len(bars) == 4 * 5
    got = {(b.get("data-category"), b.get("data-series")): float(b.get("data-value")) for b in bars}
    assert got[("A", "first touch")] == 1000.0
    assert got[("D", "position based")] == pytest.approx(400.0)
    legend = [t.text for t in svg_root(tmp_path / "attr.svg").findall("s:text[@class='legend']", NS)]
    assert legend == ["first touch", "last touch", "linear", "time decay", "position based"]
