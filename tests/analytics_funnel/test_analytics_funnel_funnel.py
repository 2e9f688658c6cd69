"""Funnel report on a hand-built history whose answers are worked out below."""

from __future__ import annotations

import pytest

from af_helpers import day, svg_root, NS
from af_helpers import crm, make_report_crm  # noqa: F401  (fixtures)
from corecrm_plugins.analytics_funnel import funnel
from corecrm_plugins.analytics_funnel.common import ReportError

JAN = {"date_from": "2026-01-01", "date_to": "2026-01-31"}


def build(crm):
    # source web: five leads
    crm.lead(source="web", campaign="spring", team="a", stages=(("mql", day(1)), ("sql", day(3)), ("opportunity", day(6)), ("customer", day(10))))
    crm.lead(source="web", campaign="spring", team="a", stages=(("mql", day(2)), ("sql", day(4))))
    crm.lead(source="web", campaign="spring", team="b", stages=(("sql", day(2)),))  # skipped mql: still passed it
    crm.lead(source="web", campaign="autumn", team="b", stages=(("mql", day(1)), ("nurturing", day(5))))  # reached mql, then fell back
    crm.lead(source="web", campaign="autumn", team="b", stages=(("disqualified", day(1)),))
    # source ads: five leads, one reaches mql (its stay has not ended)
    crm.lead(source="ads", stages=(("mql", day(4)),))
    for _ in range(4):
        crm.lead(source="ads")
    # noise the report must ignore
    crm.lead(ws="other", source="web", stages=(("mql", day(1)), ("sql", day(2))))
    crm.lead(source="web", created=day(40), stages=(("mql", day(41)),))  # captured in February


def stages(data):
    return {r["stage"]: r for r in data["stages"]}


def test_counts_rates_and_medians(crm):
    build(crm)
    table = funnel.run(crm, "default", JAN)
    total = stages(table.data["total"])
    assert table.data["total"]["captured"] == 10
    assert [total[s]["reached"] for s in ("lead", "mql", "sql", "opportunity", "customer")] == [10, 5, 3, 1, 1]
    assert total["lead"]["step_rate"] == 1.0
    assert total["mql"]["step_rate"] == pytest.approx(0.5)
    assert total["sql"]["step_rate"] == pytest.approx(0.6)
    assert total["opportunity"]["step_rate"] == pytest.approx(1 / 3)
    assert total["customer"]["step_rate"] == pytest.approx(1.0)
    assert total["customer"]["overall_rate"] == pytest.approx(0.1)
    # completed stays: lead [1, 2, 2, 1, 1, 4] -> 1.5; mql [2, 2, 4] -> 2; sql [3] -> 3; opportunity [4] -> 4
    assert total["lead"]["median_days"] == pytest.approx(1.5)
    assert total["mql"]["median_days"] == pytest.approx(2.0)
    assert total["sql"]["median_days"] == pytest.approx(3.0)
    assert total["opportunity"]["median_days"] == pytest.approx(4.0)
    assert total["customer"]["median_days"] is None  # nobody left the customer stage
    assert table.rows[0][:3] == ["all", "lead", 10]


def test_by_source(crm):
    build(crm)
    table = funnel.run(crm, "default", {**JAN, "by": "source"})
    web = stages(table.data["groups"]["web"])
    ads = stages(table.data["groups"]["ads"])
    assert [web[s]["reached"] for s in ("lead", "mql", "sql", "opportunity", "customer")] == [5, 4, 3, 1, 1]
    assert [ads[s]["reached"] for s in ("lead", "mql", "sql", "opportunity", "customer")] == [5, 1, 0, 0, 0]
    assert ads["sql"]["step_rate"] == 0.0
    assert ads["opportunity"]["step_rate"] is None  # 0 of 0: no rate, no ZeroDivisionError
    assert web["mql"]["median_days"] == pytest.approx(2.0)
    assert ads["lead"]["median_days"] == pytest.approx(4.0)
    assert any(r[0] == "(total)" for r in table.rows)


@pytest.mark.parametrize("by,expected", [("campaign", {"spring": 3, "autumn": 2, "(none)": 5}), ("team", {"a": 2, "b": 3, "(none)": 5})])
def test_other_dimensions(crm, by, expected):
    build(crm)
    table = funnel.run(crm, "default", {**JAN, "by": by})
    assert {k: g["captured"] for k, g in table.data["groups"].items()} == expected


def test_cohort_by_capture_month(crm):
    build(crm)
    table = funnel.run(crm, "default", {"by": "month"})
    groups = table.data["groups"]
    assert set(groups) == {"2026-01", "2026-02"}
    assert groups["2026-01"]["captured"] == 10
    assert stages(groups["2026-02"])["mql"]["reached"] == 1


def test_workspaces_are_respected(crm):
    build(crm)
    other = funnel.run(crm, "other", JAN)
    assert other.data["total"]["captured"] == 1
    assert stages(other.data["total"])["sql"]["reached"] == 1
    both = funnel.run(crm, ["default", "other"], {**JAN, "by": "workspace"})
    assert {k: g["captured"] for k, g in both.data["groups"].items()} == {"default": 10, "other": 1}


def test_empty_database_and_empty_period(crm):
    table = funnel.run(crm, "default", {})
    assert table.data["total"]["captured"] == 0
    assert all(r["step_rate"] is None for r in table.data["total"]["stages"])
    assert any("no leads" in n for n in table.notes)
    build(crm)
    empty = funnel.run(crm, "default", {"from": "2030-01-01", "to": "2030-01-31"})
    assert empty.data["total"]["captured"] == 0
    assert any("no leads were captured in this period" in n for n in empty.notes)


def test_bad_parameters_name_the_option(crm):
    with pytest.raises(ReportError, match="--by"):
        funnel.run(crm, "default", {"by": "colour"})
    with pytest.raises(ReportError, match="one dimension at a time"):
        funnel.run(crm, "default", {"by": ["source", "team"]})
    with pytest.raises(ReportError, match="--from"):
        funnel.run(crm, "default", {"from": "yesterday"})
    with pytest.raises(ReportError, match="--to"):
        funnel.run(crm, "default", {"from": "2026-02-01", "to": "2026-01-15"})


def test_chart_is_a_funnel_svg(crm, tmp_path):
    build(crm)
    table = funnel.run(crm, "default", JAN)
    out = tmp_path / "funnel.svg"
    funnel.chart(table, out)
    root = svg_root(out)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    bars = root.findall("s:rect[@class='stage']", NS)
    assert [(b.get("data-stage"), int(b.get("data-value"))) for b in bars] == [("lead", 10), ("mql", 5), ("sql", 3), ("opportunity", 1), ("customer", 1)]
    widths = [float(b.get("width")) for b in bars]
    assert widths == sorted(widths, reverse=True)
    assert root.find("s:title", NS).text == "Funnel"
    # empty data still gives a valid picture with a note
    funnel.chart(funnel.run(crm, "nobody", {}), tmp_path / "empty.svg")
    assert svg_root(tmp_path / "empty.svg").find("s:text[@class='note']", NS) is not None
