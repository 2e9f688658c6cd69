"""End to end through the core: intake pipeline, observers, explain, CLI commands and config check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from routing_geo_helpers import DATA, retailer_settings

from corecrm.cli import main
from corecrm.models import Lead
from corecrm_plugins.routing_geo import store


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("CORECRM_CONFIG", "CORECRM_WORKSPACE", "CORECRM_DATABASE", "CORECRM_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORECRM_NOW", "2026-11-23T10:00:00+00:00")
    text = (DATA / "retailer.toml").read_text()
    (tmp_path / "corecrm.toml").write_text('[plugins]\nenabled = ["capture_json", "routing_geo"]\n\n' + text)
    return tmp_path


def write_leads(home: Path, docs: list[dict]) -> None:
    (home / "leads.ndjson").write_text("".join(json.dumps(d) + "\n" for d in docs))


def test_hook_crm_route_leads_through_the_intake_pipeline(make_crm, clock):
    crm = make_crm({"plugins": {"enabled": ["capture_json", "routing_geo"], "routing_geo": retailer_settings()}})
    res = crm.intake([Lead(country="UK", interests=["shoes"], email=f"p{i}@x.test", origin_key=f"k{i}") for i in range(6)]
                     + [Lead(country="FR", origin_key="fr"), Lead(country="JP", origin_key="jp")])
    ids = res.lead_ids
    leads = [crm.lead(i) for i in ids]
    owners = [x.owner for x in leads[:6]]
    assert sorted(owners) == ["alice", "alice", "bob", "bob", "carol", "carol"]
    assert all(x.team == "uk_fashion" and x.assigned_at is not None for x in leads[:6])
    assert (leads[6].owner, leads[6].team) == (None, "france")
    assert (leads[7].owner, leads[7].team) == (None, "unrouted")
    hist = [e for e in crm.history(ids[0]) if e.type == "assigned"]
    assert hist and hist[0].detail["rule"] == "uk-shoes" and hist[0].detail["explanation"]["strategy"] == "round_robin"


def test_hook_crm_leads_assigned_advances_rotation_and_starts_sla_clocks(make_crm, clock):
    crm = make_crm({"plugins": {"enabled": ["capture_json", "routing_geo"], "routing_geo": retailer_settings()}})
    crm.intake([Lead(country="GB", interests=["shoes"], origin_key="a"), Lead(country="FR", origin_key="b")])
    crm.intake([Lead(country="GB", interests=["shoes"], origin_key=f"c{i}") for i in range(2)])
    with crm.engine.connect() as conn:
        passes, clocks = store.load_rotation(conn, "default")
        slas = conn.execute(sa.select(store.sla.c.lead_id, store.sla.c.sla_minutes, store.sla.c.rule)).all()
    assert sorted(passes.values()) == [1.0, 1.0, 1.0]  # three leads over three members, across two batches
    assert sorted((m, r) for _, m, r in slas) == [(15.0, "uk-shoes")] * 3


def test_hook_crm_config_warnings_reports_shadowed_rules_and_errors(home):
    with (home / "corecrm.toml").open("a") as fh:
        fh.write('\n[[plugins.routing_geo.rules]]\nname = "german-shoes"\ncountry = ["DE"]\ninterests = ["shoes"]\nteam = "dach"\n')
    r = CliRunner().invoke(main, ["config", "check"])
    assert r.exit_code == 0, r.output
    assert "rules[4]: rule 'german-shoes' is shadowed by earlier rule 'dach'" in r.output
    text = (home / "corecrm.toml").read_text().replace('country = ["DE", "Austria", "CH"]', 'country = ["DE", "Atlantis"]')
    (home / "corecrm.toml").write_text(text)
    r = CliRunner().invoke(main, ["config", "check"])
    assert r.exit_code == 1
    assert "plugins.routing_geo.rules[2].country[1]: unknown country 'Atlantis'" in r.output
    text = text.replace('country = ["DE", "Atlantis"]', 'country = ["DE"]').replace('team = "france"\n', 'team = "frankreich"\n', 1)
    (home / "corecrm.toml").write_text(text)
    r = CliRunner().invoke(main, ["config", "check"])
    assert r.exit_code == 1 and "unknown team 'frankreich'" in r.output


def test_cli_claim_sweep_simulate_report_and_explain(home, monkeypatch):
    write_leads(home, [{"email": "a@x.test", "country": "United Kingdom", "interests": ["shoes"]},
                       {"email": "b@x.test", "country": "FR"}, {"email": "c@x.test", "country": "AT"}])
    r = run("capture", "leads.ndjson", "--json")
    assert r.exit_code == 0, r.output
    [uk, fr, at] = json.loads(r.output)[0]["lead_ids"]
    out = run("explain", str(uk)).output
    assert "by rule 'uk-shoes'" in out and "candidate alice" in out and "round robin" in out
    r = run("leads", "claim", "--as", "manon", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["lead_id"] == fr
    r = run("leads", "claim", "--as", "manon")
    assert r.exit_code == 3 and "nothing to claim" in r.output
    r = run("leads", "claim", "--as", "alice", "--team", "france")
    assert r.exit_code == 1 and "alice is not a member of 'france'" in r.output
    before = run("leads", "show", str(uk), "--json").output
    owner = json.loads(before)["owner"]
    r = run("routing", "sweep", "--now", "2026-11-23T10:20:00Z", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["breached"] == 1 and res["reassigned"] == 1
    after = json.loads(run("leads", "show", str(uk), "--json").output)
    assert after["owner"] not in (owner, None)
    assert "sla_breached" in run("explain", str(uk)).output
    (home / "new.toml").write_text('[[rules]]\nname = "all-europe"\ncountry = ["GB", "FR", "AT", "DE"]\nteam = "dach"\n')
    db = home / "corecrm.db"
    size = db.stat().st_size
    r = run("routing", "simulate", "--rules", "new.toml", "--json")
    assert r.exit_code == 0, r.output
    sim = json.loads(r.output)
    assert (sim["leads"], sim["changed"], sim["moved"]) == (3, 3, 2)  # GB and FR move to dach; AT only changes rule
    assert db.stat().st_size == size
    r = run("routing", "simulate", "--rules", "new.toml")
    assert "Nothing was changed" in r.output and "all-europe" in r.output
    (home / "bad.toml").write_text('[[rules]]\nname = "x"\ncountry = ["ZZ"]\nteam = "dach"\n')
    r = run("routing", "simulate", "--rules", "bad.toml")
    assert r.exit_code == 1 and "bad.toml: rules[0].country[0]: unknown country 'ZZ'" in r.output
    r = run("report", "routing", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["rows"][-1][0] == "ALL" and rep["breaches"] == 1 and rep["time_to_assign"]["n"] == 3
    r = run("report", "routing", "--by", "team")
    assert r.exit_code == 0 and "uk_fashion" in r.output


def test_cli_members_teams_and_database_overlay(home):
    assert run("routing", "check").output.startswith("ok: 4 rule(s), 4 team(s), 1 queue(s), 6 member(s)")
    r = run("routing", "member", "add", "zoe", "--name", "Zoe", "--team", "uk_fashion", "--max-open", "3", "--hours", "mon-fri 08:00-16:00", "--timezone", "Europe/London")
    assert r.exit_code == 0, r.output
    r = run("routing", "member", "set", "alice", "--inactive")
    assert r.exit_code == 0, r.output
    r = run("routing", "member", "away", "bob", "--from", "2026-11-20", "--to", "2026-11-30", "--note", "holiday")
    assert r.exit_code == 0, r.output
    members = {m["member"]: m for m in json.loads(run("routing", "members", "--json").output)}
    assert members["alice"]["status"] == "inactive"
    assert members["bob"]["status"].startswith("away until 2026-12-01")
    assert members["zoe"]["teams"] == "uk_fashion" and members["zoe"]["status"] == "available"
    write_leads(home, [{"email": f"{i}@x.test", "country": "GB", "interests": ["boots"]} for i in range(4)])
    ids = json.loads(run("capture", "leads.ndjson", "--json").output)[0]["lead_ids"]
    owners = [json.loads(run("leads", "show", str(i), "--json").output)["owner"] for i in ids]
    assert sorted(owners) == ["carol", "carol", "zoe", "zoe"]
    r = run("routing", "member", "add", "zoe")
    assert r.exit_code == 1 and "already exists" in r.output
    r = run("routing", "member", "set", "zoe", "--timezone", "Mars/Olympus")
    assert r.exit_code == 1 and "unknown time zone 'Mars/Olympus'" in r.output
    r = run("routing", "member", "remove", "alice")
    assert r.exit_code == 1 and "--inactive" in r.output
    r = run("routing", "team", "add", "web", "--member", "zoe", "--strategy", "least_loaded")
    assert r.exit_code == 0, r.output
    teams = {t["name"]: t for t in json.loads(run("routing", "teams", "--json").output)}
    assert teams["web"]["strategy"] == "least_loaded" and teams["web"]["members"] == "zoe"
