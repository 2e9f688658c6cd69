"""Fixtures and helpers shared by the capture_web tests.

Test modules import the fixtures they use (``from cw_helpers import web_crm, serve``):
a ``conftest.py`` here would shadow the suite's top-level ``conftest`` module,
which other tests import by name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import sqlalchemy as sa

DATA = Path(__file__).resolve().parent.parent / "data" / "capture_web"


def require_server(what: str) -> None:
    """Skip (locally) or fail (CI, ``CORECRM_REQUIRE_SERVERS=1``) when a server binary is missing."""
    import os

    import pytest

    if os.environ.get("CORECRM_REQUIRE_SERVERS", "") not in ("", "0"):
        pytest.fail(f"{what} is required (CORECRM_REQUIRE_SERVERS=1) but not available")
    pytest.skip(f"{what} not available")


#: Servers the ``serve`` fixture started (their /health tells how many captures are still being processed).
SERVERS: list[Any] = []


def wait_processed(crm: Any, timeout: float = 20.0) -> None:
    """Wait until the servers' background pipelines (observers included) have finished every capture."""
    import httpx

    from corecrm.storage import schema

    deadline = time.time() + timeout
    while True:
        with crm.engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(schema.captures).where(schema.captures.c.status == "new")).scalar_one()
        n += sum(httpx.get(f"{srv.url}/health").json()["processing"] for srv in SERVERS)
        if n == 0:
            return
        if time.time() > deadline:
            raise AssertionError(f"{n} capture(s) still unprocessed after {timeout} s")
        time.sleep(0.02)


def lead_rows(crm: Any) -> list[dict[str, Any]]:
    from corecrm.storage import schema

    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(schema.leads).order_by(schema.leads.c.id)).mappings()]


def capture_rows(crm: Any) -> list[dict[str, Any]]:
    from corecrm.storage import schema

    with crm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(schema.captures).order_by(schema.captures.c.id)).mappings()]


FORMS: dict[str, Any] = {
    "contact": {
        "title": "Talk to sales",
        "fields": {"first_name": "first_name", "last_name": "last_name", "email": "email", "company": "company", "message": "note"},
        "required": ["email", "last_name"],
        "source": "website",
        "campaign": "spring-launch",
        "consent": {"text": "Send me product news by email", "channel": "email", "purpose": "marketing"},
        "min_fill_seconds": 0,
    },
    "vendor": {
        "fields": {"fname": "first_name", "lname": "last_name", "mail": "email", "tel": "phone", "zip": "postal_code"},
        "required": ["lname"],
        "source": "leadvendor",
        "require_key": True,
    },
}


def web_config(forms: dict[str, Any] | None = None, targets: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"forms": forms if forms is not None else FORMS, "secret": "test-form-secret", **settings}
    if targets:
        body["targets"] = targets
    return {"plugins": {"enabled": ["capture_json", "capture_web"], "capture_web": body}}


@pytest.fixture
def web_crm(make_crm: Callable[..., Any]) -> Callable[..., Any]:
    """``web_crm(forms=..., targets=..., plugins=..., database=..., **settings)``."""

    def factory(*, forms: dict[str, Any] | None = None, targets: dict[str, Any] | None = None, plugins: dict[str, Any] | None = None, database: str | None = None, **settings: Any) -> Any:
        return make_crm(web_config(forms, targets, **settings), plugins=plugins, database=database)

    return factory


@pytest.fixture
def serve() -> Iterator[Callable[[Any], Any]]:
    """``serve(crm)`` -> a running :class:`ServerThread` (stopped after the test)."""
    from corecrm_plugins.capture_web.cli import build_app
    from corecrm_plugins.capture_web.server import ServerThread

    started: list[Any] = []

    def factory(crm: Any) -> Any:
        srv = ServerThread(build_app(crm, recover=False)).start()
        started.append(srv)
        SERVERS.append(srv)
        return srv

    yield factory
    for srv in started:
        SERVERS.remove(srv)
        srv.stop()
