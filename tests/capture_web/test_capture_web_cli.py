"""The commands: keys create/rotate/list/revoke, forms, deliveries list/run/retry; recovery; the consent ledger hook-up."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from corecrm.cli import main
from corecrm.records import RawCapture
from corecrm_plugins.capture_web import keys, mapping
from cw_helpers import FORMS, capture_rows, lead_rows, serve, wait_processed, web_crm  # noqa: F401 (fixtures)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "corecrm.toml"
    cfg.write_text(
        f"""
[crm]
database = "sqlite:///{tmp_path / 'cli.db'}"

[plugins]
enabled = ["capture_json", "capture_web"]

[plugins.capture_web]
secret = "cli-secret"

[plugins.capture_web.forms.vendor]
fields = {{ fname = "first_name", lname = "last_name", mail = "email" }}
required = ["lname"]
require_key = true
{extra}
"""
    )
    return cfg


def run(cfg: Path, *args: str) -> str:
    res = CliRunner().invoke(main, ["--config", str(cfg), *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_keys_create_rotate_list_revoke(tmp_path):
    cfg = write_config(tmp_path)
    out = run(cfg, "web", "keys", "create", "vendor")
    key1 = out.strip().splitlines()[-1]
    assert key1.startswith("cwk_")
    from corecrm.app import Crm

    crm = Crm.open(cfg)
    assert keys.verify(crm.engine, "default", "vendor", key1)
    key2 = run(cfg, "web", "keys", "rotate", "vendor").strip().splitlines()[-1]
    assert not keys.verify(crm.engine, "default", "vendor", key1)
    kid2 = keys.verify(crm.engine, "default", "vendor", key2)
    assert kid2
    listing = run(cfg, "web", "keys", "list")
    assert listing.count("revoked") >= 1 and "live" in listing and key2 not in listing
    run(cfg, "web", "keys", "revoke", kid2)
    assert not keys.verify(crm.engine, "default", "vendor", key2)
    res = CliRunner().invoke(main, ["--config", str(cfg), "web", "keys", "create", "nope"])
    assert res.exit_code != 0 and "no form named 'nope'" in res.output
    assert "vendor" in run(cfg, "web", "forms")
    crm.close()


def test_bad_config_is_one_line_error_with_key_path(tmp_path):
    cfg = write_config(tmp_path, '\n[plugins.capture_web.targets.crm2]\nkind = "webhook"\nurl = "ftp://x"\nevents = ["captured"]\nsecret = "s"\n')
    res = CliRunner().invoke(main, ["--config", str(cfg), "deliveries", "list"])
    assert res.exit_code != 0
    assert "plugins.capture_web.targets.crm2.url" in res.output


def test_deliveries_list_and_run(tmp_path):
    import http.server
    import threading

    got: list[bytes] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/in"
        cfg = write_config(tmp_path, f'\n[plugins.capture_web.targets.crm2]\nkind = "webhook"\nurl = "{url}"\nsecret = "s3"\nevents = ["captured"]\n')
        from corecrm.app import Crm

        crm = Crm.open(cfg)
        raw = RawCapture(payload=b'{"lname": "Cli", "mail": "cli@example.com"}', origin="http:vendor", content_type="application/json", meta={mapping.META_KEY: {"form": "vendor", "fields": {"lname": "last_name", "mail": "email"}}}, format="web_form")
        crm.capture(raw)
        crm.close()
        out = json.loads(run(cfg, "deliveries", "list", "--json"))
        assert [(d["target"], d["status"], d["event_type"]) for d in out] == [("crm2", "pending", "captured")]
        assert "1 delivered" in run(cfg, "deliveries", "run")
        assert "0 delivered" in run(cfg, "deliveries", "run")
        assert len(got) == 1 and json.loads(got[0])["lead"]["last_name"] == "Cli"
        assert "delivered" in run(cfg, "deliveries", "list", "--status", "delivered")
        res = CliRunner().invoke(main, ["--config", str(cfg), "deliveries", "retry", "1"])
        assert res.exit_code != 0 and "no failed delivery 1" in res.output
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_captures_left_unprocessed_are_processed_when_the_server_starts(web_crm):
    """The raw body was committed, then the server died before the pipeline ran: nothing is lost."""
    from corecrm_plugins.capture_web.backend import CrmBackend, recover_pending

    crm = web_crm()
    raw = RawCapture(payload=b'{"last_name": "Crash", "email": "c@example.com"}', origin="http:contact", content_type="application/json", meta={mapping.META_KEY: {"form": "contact", "fields": FORMS["contact"]["fields"]}}, format="web_form")
    crm.store_captures([raw])
    assert capture_rows(crm)[0]["status"] == "new" and lead_rows(crm) == []
    assert recover_pending(CrmBackend(crm), "default") == 1
    assert capture_rows(crm)[0]["status"] == "processed" and lead_rows(crm)[0]["last_name"] == "Crash"
    assert recover_pending(CrmBackend(crm), "default") == 0


def test_consent_goes_to_the_nurture_ledger_when_present(web_crm, serve, monkeypatch):
    """With a nurture_sequences plugin that has consent.record_consents, web-form consent is handed to it."""
    calls: list[tuple[str, list[dict]]] = []
    pkg = types.ModuleType("corecrm_plugins.nurture_sequences")
    mod = types.ModuleType("corecrm_plugins.nurture_sequences.consent")
    mod.record_consents = lambda crm, workspace, entries: calls.append((workspace, entries))  # type: ignore[attr-defined]
    pkg.consent = mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "corecrm_plugins.nurture_sequences", pkg)
    monkeypatch.setitem(sys.modules, "corecrm_plugins.nurture_sequences.consent", mod)

    class Nurture:  # stands in for the installed plugin: only its name matters here
        pass

    crm = web_crm(plugins={"nurture_sequences": Nurture()})
    srv = serve(crm)
    httpx.post(f"{srv.url}/capture/contact", data={"last_name": "Led", "email": "led@example.com", "_cw_consent": "yes"})
    httpx.post(f"{srv.url}/capture/contact", data={"last_name": "NoConsent", "email": "nc@example.com"})
    wait_processed(crm)
    ((ws, entries),) = calls
    (entry,) = entries
    assert ws == "default" and entry["channel"] == "email" and entry["status"] == "granted"
    assert entry["lead_id"] == lead_rows(crm)[0]["id"] and entry["proof"]["form"] == "contact"


def test_without_nurture_consent_stays_on_the_lead(web_crm, serve):
    """nurture_sequences installed (its record_consents importable) but not enabled: nothing is handed to its ledger."""
    from corecrm.context import HookContext
    from corecrm.models import Event
    from corecrm_plugins.capture_web import consent
    from corecrm_plugins.nurture_sequences.consent import record_consents

    assert consent.ledger() is record_consents
    crm = web_crm()
    assert not crm.plugins.is_loaded("nurture_sequences")
    srv = serve(crm)
    httpx.post(f"{srv.url}/capture/contact", data={"last_name": "Solo", "email": "solo@example.com", "_cw_consent": "on"})
    wait_processed(crm)
    (lead,) = lead_rows(crm)
    assert lead["consent"]["email"]["status"] == "granted"
    ctx = HookContext(crm=crm, workspace="default", now=crm.now(), mode="intake")
    assert consent.forward_to_ledger([Event(type="captured", at=crm.now(), lead_id=lead["id"])], ctx) == 0


def test_plugin_tables_are_created_by_init(tmp_path):
    cfg = write_config(tmp_path)
    run(cfg, "db", "upgrade") if "upgrade" in run(cfg, "db", "--help") else None
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    names = set(sa.inspect(eng).get_table_names())
    assert {"capture_web_keys", "capture_web_submissions", "capture_web_deliveries"} <= names
    eng.dispose()


@pytest.mark.parametrize("flag", ["--help"])
def test_serve_help(tmp_path, flag):
    cfg = write_config(tmp_path)
    out = run(cfg, "serve", flag)
    assert "--host" in out and "--port" in out


def test_corecrm_serve_subprocess_end_to_end(tmp_path):
    """`corecrm serve` as a real process: health, a keyed vendor post, the lead in the database."""
    import os
    import socket
    import subprocess
    import time

    cfg = write_config(tmp_path)
    key = run(cfg, "web", "keys", "create", "vendor").strip().splitlines()[-1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("corecrm")
    log = open(tmp_path / "server.log", "wb")  # not a pipe: an unread pipe would fill up and stall the server
    proc = subprocess.Popen([str(exe), "--config", str(cfg), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-deliveries"], stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        r = httpx.post(f"{url}/capture/vendor", json={"fname": "Sub", "lname": "Process", "mail": "sp@example.com"}, headers={"X-Api-Key": key})
        assert r.status_code == 201, r.text
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'cli.db'}")
        deadline = time.time() + 20
        while True:
            with eng.connect() as conn:
                rows = conn.exec_driver_sql("SELECT last_name, source FROM leads").all()
            if rows or time.time() > deadline:
                break
            time.sleep(0.05)
        eng.dispose()
        assert rows == [("Process", None)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
