"""Every report's chart, drawn from the sample dataset, is a valid SVG with its marks."""

from __future__ import annotations

from af_helpers import NS, svg_root
from af_helpers import crm, make_report_crm  # noqa: F401  (fixtures)
from corecrm_plugins.analytics_funnel import sample

EXPECTED_MARKS = {
    "funnel": "s:rect[@class='stage']",
    "attribution": "s:rect[@class='bar']",
    "campaign_economics": "s:rect[@class='bar']",
    "forecast": "s:rect[@class='bar']",
    "retention": "s:polyline[@class='line']",
    "speed_to_lead": "s:rect[@class='bar']",
}


def test_sample_renders_every_chart(make_report_crm, tmp_path):
    crm = make_report_crm(now=sample.NOW)
    sample.build_sample(crm)
    paths = sample.render_all(crm, tmp_path)
    assert set(paths) == set(EXPECTED_MARKS)
    for name, path in paths.items():
        root = svg_root(path)
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
        assert root.find("s:title", NS).text, name
        marks = root.findall(EXPECTED_MARKS[name], NS)
        assert marks, f"{name}: no {EXPECTED_MARKS[name]}"
        assert root.find("s:text[@class='note']", NS) is None, f"{name}: drawn as empty"
