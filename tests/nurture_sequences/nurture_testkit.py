"""Test harness for the nurture plugins: a CRM stand-in, leads written straight into
``leads``, a controllable clock, and a real SMTP server (aiosmtpd) on loopback.

Imported by the test modules (fixtures come in by ``from nurture_testkit import …``).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import socket
import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import _pg_database, require_server  # noqa: F401 (re-exported to the test modules)

from corecrm.config import Config
from corecrm.context import HookContext
from corecrm.plugins import PluginManager
from corecrm.storage import schema
from corecrm.app import Crm

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)  # a Monday
SECRET_VAR = "CORECRM_TEST_NURTURE_SECRET"

# The shared server helpers of tests/conftest.py: skip locally, fail in CI when a server is missing.
pg_database = _pg_database


NURTURE_PLUGINS = ("capture_json", "nurture_sequences", "channel_email")


class HarnessCrm(Crm):
    """The real :class:`corecrm.app.Crm` with a settable clock and a few test helpers."""

    def __init__(self, url: str, plugins_cfg: dict[str, Any], workspace: str | None = None) -> None:
        os.environ.setdefault(SECRET_VAR, "test-secret-not-for-production")
        ws = workspace or f"t{uuid.uuid4().hex[:10]}"
        self.clock = T0
        # Only the plugins under test (and JSON capture), so other bundled plugins' intake steps do not change what they see.
        plugins_cfg = {"enabled": list(NURTURE_PLUGINS), **plugins_cfg}
        cfg = Config.from_dict({"crm": {"default_workspace": ws}, "plugins": plugins_cfg})
        super().__init__(cfg, database=url, workspace=ws, clock=lambda: self.clock)
        self.ensure_schema()

    def hook_ctx(self, mode: str = "event") -> HookContext:
        return HookContext(crm=self, workspace=self.workspace, now=self.clock, mode=mode)  # type: ignore[arg-type]

    def add_leads(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert leads straight into the core table (as intake would), returning their ids."""
        ids = []
        with self.engine.begin() as conn:
            for r in rows:
                row = {"workspace": self.workspace, "stage": "nurturing", "status": "open", "created_at": self.clock, "updated_at": self.clock, **r}
                if row.get("email"):
                    row.setdefault("email_norm", row["email"].lower())
                ids.append(conn.execute(schema.leads.insert().values(**row).returning(schema.leads.c.id)).scalar_one())
        return ids

    def set_stage_silently(self, lead_id: int, stage: str) -> None:
        """Change the stage without telling the plugins (a missed event)."""
        with self.engine.begin() as conn:
            conn.execute(schema.leads.update().where(schema.leads.c.id == lead_id).values(stage=stage, updated_at=self.clock))

    def events_of(self, lead_id: int | None = None, type: str | None = None) -> list[dict[str, Any]]:
        ev = schema.events.c
        q = sa.select(ev.lead_id, ev.type, ev.at, ev.plugin, ev.detail).where(ev.workspace == self.workspace).order_by(ev.id)
        if lead_id is not None:
            q = q.where(ev.lead_id == lead_id)
        if type is not None:
            q = q.where(ev.type == type)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]


def nurture_settings(**over: Any) -> dict[str, Any]:
    base = {
        "secret": {"env": SECRET_VAR},
        "unsubscribe_url": "https://crm.example.com/u/{token}",
        "retry_backoff": "5m",
        "max_attempts": 3,
        "sequences": {"trial": three_step_sequence()},
    }
    base.update(over)
    return base


def three_step_sequence(**over: Any) -> dict[str, Any]:
    seq = {
        "purpose": "marketing",
        "exit_on": ["qualified", "converted", "unsubscribed", "disqualified", "replied"],
        "steps": [
            {"name": "welcome", "delay": "0m", "subject": "Welcome {{ lead.first_name }}",
             "text": "Hi {{ lead.first_name }},\nwelcome.\nUnsubscribe: {{ unsubscribe_url }}\n",
             "html": "<p>Hi {{ lead.first_name }}</p><a href=\"{{ unsubscribe_url }}\">unsubscribe</a>"},
            {"name": "tips", "delay": "2d", "subject": "Tips for {{ lead.company or 'you' }}", "text": "Step {{ step.number }} of {{ sequence.steps }}"},
            {"name": "last_call", "delay": "3d", "at": "09:00", "subject": "Your trial ends soon", "text": "Last call, {{ lead.first_name }}."},
        ],
    }  # fmt: skip
    seq.update(over)
    return seq


