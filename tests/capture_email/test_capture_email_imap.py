"""IMAP polling against a real Dovecot on loopback, including a crash between commit and flag.

The fixture starts Debian's ``dovecot`` (package ``dovecot-imapd``) with a
throwaway configuration in a temporary directory. Without the binary the
tests skip, unless ``CORECRM_REQUIRE_SERVERS=1`` (CI), where they fail.
"""

from __future__ import annotations

import imaplib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest
import sqlalchemy as sa
from conftest import require_server

from corecrm.storage import schema
from corecrm_plugins.capture_email.imap import FAULT_ENV, FAULT_EXIT_CODE, KEYWORD, ImapSource

DATA = Path(__file__).resolve().parent.parent / "data" / "capture_email"
PASSWORD = "s3cret-test"
#: One mailbox per test on a shared server (the passwd file lists them all).
USERS = ("crash_sqlite", "crash_postgres", "watch", "badpw")


@attrs.define
class Dovecot:
    host: str
    port: int
    dir: Path
    user: str = ""

    def as_user(self, user: str) -> Dovecot:
        return Dovecot(self.host, self.port, self.dir, user)

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(self.user, PASSWORD)
        return conn

    def append(self, payload: bytes, folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            typ, data = conn.append(folder, None, None, payload)
            assert typ == "OK", data
        finally:
            conn.logout()

    def folder(self, folder: str = "INBOX") -> list[tuple[int, str]]:
        """``(uid, flags)`` of every message in a folder."""
        conn = self.client()
        try:
            typ, _ = conn.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            out = []
            for item in data:
                if isinstance(item, bytes) and b"FLAGS" in item:
                    uid = int(item.split(b"UID ")[1].split()[0].rstrip(b")"))
                    out.append((uid, item.split(b"FLAGS (")[1].split(b")")[0].decode()))
            return out
        finally:
            conn.logout()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    if binary is None:
        require_server("dovecot (Debian package dovecot-imapd)")
    if os.geteuid() != 0:
        require_server("dovecot (the test server is started as root, mail as user nobody)")
    d = Path(tempfile.mkdtemp(prefix="corecrm-dovecot-"))
    d.chmod(0o755)
    for sub in ("run", "state", "mail"):
        (d / sub).mkdir()
    shutil.chown(d / "mail", "nobody", "nogroup")
    (d / "passwd").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}\n" for u in USERS))
    port = _free_port()
    conf = (DATA / "dovecot-test.conf.in").read_text().replace("$DIR", str(d)).replace("$PORT", str(port))
    (d / "dovecot.conf").write_text(conf)
    # dovecot daemonises; its children inherit stdout/stderr, so never pipe them
    # (a pipe would stay open for the server's lifetime): write to a file.
    with open(d / "start.log", "wb") as out:
        rc = subprocess.call([binary, "-c", str(d / "dovecot.conf")], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if rc != 0:
        msg = (d / "start.log").read_text(errors="replace").strip()
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"dovecot did not start (exit {rc}): {msg}")
    pid_file = d / "run" / "master.pid"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    log = (d / "dovecot.log").read_text() if (d / "dovecot.log").exists() else ""
                    pytest.fail(f"dovecot is not listening on 127.0.0.1:{port}: {log[-2000:]}")
                time.sleep(0.1)
        yield Dovecot("127.0.0.1", port, d)
    finally:
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_server: Dovecot, request: pytest.FixtureRequest) -> Dovecot:
    """The shared server, logged in as the mailbox reserved for this test."""
    name = request.node.name
    if name.startswith("test_poll_crash"):
        user = "crash_postgres" if "[postgres]" in name else "crash_sqlite"
    else:
        user = "watch" if "watch" in name else "badpw"
    return dovecot_server.as_user(user)


def _config(tmp_path: Path, db_url: str, port: int, user: str) -> Path:
    cfg = tmp_path / "corecrm.toml"
    cfg.write_text(
        f"""[crm]
database = "{db_url}"

[plugins]
enabled = ["capture_email"]

[plugins.capture_email.sources.sales]
host = "127.0.0.1"
port = {port}
tls = false
user = "{user}"
password = {{ env = "TEST_IMAP_PASSWORD" }}
folder = "INBOX"
processed_folder = "Processed"
rejected_folder = "Rejected"
batch_size = 3
"""
    )
    return cfg


def _poll_in_process(cfg: Path, *args: str, password: str = PASSWORD) -> Any:
    """``corecrm mail poll`` in this process (what the crash test's second and later polls use)."""
    from click.testing import CliRunner

    from corecrm.cli import main

    return CliRunner().invoke(main, ["--config", str(cfg), "mail", "poll", *args], env={"TEST_IMAP_PASSWORD": password, FAULT_ENV: None}, catch_exceptions=False)


def _run_poller(cfg: Path, *args: str, fault: bool = False) -> subprocess.CompletedProcess[str]:
    """``corecrm mail poll`` in a child process, so the fault injection can kill it."""
    env = dict(os.environ, TEST_IMAP_PASSWORD=PASSWORD)
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = "after_commit"
    code = "import sys; from corecrm.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(cfg), "mail", "poll", *args], capture_output=True, text=True, env=env, timeout=120)


def _leads(db_url: str) -> list[str]:
    eng = sa.create_engine(db_url)
    try:
        with eng.connect() as conn:
            return sorted(r[0] or "" for r in conn.execute(sa.select(schema.leads.c.email)))
    finally:
        eng.dispose()


