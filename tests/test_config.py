"""Configuration: loading, validation with key paths, plugin settings, secrets, workspaces."""

from __future__ import annotations

import pytest
from crmtest_plugins import DomainScorer

from corecrm.config import Config
from corecrm.errors import ConfigError


def write(tmp_path, text: str):
    p = tmp_path / "corecrm.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_malformed_toml_names_the_file(tmp_path):
    p = write(tmp_path, "[crm\ndatabase = 1\n")
    with pytest.raises(ConfigError) as exc:
        Config.load(p)
    assert str(p) in str(exc.value) and "invalid TOML" in str(exc.value)


@pytest.mark.parametrize(
    "text, key",
    [
        ("[crm]\ndatabase = 5\n", "crm.database"),
        ("[crm]\ncolour = 'red'\n", "crm.colour"),
        ("[nonsense]\n", "nonsense"),
        ("[plugins]\nenabled = 'capture_json'\n", "plugins.enabled"),
        ("[[pipelines.sales.stages]]\nname = 'new'\nprobability = 1.5\n", "pipelines.sales.stages[0].probability"),
        ("[[pipelines.sales.stages]]\nname = 'won'\nprobability = 1.0\nclosed = 'won'\n", "pipelines.sales.stages"),
        ("[[pipelines.sales.stages]]\nname = 'a'\nprobability = 0.1\n[[pipelines.sales.stages]]\nname = 'a'\nprobability = 0.2\n", "pipelines.sales.stages[1].name"),
        ("[workspaces.acme]\ncolour = 1\n", "workspaces.acme.colour"),
    ],
)
def test_bad_values_name_the_key_path(tmp_path, text, key):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        Config.load(p)
    assert f"{p}: {key}:" in str(exc.value)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        Config.load(tmp_path / "nope.toml")


def test_database_defaults_beside_the_config(tmp_path):
    cfg = Config.load(write(tmp_path, "[crm]\ndatabase = 'sqlite:///data/crm.db'\n"))
    assert cfg.database_url == f"sqlite:///{tmp_path / 'data' / 'crm.db'}"
    assert Config.load(write(tmp_path, "")).database_url == f"sqlite:///{tmp_path / 'corecrm.db'}"


def test_car_dealer_pipeline_with_test_drive(tmp_path):
    cfg = Config.load(write(tmp_path, """
[[pipelines.vehicles.stages]]
name = "test_drive"
probability = 0.5
playbook = ["meeting"]
[[pipelines.vehicles.stages]]
name = "sold"
probability = 1.0
closed = "won"
"""))
    pipe = cfg.pipelines()["vehicles"]
    assert pipe.stage("test_drive").probability == 0.5 and pipe.stage("test_drive").playbook == ("meeting",)


def test_unknown_plugin_in_enabled_is_an_error(make_crm):
    with pytest.raises(ConfigError) as exc:
        make_crm({"plugins": {"enabled": ["capture_json", "no_such_plugin"]}})
    assert "plugins.enabled[1]" in str(exc.value) and "no_such_plugin" in str(exc.value)


def test_wrong_typed_plugin_setting_names_the_key(make_crm):
    with pytest.raises(ConfigError) as exc:
        make_crm({"plugins": {"enabled": ["capture_json"], "scorer": {"company_points": "ten"}}}, plugins={"scorer": DomainScorer()})
    assert "plugins.scorer.company_points" in str(exc.value) and "expected int" in str(exc.value)


def test_wrong_typed_workspace_override_names_the_key(make_crm):
    cfg = {"plugins": {"enabled": ["capture_json"]}, "workspaces": {"acme": {"plugins": {"scorer": {"company_points": True}}}}}
    with pytest.raises(ConfigError) as exc:
        make_crm(cfg, plugins={"scorer": DomainScorer()})
    assert "workspaces.acme.plugins.scorer.company_points" in str(exc.value)


def test_unknown_setting_warns_and_strict_mode_fails(make_crm, monkeypatch):
    cfg = {"plugins": {"enabled": ["capture_json"], "scorer": {"company_pts": 3}}}
    with pytest.warns(UserWarning, match="plugins.scorer.company_pts"):
        make_crm(cfg, plugins={"scorer": DomainScorer()})
    monkeypatch.setenv("CORECRM_STRICT_PLUGINS", "1")
    with pytest.raises(ConfigError, match="plugins.scorer.company_pts"):
        make_crm(cfg, plugins={"scorer": DomainScorer()})


def test_settings_layering_and_env_secrets(make_crm, monkeypatch):
    from corecrm.hooks import hookimpl
    from corecrm.records import Setting

    class Mailer:
        @hookimpl
        def crm_plugin_settings(self):
            return [Setting("host", "str", "localhost"), Setting("password", "str", None), Setting("rate", "int", 10)]

    cfg = {
        "plugins": {"enabled": ["capture_json"], "mailer": {"password": {"env": "MAILER_PW"}, "rate": 20}},
        "workspaces": {"acme": {"plugins": {"mailer": {"rate": 5}}}},
    }
    crm = make_crm(cfg, plugins={"mailer": Mailer()})
    monkeypatch.setenv("MAILER_PW", "s3cret")
    assert dict(crm.settings("mailer")) == {"host": "localhost", "password": "s3cret", "rate": 20}
    assert crm.settings("mailer", "acme")["rate"] == 5
    with pytest.raises(TypeError):
        crm.settings("mailer")["rate"] = 1  # read-only
    monkeypatch.delenv("MAILER_PW")
    crm.plugins._settings_cache.clear()
    with pytest.raises(ConfigError, match="MAILER_PW"):
        crm.settings("mailer")


def test_a_plugin_validator_error_names_the_file_and_key(make_crm):
    from corecrm.hooks import hookimpl
    from corecrm.records import Setting

    def check_rules(value, key):
        for i, rule in enumerate(value):
            if rule.get("op") not in ("eq", "in"):
                raise ConfigError(f"unknown operator {rule.get('op')!r}", key=f"{key}[{i}].op")

    class Rules:
        @hookimpl
        def crm_plugin_settings(self):
            return [Setting("rules", "list", [], validate=check_rules)]

    with pytest.raises(ConfigError) as exc:
        make_crm({"plugins": {"enabled": ["capture_json"], "rules": {"rules": [{"op": "eq"}, {"op": "like"}]}}}, plugins={"rules": Rules()})
    msg = str(exc.value)
    assert msg.endswith("corecrm.toml: plugins.rules.rules[1].op: unknown operator 'like'"), msg


def test_thaw_gives_plain_data_from_read_only_settings():
    from types import MappingProxyType

    from corecrm.settings import freeze, thaw

    frozen = freeze({"rules": ({"name": "a", "when": MappingProxyType({"x": 1})},), "n": 2})
    plain = thaw(frozen)
    assert plain == {"rules": [{"name": "a", "when": {"x": 1}}], "n": 2}
    assert type(plain) is dict and type(plain["rules"]) is list and type(plain["rules"][0]["when"]) is dict
