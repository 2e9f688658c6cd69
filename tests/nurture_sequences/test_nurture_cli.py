"""The commands end to end: capture, preview, run --now, unsubscribe, report, config check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from corecrm.cli import main

from nurture_testkit import SECRET_VAR, smtp  # noqa: F401

CONFIG = """
[crm]
database = "sqlite:///crm.db"

[plugins]
enabled = ["capture_json", "nurture_sequences", "channel_email"]

[plugins.channel_email]
host = "127.0.0.1"
port = {port}
from_address = "hello@saas.example"
from_name = "SaaS"

[plugins.nurture_sequences]
secret = {{ env = "{secret}" }}
unsubscribe_url = "https://app.saas.example/unsubscribe/{{token}}"

[plugins.nurture_sequences.sequences.trial]
purpose = "marketing"
exit_on = ["qualified", "converted", "unsubscribed"]

[[plugins.nurture_sequences.sequences.trial.enrol]]
on = "intake"
match = {{ interests = "trial" }}

[[plugins.nurture_sequences.sequences.trial.steps]]
name = "welcome"
subject = "Welcome to the trial, {{{{ lead.first_name }}}}"
text = "Hi {{{{ lead.first_name }}}}. Unsubscribe: {{{{ unsubscribe_url }}}}"
html = "<p>Hi {{{{ lead.first_name }}}}</p>"

[[plugins.nurture_sequences.sequences.trial.steps]]
name = "day3"
delay = "3d"
subject = "Three days in"
text = "How is it going?"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("CORECRM_CONFIG", "CORECRM_WORKSPACE", "CORECRM_DATABASE", "CORECRM_LOAD_PLUGINS", "CORECRM_NOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(SECRET_VAR, "cli-test-secret")
    monkeypatch.setenv("CORECRM_NOW", "2026-03-02T08:00:00+00:00")  # the core's clock, for capture
    (tmp_path / "corecrm.toml").write_text(CONFIG.format(port=smtp.port, secret=SECRET_VAR))
    return tmp_path


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_nurture_commands_end_to_end(home: Path, smtp):
    (home / "leads.json").write_text(json.dumps([
        {"first_name": "Ada <3", "email": "ada@example.org", "interests": ["trial"], "consent": {"email": True, "source": "signup-form"}},
        {"first_name": "Bob", "email": "bob@example.org", "interests": ["newsletter"]},
    ]))  # fmt: skip
    r = cli("capture", "leads.json")
    assert r.exit_code == 0, r.output

    r = cli("nurture", "preview", "trial", "welcome", "--lead", "1")
    assert r.exit_code == 0, r.output
    assert "Subject: Welcome to the trial, Ada <3" in r.output and "<p>Hi Ada &lt;3</p>" in r.output
    assert "List-Unsubscribe: <https://app.saas.example/unsubscribe/" in r.output
    assert smtp.parsed() == []

    r = cli("nurture", "run", "--json")  # the clock says 2026-03-02T08:00Z
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["sent"] == 1
    (msg,) = smtp.parsed()
    token = msg["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]

    r = cli("nurture", "unsubscribe", token, "--now", "2026-03-03T08:00:00+00:00")
    assert r.exit_code == 0, r.output
    assert "lead 1 unsubscribed from email/marketing; left trial" in r.output
    r = cli("nurture", "unsubscribe", token, "--now", "2026-03-03T09:00:00+00:00")  # the same link again
    assert r.exit_code == 0 and "already unsubscribed from email/marketing; nothing changed" in r.output
    r = cli("nurture", "unsubscribe", token[:-3] + "AAA")
    assert r.exit_code == 1 and "error: invalid token signature" in r.output

    r = cli("nurture", "run", "--now", "2026-03-09T08:00:00+00:00", "--json")
    assert json.loads(r.output.strip().splitlines()[-1])["sent"] == 0
    assert len(smtp.parsed()) == 1

    r = cli("nurture", "consent", "1")
    ledger = json.loads(r.output)
    assert [e["status"] for e in ledger] == ["opted_in", "opted_out"] and ledger[0]["source"] == "signup-form"

    r = cli("report", "nurture", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    row = dict(zip(rep["columns"], rep["rows"][0]))
    assert row["sequence"] == "trial" and row["enrolled"] == 1 and row["sent"] == 1 and row["unsubscribed"] == 1
    assert row["exited_by_reason"] == "unsubscribed=1"

    r = cli("explain", "1")
    assert r.exit_code == 0 and "email_sent" in r.output, r.output


def test_config_check_rejects_a_bad_template_naming_the_key_path(home: Path):
    assert cli("config", "check").exit_code == 0
    text = (home / "corecrm.toml").read_text().replace('html = "<p>Hi {{ lead.first_name }}</p>"', 'html = "<p>Hi {{ lead.first_name </p>"')
    (home / "corecrm.toml").write_text(text)
    r = cli("config", "check")
    assert r.exit_code == 1
    assert "plugins.nurture_sequences.sequences.trial.steps[0].html: TemplateSyntaxError" in r.output
    text = text.replace('delay = "3d"', 'delay = "three days"')
    (home / "corecrm.toml").write_text(text.replace("{{ lead.first_name </p>", "{{ lead.first_name }}</p>"))
    r = cli("config", "check")
    assert r.exit_code == 1 and "plugins.nurture_sequences.sequences.trial.steps[1].delay: expected a duration" in r.output


def test_run_watch_replays_a_schedule_with_a_fixed_clock(home: Path, smtp, monkeypatch):
    """--watch --now: each round moves the clock on by watch_interval (here 1d), until stopped."""
    import time as time_mod

    text = (home / "corecrm.toml").read_text().replace('unsubscribe_url = ', 'watch_interval = "1d"\nunsubscribe_url = ', 1)
    (home / "corecrm.toml").write_text(text)
    (home / "leads.json").write_text(json.dumps([{"first_name": "Ada", "email": "ada@example.org", "interests": ["trial"], "consent": {"email": True}}]))
    assert cli("capture", "leads.json").exit_code == 0
    rounds = []

    def fake_sleep(seconds):
        rounds.append(seconds)
        if len(rounds) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(time_mod, "sleep", fake_sleep)
    r = cli("nurture", "run", "--watch", "--now", "2026-03-02T08:00:00+00:00", "--json")
    assert r.exit_code == 0, r.output
    sent = [json.loads(line)["sent"] for line in r.output.strip().splitlines() if line.startswith("{")]
    assert sent == [1, 0, 0, 1] and rounds == [86400.0] * 4  # welcome on day 0, day3 on day 3
    assert [m["Subject"] for m in smtp.parsed()] == ["Welcome to the trial, Ada", "Three days in"]
