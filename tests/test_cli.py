"""The command line: init, capture, leads, explain, plugins, bad input, workspaces."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from corecrm.cli import main

REQUIRED_KEYS = {"id", "workspace", "stage", "first_name", "last_name", "email", "phone", "company", "country", "region", "postal_code", "source", "interests", "attributes", "score", "grade", "owner", "team", "status", "created_at", "events"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("CORECRM_CONFIG", "CORECRM_WORKSPACE", "CORECRM_DATABASE", "CORECRM_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "corecrm.toml").write_text('# my comment\n[plugins]\nenabled = ["capture_json"]  # keep me\n')
    return tmp_path


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def db_snapshot(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def test_init_writes_a_commented_config_and_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("init", "--dir", "crm")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "crm" / "corecrm.toml").read_text()
    assert text.startswith("# corecrm configuration") and "[[pipelines.sales.stages]]" in text
    assert (tmp_path / "crm" / "corecrm.db").exists()
    assert run("init", "--dir", "crm").exit_code == 1


def test_capture_show_and_explain(home):
    (home / "leads.ndjson").write_text('{"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.test", "country": "gb", "interests": ["shoes"]}\n{"email": "bob@acme.test"}\n')
    r = run("capture", "leads.ndjson", "--json")
    assert r.exit_code == 0, r.output
    [res] = json.loads(r.output)
    assert res["status"] == "processed" and len(res["lead_ids"]) == 2
    shown = json.loads(run("leads", "show", str(res["lead_ids"][0]), "--json").output)
    assert REQUIRED_KEYS <= set(shown)
    assert shown["country"] == "GB" and shown["interests"] == ["shoes"]
    assert shown["events"][0]["type"] == "captured" and set(shown["events"][0]) == {"type", "at", "plugin", "detail"}
    listed = json.loads(run("leads", "list", "--json").output)
    assert [ld["email"] for ld in listed] == ["ann@acme.test", "bob@acme.test"]
    out = run("explain", str(res["lead_ids"][0])).output
    assert "captured [json]" in out and "leads.ndjson" in out
    # capturing the same file again creates nothing
    again = json.loads(run("capture", "leads.ndjson", "--json").output)
    assert again[0]["status"] == "duplicate" and again[0]["lead_ids"] == res["lead_ids"]


def test_capture_from_stdin(home):
    r = run("capture", "-", input='{"email": "pipe@acme.test"}')
    assert r.exit_code == 0 and "processed" in r.output


def test_plugins_enable_disable_keeps_comments(home):
    r = run("plugins", "disable", "capture_json")
    assert r.exit_code == 0, r.output
    text = (home / "corecrm.toml").read_text()
    assert "# my comment" in text and "# keep me" in text and 'disabled = ["capture_json"]' in text
    listed = json.loads(run("plugins", "list", "--json").output)
    assert {p["name"]: p["loaded"] for p in listed}["capture_json"] is False
    assert run("plugins", "enable", "capture_json").exit_code == 0
    assert "capture_json" in (home / "corecrm.toml").read_text().split("enabled")[1]
    assert run("plugins", "enable", "nope").exit_code == 1


@pytest.mark.parametrize(
    "config, args, expect",
    [
        ("[plugins\n", ["leads", "list"], "invalid TOML"),
        ('[plugins]\nenabled = ["capture_json", "ghost"]\n', ["leads", "list"], "plugins.enabled[1]: unknown plugin 'ghost'"),
        ('[plugins.capture_json]\ndefault_source = 5\n', ["leads", "list"], "plugins.capture_json.default_source: expected str"),
        ('[plugins.capture_json]\ndefault_source = 5\n', ["config", "check"], "plugins.capture_json.default_source"),
    ],
)
def test_bad_config_is_a_one_line_error(home, config, args, expect):
    (home / "corecrm.toml").write_text(config)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.output
    assert str(home / "corecrm.toml") in lines[0]


def test_bad_input_leaves_the_database_as_it_was(home):
    (home / "ok.json").write_text('{"email": "ann@acme.test"}')
    [res] = json.loads(run("capture", "ok.json", "--json").output)
    lead_id = str(res["lead_ids"][0])
    before = db_snapshot(home / "corecrm.db")
    (home / "bad.json").write_text('{"email": "x@y.test", ')
    for args, expect in [
        (["capture", "bad.json"], "bad.json"),
        (["leads", "move", lead_id, "opportunity2"], "unknown stage"),
        (["leads", "move", lead_id, "customer"], "leads convert"),
        (["leads", "show", "999"], "lead 999 not found"),
        (["leads", "log", lead_id, "--type", "fax"], "unknown activity type"),
    ]:
        r = CliRunner().invoke(main, args)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 1 and len(lines) == 1 and expect in lines[0], (args, r.output)
    run("leads", "move", lead_id, "sql")
    r = CliRunner().invoke(main, ["leads", "move", lead_id, "lead"])
    assert r.exit_code == 1 and "cannot move from sql to lead" in r.output
    after = db_snapshot(home / "corecrm.db")
    assert after["events"] == before["events"] + 1  # only the valid move was recorded
    assert {k: v for k, v in after.items() if k != "events"} == {k: v for k, v in before.items() if k != "events"}


def test_workspaces_have_their_own_settings_and_never_see_each_other(home):
    (home / "corecrm.toml").write_text(
        '[plugins]\nenabled = ["capture_json"]\n'
        '[plugins.capture_json]\ndefault_source = "web"\n'
        '[workspaces.acme.plugins.capture_json]\ndefault_source = "acme-portal"\n'
    )
    (home / "l.json").write_text('{"email": "same@person.test"}')
    a = json.loads(run("capture", "l.json", "--json").output)[0]
    b = json.loads(run("--workspace", "acme", "capture", "l.json", "--json").output)[0]
    assert a["status"] == b["status"] == "processed"  # the same payload, a different tenant
    lead_a = json.loads(run("leads", "show", str(a["lead_ids"][0]), "--json").output)
    lead_b = json.loads(run("-w", "acme", "leads", "show", str(b["lead_ids"][0]), "--json").output)
    assert (lead_a["workspace"], lead_a["source"]) == ("default", "web")
    assert (lead_b["workspace"], lead_b["source"]) == ("acme", "acme-portal")
    assert [ld["id"] for ld in json.loads(run("-w", "acme", "leads", "list", "--json").output)] == [lead_b["id"]]
    for args in (["leads", "show", str(lead_a["id"])], ["explain", str(lead_a["id"])], ["leads", "move", str(lead_a["id"]), "mql"], ["leads", "convert", str(lead_a["id"])], ["leads", "log", str(lead_a["id"]), "--type", "call"]):
        r = CliRunner().invoke(main, ["-w", "acme", *args])
        assert r.exit_code == 1 and "not found in workspace 'acme'" in r.output, args
    assert json.loads(run("-w", "other", "leads", "list", "--json").output) == []


def test_activities_tasks_and_deals(home):
    (home / "l.json").write_text('{"email": "ann@acme.test", "company": "Acme"}')
    lead_id = json.loads(run("capture", "l.json", "--json").output)[0]["lead_ids"][0]
    assert run("leads", "log", str(lead_id), "--type", "task", "--note", "send brochure", "--owner", "rita", "--due", "2026-03-05T10:00").exit_code == 0
    tasks = json.loads(run("tasks", "list", "--owner", "rita", "--json").output)
    assert [t["note"] for t in tasks] == ["send brochure"]
    assert run("tasks", "done", str(tasks[0]["id"])).exit_code == 0
    assert json.loads(run("tasks", "list", "--owner", "rita", "--json").output) == []
    r = run("deals", "create", str(lead_id), "--amount", "1200")
    assert r.exit_code == 0
    deal = json.loads(run("deals", "show", "1", "--json").output)
    assert deal["stage"] == "new" and deal["playbook_status"] == [{"activity": "call", "done": False}]
    run("leads", "log", str(lead_id), "--type", "call", "--deal", "1", "--note", "intro call")
    assert json.loads(run("deals", "show", "1", "--json").output)["playbook_status"] == [{"activity": "call", "done": True}]
    r = CliRunner().invoke(main, ["deals", "move", "1", "lost"])
    assert r.exit_code == 1 and "needs a reason" in r.output
    assert run("deals", "move", "1", "lost", "--reason", "price").exit_code == 0
    shown = json.loads(run("leads", "show", str(lead_id), "--json").output)
    types = [e["type"] for e in shown["events"]]
    assert "first_contact" in types and "deal_lost" in types and shown["stage"] == "opportunity"
