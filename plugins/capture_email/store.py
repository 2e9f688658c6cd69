"""The plugin's own table: which Message-IDs were captured, from where.

The core already refuses a second capture of the same bytes (content hash).
A message can however come back with different bytes: delivered to two
watched folders, or re-sent by a server that adds a ``Received`` line. This
table lets the mail sources recognise it by Message-ID and store it as a
*skipped* capture (``duplicate: …``) instead of a second lead. One bulk
select and one bulk insert per polled batch; every query filters by workspace.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

metadata = sa.MetaData()

messages = sa.Table(
    "capture_email_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("capture_id", sa.Integer, nullable=False),
    #: ``imap:<source>``, ``mbox:<file>``, ``maildir:<folder>``
    sa.Column("origin", sa.Text),
    sa.Column("status", sa.String(16)),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_capture_email_messages_ws_mid", "workspace", "message_id"),
)


def norm_message_id(value: str | None) -> str | None:
    """A Message-ID as a lookup key: trimmed, angle brackets kept, case kept (RFC 5322 ids are case-sensitive)."""
    if not value:
        return None
    value = value.strip()
    if len(value) < 5 or "@" not in value:
        return None  # not unique enough to trust for de-duplication
    return value[:300]


def known(conn: sa.Connection, workspace: str, message_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{message_id: {capture_id, content_hash}}`` for the ids already recorded (first capture wins)."""
    ids = sorted({m for m in message_ids if m})
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = conn.execute(
            sa.select(messages.c.message_id, messages.c.capture_id, messages.c.content_hash)
            .where(messages.c.workspace == workspace, messages.c.message_id.in_(chunk))
            .order_by(messages.c.id)
        ).all()
        for r in rows:
            out.setdefault(r.message_id, {"capture_id": r.capture_id, "content_hash": r.content_hash})
    return out


def record(conn: sa.Connection, workspace: str, rows: Sequence[dict[str, Any]], now: dt.datetime) -> None:
    """Remember captured messages (one executemany)."""
    if rows:
        conn.execute(messages.insert(), [{"workspace": workspace, "seen_at": now, **r} for r in rows])