SEED = [
    "odoo_crm_customer_request.eml",
    "cf7_wordpress.synthetic.eml",
    "german_form.synthetic.eml",
    "html_table.synthetic.eml",
    "adf_attachment.synthetic.eml",
    "cpython_msg_16_bounce_dsn.eml",
    "autoreply_ooo.synthetic.eml",
]
EXPECTED = sorted(["info@customer.com", "jane.doe@example.net", "j.mueller@example.de", "ana.silva@example.pt", "maria.lopez@example.com"])


def test_poll_crash_between_commit_and_flag_loses_nothing_and_duplicates_nothing(dovecot: Dovecot, tmp_path: Path, db_url: str) -> None:
    for name in SEED:
        dovecot.append((DATA / name).read_bytes())
    cfg = _config(tmp_path, db_url, dovecot.port, dovecot.user)

    # 1. The poller dies right after the captures are committed, before any STORE/MOVE.
    crashed = _run_poller(cfg, fault=True)
    assert crashed.returncode == FAULT_EXIT_CODE, crashed.stderr
    first_batch = _leads(db_url)
    assert first_batch and set(first_batch) <= set(EXPECTED)  # the first batch (3 messages) was committed
    inbox = dovecot.folder("INBOX")
    assert len(inbox) == len(SEED) and not any(KEYWORD in flags or "\\Seen" in flags for _uid, flags in inbox)

    # 2. Poll again: the committed messages are recognised, the rest captured; all marked and moved.
    ok = _poll_in_process(cfg)
    assert ok.exit_code == 0, ok.output
    assert "mail source sales: fetched 7" in ok.output
    assert _leads(db_url) == EXPECTED
    assert dovecot.folder("INBOX") == []
    processed, rejected = dovecot.folder("Processed"), dovecot.folder("Rejected")
    assert len(processed) == 5 and len(rejected) == 2
    assert all(KEYWORD in flags and "\\Seen" in flags for _uid, flags in processed + rejected)

    # 3. Nothing new: polling again fetches nothing and creates nothing (also through the core's `sources poll`).
    again = _poll_in_process(cfg)
    assert "fetched 0" in again.output and _leads(db_url) == EXPECTED
    from click.testing import CliRunner

    from corecrm.cli import main

    core = CliRunner().invoke(main, ["--config", str(cfg), "sources", "poll", "sales"], env={"TEST_IMAP_PASSWORD": PASSWORD})
    assert core.exit_code == 0 and "sales: 0 new captures" in core.output, core.output

    # 4. A new lead, plus a re-sent copy of a captured message (same Message-ID, different bytes).
    dovecot.append((DATA / "realtor_names.synthetic.eml").read_bytes())
    resent = (DATA / "cf7_wordpress.synthetic.eml").read_bytes().replace(b"Subject:", b"Received: from relay (re-sent)\nSubject:", 1)
    dovecot.append(resent)
    out = _poll_in_process(cfg, "--source", "sales", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["statuses"] == {"processed": 1, "skipped": 1}
    assert _leads(db_url) == sorted(EXPECTED + ["priya.patel@example.com"])
    eng = sa.create_engine(db_url)
    with eng.connect() as conn:
        reasons = [r[0] for r in conn.execute(sa.select(schema.captures.c.reason).where(schema.captures.c.status == "skipped"))]
        origins = [r[0] for r in conn.execute(sa.select(schema.captures.c.origin))]
    eng.dispose()
    assert sum(r.startswith("duplicate: Message-ID <cf7-0001@shop.example.com>") for r in reasons) == 1
    assert sum(r.startswith("bounce:") for r in reasons) == 1 and sum(r.startswith("auto-reply:") for r in reasons) == 1
    assert all(o.startswith("imap:sales/") for o in origins)
    assert len(origins) == len(SEED) + 2  # every message stored exactly once


def test_watch_wakes_up_on_new_mail_with_idle(dovecot: Dovecot, make_crm, monkeypatch) -> None:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    crm = make_crm({"plugins": {"enabled": ["capture_email"]}})
    src = ImapSource("sales", {"host": dovecot.host, "port": dovecot.port, "tls": False, "user": dovecot.user, "password_env": "TEST_IMAP_PASSWORD"})
    conn = src.connect()  # capabilities are those announced after login (MOVE, UIDPLUS…)
    assert {"MOVE", "UIDPLUS", "IDLE"} <= set(conn.capabilities)
    conn.logout()
    dovecot.append((DATA / "odoo_crm_customer_request.eml").read_bytes())
    results = []
    wakes = []
    real_wait = src.wait_for_mail
    monkeypatch.setattr(src, "wait_for_mail", lambda timeout: wakes.append(real_wait(timeout)))

    def deliver_later() -> None:
        time.sleep(1.0)
        dovecot.append((DATA / "german_form.synthetic.eml").read_bytes())

    t = threading.Thread(target=deliver_later)
    t.start()
    src.watch(crm, "default", interval=30, rounds=2, on_result=results.append)
    t.join()
    assert [r.fetched for r in results] == [1, 1]
    assert wakes == ["new mail (IDLE)"]  # woken by the server, not by the 30 s fallback
    assert sorted(ld.email for ld in crm.leads()) == ["info@customer.com", "j.mueller@example.de"]
    # Without a folder to move to, processed messages stay in INBOX, marked.
    assert all(KEYWORD in flags for _uid, flags in dovecot.folder("INBOX"))


def test_wrong_password_is_one_clear_error(dovecot: Dovecot, tmp_path: Path, sqlite_url: str) -> None:
    cfg = _config(tmp_path, sqlite_url, dovecot.port, dovecot.user)
    res = _poll_in_process(cfg, password="wrong-pw")
    assert res.exit_code == 1
    assert "mail source sales: cannot log in to 127.0.0.1" in res.output
    assert "wrong-pw" not in res.output
