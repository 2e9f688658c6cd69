"""Registration and observer hooks the core pipeline tests do not cover."""

from __future__ import annotations

import csv
import io
import json

import click
from click.testing import CliRunner
from conftest import json_capture
from crmtest_plugins import Recorder

from corecrm.hooks import hookimpl
from corecrm.records import CaptureSource, CustomerValue, ImportFormat, MessageChannel, RawCapture, Report, ReportTable


def test_hook_crm_capture_sources_poll_through_the_cli(make_crm, tmp_path, monkeypatch):
    class Feed:
        @hookimpl
        def crm_capture_sources(self):
            def poll(crm, workspace):
                res = crm.capture([RawCapture(payload=json.dumps({"email": "feed@x.test"}).encode(), origin="feed:1")], workspace=workspace)
                return sum(1 for r in res if not r.duplicate)

            return [CaptureSource("vendor_feed", "http", poll, "a lead vendor's feed")]

    crm = make_crm(plugins={"feed": Feed()})
    srcs = crm.capture_sources()
    assert list(srcs) == ["vendor_feed"] and srcs["vendor_feed"].plugin == "feed"
    assert srcs["vendor_feed"].poll(crm, "default") == 1
    assert srcs["vendor_feed"].poll(crm, "default") == 0  # nothing new: no duplicate
    assert [ld.email for ld in crm.leads()] == ["feed@x.test"]


def test_hook_crm_import_formats_chosen_by_extension(make_crm):
    class Tsv:
        @hookimpl
        def crm_import_formats(self):
            return [ImportFormat("tsv", (".tsv", ".tab"), lambda path, options=None: csv.DictReader(open(path), delimiter="\t"))]

    crm = make_crm(plugins={"tsv": Tsv()})
    assert crm.import_format_for("leads.TSV").name == "tsv"
    import pytest

    from corecrm.errors import CaptureError

    with pytest.raises(CaptureError, match=r"leads.xyz: no import format .*known: \.tab, \.tsv"):
        crm.import_format_for("leads.xyz")


def test_hook_crm_message_channels(make_crm):
    sent = []

    class Sms:
        @hookimpl
        def crm_message_channels(self, settings):
            return [MessageChannel("sms", lambda lead, message: sent.append((lead, message)))]

    crm = make_crm(plugins={"sms": Sms()})
    channels = crm.plugins.collect_named("crm_message_channels", workspace="default")
    channels["sms"].send("lead-1", "hello")
    assert sent == [("lead-1", "hello")] and channels["sms"].plugin == "sms"


def test_hook_crm_customer_values_isolates_failures(make_crm):
    class Good:
        @hookimpl
        def crm_customer_values(self, customer_ids):
            return [CustomerValue(c, 100.0 * c) for c in customer_ids]

    class Bad:
        @hookimpl
        def crm_customer_values(self, customer_ids):
            raise RuntimeError("model not fitted")

    crm = make_crm(plugins={"good": Good(), "bad": Bad()})
    vals = crm.customer_values([1, 2])
    assert [(v.customer_id, v.value, v.plugin) for v in vals] == [(1, 100.0, "good"), (2, 200.0, "good")]


def test_hook_crm_lead_converted_is_idempotent(make_crm, db_url):
    rec = Recorder()
    crm = make_crm(database=db_url, plugins={"rec": rec})
    [res] = crm.capture([json_capture({"email": "a@x.test", "company": "Acme"})])
    lid = res.lead_ids[0]
    first = crm.convert(lid, deal=True, amount=500.0)
    again = crm.convert(lid, deal=True, amount=500.0)
    assert first == again and first[1] is not None
    assert len(crm.deals()) == 1
    import sqlalchemy as sa

    from corecrm.storage import schema

    with crm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.customers)).scalar_one() == 1
    converted = [evs for name, evs in rec.calls if name == "converted"]
    assert len(converted) == 1 and converted[0][0].detail == {"customer_id": first[0], "deal_id": first[1]}
    assert crm.lead(lid).stage.value == "customer"


def test_concurrent_conversion_creates_one_customer(tmp_path):
    """Two processes convert the same lead at once: one customer."""
    import subprocess
    import sys

    (tmp_path / "corecrm.toml").write_text('[plugins]\nenabled = ["capture_json"]\n')
    (tmp_path / "l.json").write_text('{"email": "race@x.test"}')
    cli = [sys.executable, "-m", "corecrm.cli"]
    subprocess.run([*cli, "capture", "l.json"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    procs = [subprocess.Popen([*cli, "leads", "convert", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert {o[0].strip() for o in outs} == {"lead 1: customer 1"}


def test_hook_crm_deal_closed(make_crm):
    rec = Recorder()
    crm = make_crm(plugins={"rec": rec})
    [res] = crm.capture([json_capture({"email": "a@x.test"})])
    deal_id = crm.create_deal(res.lead_ids[0], amount=900.0)
    crm.move_deal(deal_id, "proposal")
    crm.move_deal(deal_id, "won")
    [(_, events)] = [c for c in rec.calls if c[0] == "deal_closed"]
    assert events[0].type == "deal_won" and events[0].detail["amount"] == 900.0


def test_hook_crm_reports_run_from_the_cli_with_safe_csv(tmp_path, monkeypatch):
    from corecrm import cli
    from corecrm.plugins import PluginManager

    class Rep:
        @hookimpl
        def crm_reports(self):
            def run(crm, workspace, params):
                return ReportTable("Leads by source", ["source", "leads"], [["=HYPERLINK(1)", 3], ["web", -2]], notes=["hand-made"])

            def chart(table, path):
                open(path, "w").write("<svg xmlns='http://www.w3.org/2000/svg'/>")

            return [Report("sources", "Leads by source", run, chart=chart, params=[click.Option(["--top"], type=int)])]

    real = PluginManager.load
    monkeypatch.setattr(PluginManager, "load", lambda self, entry_points=True, extra=None: real(self, entry_points=entry_points, extra={"rep": Rep()}))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli.main, ["report", "--list"])
    assert r.exit_code == 0 and "sources" in r.output and "rep" in r.output
    r = CliRunner().invoke(cli.main, ["report", "sources", "--csv", "--top", "3"])
    rows = list(csv.reader(io.StringIO(r.output)))
    assert rows == [["source", "leads"], ["'=HYPERLINK(1)", "3"], ["web", "-2"]]
    r = CliRunner().invoke(cli.main, ["report", "sources", "--json", "--chart", str(tmp_path / "c.svg")])
    assert json.loads(r.stdout)["notes"] == ["hand-made"] and (tmp_path / "c.svg").exists()


def test_hook_crm_config_warnings_do_not_fail_the_check(make_crm):
    class Picky:
        @hookimpl
        def crm_config_warnings(self, settings, workspace):
            return [f"rule 2 is shadowed in {workspace}"]

    crm = make_crm({"plugins": {"enabled": ["capture_json"]}, "workspaces": {"acme": {}}}, plugins={"picky": Picky()})
    got = [(p, w) for ws in ("default", "acme") for p, ws_warn in crm.plugins.each("crm_config_warnings", workspace=ws) for w in ws_warn]
    assert got == [("picky", "rule 2 is shadowed in default"), ("picky", "rule 2 is shadowed in acme")]
