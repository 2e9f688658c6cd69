"""Bad sequences and templates fail when the configuration is loaded, naming the key path."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from corecrm.config import Config
from corecrm.errors import ConfigError
from corecrm.plugins import PluginManager

from nurture_testkit import nurture_settings, three_step_sequence

from corecrm_plugins.nurture_sequences.spec import Step, parse_duration

P = "plugins.nurture_sequences.sequences.trial"


def load(nurture: dict) -> PluginManager:
    return PluginManager(Config.from_dict({"plugins": {"nurture_sequences": nurture}})).load()


def bad(mutate) -> str:
    cfg = nurture_settings()
    mutate(cfg["sequences"]["trial"])
    with pytest.raises(ConfigError) as exc:
        load(cfg)
    return str(exc.value)


def test_a_valid_configuration_loads():
    load(nurture_settings())


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (lambda s: s["steps"][1].update(html="<p>{{ lead.first_name </p>"), f"{P}.steps[1].html", "TemplateSyntaxError"),
        (lambda s: s["steps"][0].update(text="Hi {{ leed.first_name }}"), f"{P}.steps[0].text", "'leed' is undefined"),
        (lambda s: s["steps"][0].update(subject="{{ lead.__class__.__mro__ }}"), f"{P}.steps[0].subject", "unsafe"),
        (lambda s: s["steps"][2].update(delay="three days"), f"{P}.steps[2].delay", "expected a duration"),
        (lambda s: s["steps"][2].update(at="25:00"), f"{P}.steps[2].at", "HH:MM"),
        (lambda s: s["steps"][1].pop("text"), f"{P}.steps[1].text", "plain-text"),
        (lambda s: s["steps"][1].update(subject=""), f"{P}.steps[1].subject", "needs a subject"),
        (lambda s: s["steps"][1].update(templat="x"), f"{P}.steps[1].templat", "unknown key"),
        (lambda s: s.update(exit_on=["qualified", "bored"]), f"{P}.exit_on[1]", "unknown exit condition 'bored'"),
        (lambda s: s.update(steps=[]), f"{P}.steps", "non-empty"),
        (lambda s: s.update(enrol=[{"on": "birthday"}]), f"{P}.enrol[0].on", "expected one of"),
        (lambda s: s.update(enrol=[{"on": "stage_changed", "to": ["nurturing", "warm"]}]), f"{P}.enrol[0].to[1]", "unknown stage 'warm'"),
        (lambda s: s.update(enrol=[{"on": "date"}]), f"{P}.enrol[0].date_field", "date_field"),
        (lambda s: s["steps"][0].update(name="Welcome!"), f"{P}.steps[0].name", "snake_case"),
    ],
)
def test_bad_sequence_or_template_names_the_key_path(mutate, key, words):
    msg = bad(mutate)
    assert key + ":" in msg and words in msg, msg


def test_other_settings_are_checked():
    with pytest.raises(ConfigError, match=r"plugins\.nurture_sequences\.unsubscribe_url: must contain \{token\}"):
        load(nurture_settings(unsubscribe_url="https://x.example/unsub"))
    with pytest.raises(ConfigError, match=r"plugins\.nurture_sequences\.default_timezone: unknown time zone"):
        load(nurture_settings(default_timezone="Mars/Olympus"))
    with pytest.raises(ConfigError, match=r"plugins\.nurture_sequences\.secret: write the secret as"):
        load(nurture_settings(secret="in-the-file"))
    with pytest.raises(ConfigError, match=r"plugins\.channel_email\.password: write the password as"):
        PluginManager(Config.from_dict({"plugins": {"channel_email": {"password": "hunter2"}}})).load()
    PluginManager(Config.from_dict({"plugins": {"channel_email": {"password": {"env": "SMTP_PASSWORD"}}}})).load()


def test_workspace_override_is_checked_too():
    cfg = {"plugins": {"nurture_sequences": nurture_settings()},
           "workspaces": {"acme": {"plugins": {"nurture_sequences": {"sequences": {"x": {"steps": [{"text": "{% if %}"}]}}}}}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"workspaces\.acme\.plugins\.nurture_sequences\.sequences\.x\.steps\[0\]\.(subject|text)"):
        PluginManager(Config.from_dict(cfg)).load()


def test_durations():
    assert parse_duration("1d12h", "k") == dt.timedelta(days=1, hours=12)
    assert parse_duration("2w", "k") == dt.timedelta(weeks=2)
    assert parse_duration(90, "k") == dt.timedelta(seconds=90)
    assert parse_duration("0", "k") == dt.timedelta(0)
    for v in ("", "d", "-1d", True, -5, "1y"):
        with pytest.raises(ConfigError):
            parse_duration(v, "k")


_tz = st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC", None, "Not/AZone"])


@settings(max_examples=200, deadline=None)
@given(
    base=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1), timezones=st.just(dt.timezone.utc)),
    delay_min=st.integers(0, 60 * 24 * 30),
    at=st.one_of(st.none(), st.times().map(lambda t: t.replace(second=0, microsecond=0))),
    tz=_tz,
)
def test_step_due_is_after_the_delay_and_at_the_local_time(base, delay_min, at, tz):
    from zoneinfo import ZoneInfo

    step = Step(0, "s", dt.timedelta(minutes=delay_min), "email", "s", "t", None, at)
    due = step.due(base, tz)
    earliest = base + step.delay
    assert due >= earliest
    if at is None:
        assert due == earliest
        return
    assert due - earliest <= dt.timedelta(days=1, hours=1)  # the next such local time, never a day late
    zone = ZoneInfo(tz) if tz in ("Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC") else dt.timezone.utc
    local = due.astimezone(zone)
    if (local.hour, local.minute) != (at.hour, at.minute):
        # Only a wall time that does not exist (a DST gap) may move, by the size of the gap.
        naive = dt.datetime.combine(local.date(), at)
        assert naive.replace(tzinfo=zone).astimezone(dt.timezone.utc).astimezone(zone).replace(tzinfo=None) != naive


def test_sequences_parse_from_frozen_settings():
    from corecrm.settings import freeze

    from corecrm_plugins.nurture_sequences.config import NurtureSettings

    raw = copy.deepcopy(nurture_settings())
    raw["secret"] = "resolved-by-the-core"
    cfg = NurtureSettings.from_settings(freeze(raw))
    assert [s.name for s in cfg.sequences["trial"].steps] == ["welcome", "tips", "last_call"]
    assert cfg.sequences["trial"].steps[2].at == dt.time(9, 0)
    assert three_step_sequence()["steps"][0]["name"] == "welcome"


def test_hook_crm_config_warnings_flags_missing_links_and_rules(monkeypatch):
    from corecrm_plugins.nurture_sequences.config import config_warnings

    monkeypatch.setenv("CORECRM_TEST_NURTURE_SECRET", "x")
    cfg = nurture_settings(double_opt_in=["email"])
    del cfg["unsubscribe_url"]
    pm = load(cfg)
    warnings = [w for name, found in pm.each("crm_config_warnings", workspace="default") if name == "nurture_sequences" for w in found]
    assert any(w.startswith("plugins.nurture_sequences.unsubscribe_url: e-mail steps") for w in warnings)
    assert any(w.startswith("plugins.nurture_sequences.confirm_url:") for w in warnings)
    assert any(w.startswith("plugins.nurture_sequences.sequences.trial.enrol: no enrolment rule") for w in warnings)
    assert config_warnings({**nurture_settings(), "sequences": {"t": three_step_sequence(enrol=[{"on": "intake"}])}}) == []


def _doc_examples() -> list[str]:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins" / "nurture.md").read_text(encoding="utf-8")
    return [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if ".enrol]]" in b and ".steps]]" in b]


@pytest.mark.parametrize("block", _doc_examples(), ids=["saas_trial", "car_dealer"])
def test_the_guide_examples_pass_config_check(block, monkeypatch):
    import tomllib

    monkeypatch.setenv("CORECRM_NURTURE_SECRET", "doc-secret")
    data = tomllib.loads(block)
    pm = PluginManager(Config.from_dict(data)).load()
    from corecrm_plugins.nurture_sequences.config import NurtureSettings

    cfg = NurtureSettings.from_settings(pm.settings("nurture_sequences"))
    assert len(cfg.sequences) >= 1 and all(s.rules for s in cfg.sequences.values())


@pytest.mark.parametrize(
    "over, key, words",
    [
        ({"confirm_text": "Please confirm: https://example.com/confirm"}, "plugins.nurture_sequences.confirm_text", "{{ confirm_url }}"),
        ({"confirm_text": "Hi {{ lead.frist_name }} {{ confirm_url }}"}, "plugins.nurture_sequences.confirm_text", "'frist_name'"),
        ({"confirm_subject": "Confirm {{ lead.first_name "}, "plugins.nurture_sequences.confirm_subject", "TemplateSyntaxError"),
        ({"confirm_html": "<a href='{{ confirm_url.__class__ }}'>x</a>"}, "plugins.nurture_sequences.confirm_html", "unsafe"),
        ({"confirm_valid_for": "two weeks"}, "plugins.nurture_sequences.confirm_valid_for", "expected a duration"),
        ({"confirm_send": "later"}, "plugins.nurture_sequences.confirm_send", "later"),
    ],
)
def test_bad_confirmation_settings_name_the_key(over, key, words):
    with pytest.raises(ConfigError) as exc:
        load({**nurture_settings(), **over})
    assert key in str(exc.value) and words in str(exc.value), str(exc.value)


def test_a_custom_confirmation_template_is_used():
    from corecrm_plugins.nurture_sequences.config import NurtureSettings
    from corecrm_plugins.nurture_sequences.templates import SAMPLE_LEAD, confirmation_context, render_confirmation

    load({**nurture_settings(), "confirm_subject": "{{ lead.first_name }}, one click left", "confirm_text": "Go: {{ confirm_url }} ({{ purpose }})"})
    cfg = NurtureSettings.from_settings({**nurture_settings(), "secret": "s", "confirm_subject": "{{ lead.first_name }}, one click left",
                                         "confirm_text": "Go: {{ confirm_url }} ({{ purpose }})"})  # fmt: skip
    ctx = confirmation_context(SAMPLE_LEAD, confirm_url="https://x.example/confirm/T", channel="email", purpose="news", address="ada@example.com", valid_until=None)
    assert render_confirmation(cfg.confirm_subject, cfg.confirm_text, cfg.confirm_html, ctx) == {
        "subject": "Ada, one click left", "text": "Go: https://x.example/confirm/T (news)", "html": None}
