"""Plugin discovery, blocking before import, isolation, provenance, and a real third-party package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from corecrm.config import Config
from corecrm.errors import PluginError
from corecrm.hooks import hookimpl
from corecrm.plugins import PluginManager
from corecrm.records import CaptureFormat, ParsedCapture

ROOT = Path(__file__).resolve().parent.parent


def run_py(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


def test_bundled_plugins_are_entry_points_of_the_distribution():
    pm = PluginManager(Config.from_dict({})).load()
    info = pm.infos["capture_json"]
    assert info.bundled and info.distribution == "corecrm" and info.loaded
    assert "crm_capture_formats" in info.hooks and info.module == "corecrm_plugins.capture_json"


def test_disabled_plugin_is_never_imported(tmp_path):
    (tmp_path / "corecrm.toml").write_text('[plugins]\ndisabled = ["capture_json"]\n')
    code = textwrap.dedent("""
        import sys
        from corecrm.app import Crm
        crm = Crm.open()
        assert not crm.plugins.is_loaded("capture_json")
        print(sorted(m for m in sys.modules if m.startswith("corecrm_plugins.capture_json")))
    """)
    out = run_py(code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    out = run_py(code.replace('disabled', 'x'), cwd=tmp_path, env={"CORECRM_LOAD_PLUGINS": ""})
    assert out.returncode == 0 and out.stdout.strip() == "[]"


def test_load_plugins_allowlist(monkeypatch):
    monkeypatch.setenv("CORECRM_LOAD_PLUGINS", "")
    pm = PluginManager(Config.from_dict({})).load()
    assert pm.loaded_names() == [] and pm.infos["capture_json"].why_disabled == "not in CORECRM_LOAD_PLUGINS"
    monkeypatch.setenv("CORECRM_LOAD_PLUGINS", "capture_json")
    assert PluginManager(Config.from_dict({})).load().loaded_names() == ["capture_json"]


def test_misspelt_hook_fails_at_start_up():
    class Typo:
        @hookimpl
        def crm_score_lead(self, leads):  # missing "s"
            return []

    with pytest.raises(PluginError) as exc:
        PluginManager(Config.from_dict({})).load(entry_points=False, extra={"typo": Typo()})
    assert "typo" in str(exc.value) and "crm_score_lead" in str(exc.value)


def test_hook_crm_capture_formats_conflicting_names_are_rejected(make_crm):
    class Other:
        @hookimpl
        def crm_capture_formats(self):
            return [CaptureFormat("json", sniff=lambda raw: 100, parse=lambda raw: ParsedCapture())]

    crm = make_crm(plugins={"other": Other()})
    with pytest.raises(PluginError, match="conflicting capture format 'json' provided by plugins"):
        crm.capture_formats()


def test_hook_crm_plugin_settings_declares_typed_defaults(make_crm):
    crm = make_crm({"plugins": {"enabled": ["capture_json"], "capture_json": {"default_source": "feed"}}})
    assert crm.plugins.declared_settings("capture_json")[0].key == "default_source"
    assert crm.settings("capture_json")["default_source"] == "feed"
    [res] = crm.capture([__import__("conftest").json_capture({"email": "a@x.test"})])
    assert crm.lead(res.lead_ids[0]).source == "feed"


def test_hook_crm_db_schema_creates_plugin_tables(make_crm):
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table("widget_things", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("workspace", sa.String(64)))

    class Widget:
        @hookimpl
        def crm_db_schema(self):
            return [md]

    crm = make_crm(plugins={"widget": Widget()})
    assert sa.inspect(crm.engine).has_table("widget_things")


def test_hook_crm_cli_commands_and_config_warnings(tmp_path, monkeypatch):
    """Exercised end to end with a real installed package in the next test; here in-process."""
    import click
    from click.testing import CliRunner

    from corecrm import cli
    from corecrm.records import CliCommand

    class Hello:
        @hookimpl
        def crm_cli_commands(self):
            @click.command("hello")
            def hello():
                click.echo("hi from a plugin")

            return [CliCommand(hello, group="greet", help="Greetings.")]

        @hookimpl
        def crm_config_warnings(self, workspace):
            return [f"just saying, in {workspace}"]

    real = PluginManager.load

    def load(self, *, entry_points=True, extra=None):
        return real(self, entry_points=entry_points, extra={"hello": Hello()})

    monkeypatch.setattr(PluginManager, "load", load)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.main, ["greet", "hello"])
    assert r.exit_code == 0 and "hi from a plugin" in r.output
    r = CliRunner().invoke(cli.main, ["config", "check"])
    assert r.exit_code == 0 and "hello (workspace default): just saying, in default" in r.output


THIRD_PARTY = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "corecrm-vip-score"
        version = "1.2.3"

        [project.entry-points."corecrm.plugins"]
        vip_score = "corecrm_vip_score"

        [tool.setuptools]
        py-modules = ["corecrm_vip_score", "corecrm_broken"]
    """,
    "corecrm_vip_score.py": """
        from corecrm.hooks import hookimpl
        from corecrm.records import ScoreContribution, Setting

        @hookimpl
        def crm_plugin_settings():
            return [Setting("vip_domains", "list", [], "domains of VIP accounts"), Setting("points", "int", 50)]

        @hookimpl
        def crm_score_leads(leads, settings):
            return [ScoreContribution(i, "vip", settings["points"], f"VIP domain {lead.email_domain}")
                    for i, lead in enumerate(leads) if lead.email_domain in settings["vip_domains"]]
    """,
    "corecrm_broken.py": "raise ImportError('this plugin is broken on purpose')\n",
}