def email_settings(port: int, **over: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "from_address": "news@shop.example", "from_name": "Shop", "timeout": 10.0, **over}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: Any, tmp_path: Any) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        yield from pg_database()


# --------------------------------------------------------------------------- SMTP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the loopback SMTP server received (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[Any] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        #: recipient address -> SMTP reply to give at RCPT (e.g. "550 5.1.1 no such user")
        self.refuse: dict[str, str] = {}

    def parsed(self) -> list[Any]:
        with self.lock:
            return list(self.messages)

    def to(self, address: str) -> list[Any]:
        return [m for m in self.parsed() if address.lower() in str(m["To"]).lower()]


class _Handler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        reply = self.inbox.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.inbox.lock:
            self.inbox.messages.append(msg)
            self.inbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"


def start_smtp(**controller_kw: Any) -> tuple[Any, Inbox, int]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    ctl = Controller(_Handler(inbox), hostname="127.0.0.1", port=port, **controller_kw)
    ctl.start()
    return ctl, inbox, port


@pytest.fixture
def smtp() -> Any:
    ctl, inbox, port = start_smtp()
    inbox.port = port  # type: ignore[attr-defined]
    yield inbox
    ctl.stop()


@pytest.fixture
def nurture_crm(backend_url: str, smtp: Inbox) -> Any:
    made: list[HarnessCrm] = []

    def _make(nurture: dict[str, Any] | None = None, email_over: dict[str, Any] | None = None) -> HarnessCrm:
        cfg = {"nurture_sequences": nurture if nurture is not None else nurture_settings(),
               "channel_email": email_settings(smtp.port, **(email_over or {}))}  # type: ignore[attr-defined]  # fmt: skip
        crm = HarnessCrm(backend_url, cfg)
        made.append(crm)
        return crm

    yield _make
    for c in made:
        c.close()


def consent_in(crm: HarnessCrm, lead_ids: list[int], *, address: str | None = None, purpose: str = "marketing", source: str = "form") -> None:
    from corecrm_plugins.nurture_sequences import consent
    from corecrm_plugins.nurture_sequences.store import load_leads

    with crm.engine.begin() as conn:
        leads = load_leads(conn, crm.workspace, lead_ids)
        consent.record(conn, crm.workspace, [consent.ConsentEntry(i, "email", purpose, "opted_in", crm.clock, source, address or leads[i].email,
                                                                   {"form": "trial-signup"}) for i in lead_ids], recorded_at=crm.clock)  # fmt: skip


def enrol(crm: HarnessCrm, lead_ids: list[int], sequence: str = "trial") -> None:
    from corecrm_plugins.nurture_sequences import store
    from corecrm_plugins.nurture_sequences.actions import runtime

    rt = runtime(crm)
    with crm.engine.begin() as conn:
        store.enrol(conn, crm.workspace, rt.cfg, [(i, sequence, "test", "test") for i in lead_ids], now=crm.clock)


def run(crm: HarnessCrm, at: dt.datetime | None = None) -> Any:
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    if at is not None:
        crm.clock = at
    return run_once(runtime(crm), crm.clock)


def worker_process(url: str, plugins_cfg: dict[str, Any], workspace: str, now_iso: str, start: Any, out: Any) -> None:
    """A scheduler in its own process (for the concurrency tests)."""
    from corecrm_plugins.nurture_sequences.actions import runtime
    from corecrm_plugins.nurture_sequences.scheduler import run_once

    crm = HarnessCrm(url, plugins_cfg, workspace=workspace)
    rt = runtime(crm)
    rt.worker = f"worker-{os.getpid()}"
    start.wait(30)
    stats = run_once(rt, dt.datetime.fromisoformat(now_iso))
    out.put(stats.to_json())
    crm.close()
