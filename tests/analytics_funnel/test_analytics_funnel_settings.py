"""Settings: deep validation names the key; workspace overrides reach the reports."""

from __future__ import annotations

import pytest

from af_helpers import ReportCrm, day
from af_helpers import crm, make_report_crm  # noqa: F401  (fixtures)
from corecrm.errors import ConfigError
from corecrm_plugins.analytics_funnel import attribution


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"position_weights": [0.4, 0.1, 0.4]}, r"plugins.analytics_funnel.position_weights: the three weights must sum to 1"),
        ({"position_weights": [0.4, "x", 0.6]}, r"plugins.analytics_funnel.position_weights\[1\]: expected a non-negative number"),
        ({"funnel_stages": ["mql", "lead"]}, r"plugins.analytics_funnel.funnel_stages\[1\]: stages must follow the lifecycle order"),
        ({"funnel_stages": ["lead", "won"]}, r"plugins.analytics_funnel.funnel_stages\[1\]: not a main-line stage"),
        ({"half_life_days": 0}, r"plugins.analytics_funnel.half_life_days: expected a positive number"),
        ({"percentiles": [0.5, 1.5]}, r"plugins.analytics_funnel.percentiles\[1\]: expected a number between 0 and 1"),
        ({"economics_model": "magic"}, r"plugins.analytics_funnel.economics_model: expected one of"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        ReportCrm.build(f"sqlite:///{tmp_path / 'c.db'}", {"plugins": {"enabled": ["analytics_funnel"], "analytics_funnel": settings}})


def test_workspace_override_reaches_the_report(make_report_crm):
    crm = make_report_crm(config={"workspaces": {"slow": {"plugins": {"analytics_funnel": {"half_life_days": 14.0}}}}})
    for ws in ("default", "slow"):
        lead = crm.lead(ws=ws, created=day(0), campaign="A")
        crm.event(lead, "form_submitted", day(27), {"campaign": "B"}, ws=ws)
        crm.deal(ws=ws, lead_id=lead, amount=100.0, status="won", stage="won", closed=day(28))
    fast = attribution.run(crm, "default", {}).data
    slow = attribution.run(crm, "slow", {}).data
    assert fast["half_life_days"] == 7.0 and slow["half_life_days"] == 14.0
    w7, w14 = [2 ** (-28 / 7), 2 ** (-1 / 7)], [2 ** (-28 / 14), 2 ** (-1 / 14)]
    assert fast["credits"]["time_decay"]["A"] == pytest.approx(100 * w7[0] / sum(w7))
    assert slow["credits"]["time_decay"]["A"] == pytest.approx(100 * w14[0] / sum(w14))
