"""The server's view of a :class:`corecrm.app.Crm`: commit a raw capture, then process it.

The split matters for the HTTP client: the raw body is committed (and its id
known) before the response is sent; the intake pipeline runs afterwards. A
server that dies in between leaves the capture with status ``new``;
:func:`recover_pending` processes such captures when the server starts
again, so nothing that was acknowledged is lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from corecrm.records import RawCapture
from corecrm_plugins.capture_web import mapping, tables

log = logging.getLogger("corecrm.capture_web.backend")


class CrmBackend:
    """:class:`~corecrm_plugins.capture_web.server.Backend` for a real CRM."""

    def __init__(self, crm: Any) -> None:
        self.crm = crm
        self.engine: sa.Engine = crm.engine
        self.default_workspace: str = crm.workspace
        tables.ensure(self.engine)

    def now(self) -> dt.datetime:
        return self.crm.now()

    def store(self, raws: list[RawCapture], workspace: str) -> list[tuple[int, bool]]:
        return [(res.capture_id, not res.duplicate) for res in self.crm.store_captures(raws, workspace=workspace)]

    def process(self, raws: list[RawCapture], workspace: str) -> None:
        self.crm.process_captures(raws, workspace=workspace)


def recover_pending(backend: CrmBackend, workspace: str) -> int:
    """Process web captures that were committed but never processed (the server stopped in between)."""
    from corecrm.storage import schema

    c = schema.captures
    with backend.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c).where(c.c.workspace == workspace, c.c.status == "new", c.c.format == mapping.FORMAT_NAME).order_by(c.c.id)
        ).mappings().all()
    raws = []
    for row in rows:
        raws.append(RawCapture(
            payload=row["payload"],
            origin=row["origin"] or "",
            content_type=row["content_type"],
            meta=dict(row["meta"] or {}),
            format=row["format"],
            id=row["id"],
            content_hash=row["content_hash"],
        ))
    for start in range(0, len(raws), 500):
        backend.process(raws[start : start + 500], workspace)
    return len(rows)
