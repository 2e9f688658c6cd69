"""End to end through the real core: intake scoring, explain, leads show --json, the score commands, the report, config check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sb_helpers import table_dump

from corecrm.app import Crm
from corecrm.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "scoring_basic"
NOW = "2026-06-01T12:00:00+00:00"


@pytest.fixture
def home(tmp_path, monkeypatch):
    shutil.copy(DATA / "saas.toml", tmp_path / "corecrm.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CORECRM_CONFIG", str(tmp_path / "corecrm.toml"))
    monkeypatch.setenv("CORECRM_NOW", NOW)
    monkeypatch.delenv("CORECRM_WORKSPACE", raising=False)
    monkeypatch.delenv("CORECRM_DATABASE", raising=False)
    return tmp_path


def cli(*args: str, ok: bool = True):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def test_intake_scores_grades_and_qualifies_and_explains(home):
    shutil.copy(DATA / "saas_leads.json", home / "leads.json")
    cli("capture", "leads.json")
    shown = json.loads(cli("leads", "show", "1", "--json").output)
    assert shown["score"] == 45 and shown["grade"] == "B" and shown["stage"] == "mql"
    contribs = shown["score_detail"]["contributions"]
    assert {c["rule"] for c in contribs} == {"decision_maker", "company_domain", "target_size", "target_country"}
    assert all(c["plugin"] == "scoring_basic" for c in contribs)
    assert sum(c["points"] for c in contribs) == shown["score"]
    assert shown["score_detail"]["rulesets"]["scoring_basic"].startswith("sb1-")
    out = cli("explain", "1").output
    assert "decision_maker" in out and "why this score" in out
    # a free-mail student: negative points, grade D, stays a lead
    student = json.loads(cli("leads", "show", "2", "--json").output)
    assert student["score"] < 0 and student["grade"] == "D" and student["stage"] == "lead"


def test_recompute_diff_and_report_commands(home):
    shutil.copy(DATA / "saas_leads.json", home / "leads.json")
    cli("capture", "leads.json")
    crm = Crm.open(home / "corecrm.toml")
    try:
        for _ in range(3):
            crm.record_event(1, "email_opened", {"campaign": "spring"}, plugin="test")
        crm.record_event(1, "demo_booked", {}, plugin="test")
        crm.record_event(3, "page_visited", {"url": "https://example.com/pricing"}, plugin="test")
    finally:
        crm.close()
    out = cli("score", "recompute").output
    assert "default: 3 leads rescored" in out and "2 scores changed" in out
    lead1 = json.loads(cli("leads", "show", "1", "--json").output)
    assert lead1["score"] == 45 + 9 + 25 and lead1["grade"] == "A" and lead1["stage"] == "sql"
    types = [e["type"] for e in lead1["events"]]
    assert "scored" in types and "graded" in types and types.count("stage_changed") >= 2
    scored = [e for e in lead1["events"] if e["type"] == "scored"][-1]
    assert scored["detail"]["previous"] == 45 and scored["detail"]["score"] == 79
    assert {(c["rule"], c["from"], c["to"]) for c in scored["detail"]["changes"]} == {("email_opens", None, 9.0), ("demo_booked", None, 25.0)}
    assert "score 45 -> 79" in cli("explain", "1").output
    again = json.loads(cli("score", "recompute", "--json").output)
    assert again[0]["score_changed"] == 0 and again[0]["rows_written"] == 0

    from corecrm.config import Config
    from corecrm.storage.db import make_engine

    engine = make_engine(Config.load(home / "corecrm.toml").database_url)
    before = table_dump(engine)
    shutil.copy(DATA / "saas_new_rules.toml", home / "new.toml")
    out = cli("score", "diff", "--rules", "new.toml").output
    assert "dry run: nothing written" in out and "3 leads compared" in out
    res = json.loads(cli("score", "diff", "--rules", "new.toml", "--json").output)
    assert res["grade_changed"] >= 1 and res["examples"]
    assert table_dump(engine) == before
    engine.dispose()

    bad = home / "bad.toml"
    bad.write_text('[[rules]]\nname = "x"\nop = "near"\npoints = 1\n')
    res = cli("score", "diff", "--rules", str(bad), ok=False)
    assert res.exit_code == 1 and "rules[0].op: unknown operator 'near'" in res.output

    rep = cli("report", "--list").output
    assert "scoring" in rep and "scoring_basic" in rep
    cli("leads", "convert", "1")
    table = cli("report", "scoring").output
    assert "Scoring calibration" in table and "grade" in table
    data = json.loads(cli("report", "scoring", "--json", "--band-width", "25").output)
    assert data["won"] == 1 and data["by_grade"][0]["grade"] == "A"


def test_config_check_names_the_bad_rule(home):
    text = (home / "corecrm.toml").read_text()
    (home / "corecrm.toml").write_text(text.replace('op = "regex"', 'op = "regexp"', 1))
    res = cli("config", "check", ok=False)
    assert res.exit_code == 1
    assert f"{home / 'corecrm.toml'}: plugins.scoring_basic.rules[0].op: unknown operator 'regexp'" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_score_commands_are_listed(home):
    out = cli("score", "--help").output
    assert "recompute" in out and "diff" in out


def test_disabled_plugin_leaves_no_commands_reports_or_scores(home):
    text = (home / "corecrm.toml").read_text()
    (home / "corecrm.toml").write_text(text.replace('enabled = ["capture_json", "scoring_basic"]', 'enabled = ["capture_json"]').split("[plugins.scoring_basic]")[0])
    assert "No such command 'score'" in cli("score", "recompute", ok=False).output
    assert "scoring" not in cli("report", "--list").output
    shutil.copy(DATA / "saas_leads.json", home / "leads.json")
    cli("capture", "leads.json")
    shown = json.loads(cli("leads", "show", "1", "--json").output)
    assert shown["score"] is None and shown["grade"] is None and shown["stage"] == "lead"
