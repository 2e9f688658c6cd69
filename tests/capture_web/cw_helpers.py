"""Helpers shared by the capture_web tests (imported as ``cw_helpers``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