@pytest.fixture(scope="module")
def third_party_site(tmp_path_factory) -> Path:
    """Build and pip-install a separate plugin package (its own pyproject and entry point)."""
    src = tmp_path_factory.mktemp("vip_src")
    for name, text in THIRD_PARTY.items():
        (src / name).write_text(textwrap.dedent(text))
    site = tmp_path_factory.mktemp("vip_site")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return site


def test_third_party_package_is_discovered_configured_and_run(third_party_site, tmp_path):
    (tmp_path / "corecrm.toml").write_text('[plugins.vip_score]\nvip_domains = ["bigco.test"]\npoints = 70\n')
    env = {"PYTHONPATH": str(third_party_site)}
    cli = [sys.executable, "-m", "corecrm.cli"]
    out = subprocess.run([*cli, "plugins", "list", "--json"], capture_output=True, text=True, env={**os.environ, **env}, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    infos = {p["name"]: p for p in json.loads(out.stdout)}
    vip = infos["vip_score"]
    assert (vip["distribution"], vip["version"], vip["bundled"], vip["loaded"]) == ("corecrm-vip-score", "1.2.3", False, True)
    assert vip["hooks"] == ["crm_plugin_settings", "crm_score_leads"]
    assert infos["capture_json"]["bundled"] is True
    (tmp_path / "l.json").write_text(json.dumps([{"email": "ceo@bigco.test"}, {"email": "x@small.test"}]))
    out = subprocess.run([*cli, "capture", "l.json", "--json"], capture_output=True, text=True, env={**os.environ, **env}, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)[0]["lead_ids"]
    show = subprocess.run([*cli, "leads", "show", str(ids[0]), "--json"], capture_output=True, text=True, env={**os.environ, **env}, cwd=tmp_path, timeout=120)
    lead = json.loads(show.stdout)
    assert lead["score"] == 70 and lead["score_detail"]["contributions"][0]["plugin"] == "vip_score"
    # Disabled in TOML: not imported, its hooks do not run.
    (tmp_path / "corecrm.toml").write_text('[plugins]\ndisabled = ["vip_score"]\n')
    code = "import sys; from corecrm.app import Crm; Crm.open(); print('corecrm_vip_score' in sys.modules)"
    out = run_py(code, env=env, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "False"


def test_a_plugin_that_fails_to_import_is_skipped_or_raises_in_strict_mode(third_party_site, tmp_path, monkeypatch):
    import importlib.metadata as md

    # The package ships a module that fails to import; expose it as an entry point.
    ep = md.EntryPoint(name="broken_plugin", value="corecrm_broken", group="corecrm.plugins")
    real = md.entry_points
    monkeypatch.syspath_prepend(str(third_party_site))
    monkeypatch.setattr(md, "entry_points", lambda group=None: [*real(group=group), ep] if group == "corecrm.plugins" else real(group=group))
    pm = PluginManager(Config.from_dict({})).load()
    info = pm.infos["broken_plugin"]
    assert not info.loaded and "this plugin is broken on purpose" in info.error
    assert pm.is_loaded("capture_json")
    monkeypatch.setenv("CORECRM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin broken_plugin: failed to import"):
        PluginManager(Config.from_dict({})).load()


def test_observer_hook_failure_is_logged_with_plugin_name(make_crm, caplog):
    from crmtest_plugins import Recorder

    crm = make_crm(plugins={"flaky": Recorder(fail=True)})
    crm.capture([__import__("conftest").json_capture({"email": "a@x.test"})])
    assert any("plugin flaky failed in crm_leads_captured" in r.getMessage() for r in caplog.records)
