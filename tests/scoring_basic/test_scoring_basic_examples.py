"""The documented examples load, validate and score as the docs say."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import pytest
from sb_helpers import NOW, ctx, ev, lead

import corecrm_plugins.scoring_basic as sb
from corecrm.config import Config
from corecrm.plugins import PluginManager

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "scoring_basic"
DOC = ROOT / "docs" / "plugins" / "scoring_basic.md"


def manager(path: Path) -> PluginManager:
    data = tomllib.loads(path.read_text())
    return PluginManager(Config.from_dict(data, path=path)).load()  # both plugins through their entry points


def test_saas_example():
    pm = manager(DATA / "saas.toml")
    s = pm.settings("scoring_basic", "default")
    leads = [
        lead(id=1, title="VP Engineering", email="vp@acme.example", country="SE", attributes={"employees": 300}),
        lead(id=2, title="Student", email="s@gmail.com"),
    ]
    c = ctx({1: [ev("demo_booked", 2), ev("page_visited", 1, url="https://x.example/pricing"), ev("email_opened", 30)] + [ev("email_opened", 1)] * 10})
    out = sb.crm_score_leads(leads, c, s)
    by = {}
    for rec in out:
        by.setdefault(rec.index, {})[rec.rule] = rec.points
    # fit 20+10+10+5 = 45, capped at 50: no cap; engagement 25 + 9 (pricing decayed) + 3*10 + 1.5 -> capped at 40
    assert by[0]["decision_maker"] == 20 and by[0]["cap:engagement"] < 0
    assert sum(by[0].values()) == 85
    assert by[1] == {"free_mail": -10, "student": -15}
    q = sb.crm_qualify_leads(leads, [85.0, -25.0], c, s)
    assert [(x.grade, x.stage) for x in q] == [("A", "sql"), ("D", None)]


def test_dealer_example_is_a_workspace_override():
    pm = manager(DATA / "dealer.toml")
    assert pm.settings("scoring_basic", "default")["rules"] == []  # the vendor's own workspace is untouched
    s = pm.settings("scoring_basic", "dealer")
    buyer = lead(
        id=1,
        phone="+49 89 123",
        email="max@example.de",
        region="DE-BY",
        source="AutoScout24-DE",
        campaign="spring-ev-2026",
        interests=["EV"],
        created_at=NOW - dt.timedelta(days=1),
        attributes={"purchase_timeframe": "0-3 months", "trade_in": True, "budget": "42000", "vehicle": {"model": "ID.4 Pro"}},
    )
    rival = lead(id=2, email="spy@autohaus-rival.example", created_at=NOW - dt.timedelta(days=30))
    c = ctx({1: [ev("test_drive_booked", 0), ev("activity", 2, type="meeting"), ev("activity", 1, type="call")]})
    out = sb.crm_score_leads([buyer, rival], c, s)
    rules0 = {r.rule: r.points for r in out if r.index == 0}
    assert set(rules0) >= {"buys_soon", "trade_in", "budget_fits", "electric_models", "stocked_model", "catchment", "marketplace", "spring_ev_campaign", "fresh_enquiry", "reachable", "test_drive", "showroom_visit"}
    assert rules0["test_drive"] == 30 and rules0["showroom_visit"] == 19 and "cap:intent" not in rules0  # 49 <= 50
    total = sum(rules0.values())
    assert total == 100  # capped at max_score
    assert {r.rule: r.points for r in out if r.index == 1} == {"no_contact_data": -5, "competitor": -50}
    q = sb.crm_qualify_leads([buyer, rival], [100.0, -55.0], c, s)
    assert [(x.grade, x.stage) for x in q] == [("HOT", "sql"), ("COLD", None)]


def test_every_toml_block_in_the_docs_is_a_valid_configuration():
    text = DOC.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        data = tomllib.loads(block)
        if "plugins" not in data and "workspaces" not in data:
            data = {"plugins": {"scoring_basic": data}}  # a fragment of the plugin's table
        PluginManager(Config.from_dict(data)).load(entry_points=False).register(sb, "scoring_basic", bundled=True)


@pytest.mark.parametrize("name, marker", [("saas.toml", "[plugins.scoring_basic]"), ("dealer.toml", "[workspaces.dealer.plugins.scoring_basic]")])
def test_examples_are_in_the_docs(name, marker):
    text = (DATA / name).read_text()
    assert text[text.index(marker):].strip() in DOC.read_text()
