"""Per-form API keys: created, rotated and revoked by CLI, stored only as digests.

A key looks like ``cwk_<key_id>_<secret>``. ``key_id`` (public, 12 hex
characters) finds the row; the SHA-256 of the whole key is compared in
constant time. Rotation creates a new key and revokes the form's older ones
in the same transaction, so there is never a moment with no valid key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

import attrs
import sqlalchemy as sa

from corecrm_plugins.capture_web import tables

PREFIX = "cwk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """Return ``(key_id, clear key)``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(24)}"


@attrs.define(slots=True, frozen=True)
class KeyInfo:
    key_id: str
    form: str
    workspace: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


def create(engine: sa.Engine, workspace: str, form: str, now: dt.datetime, *, revoke_others: bool = False) -> tuple[str, str]:
    """Create a key for ``form``; with ``revoke_others`` (rotation) revoke the older ones. Returns (key_id, key)."""
    key_id, key = new_key()
    with engine.begin() as conn:
        if revoke_others:
            conn.execute(
                sa.update(tables.keys)
                .where(tables.keys.c.workspace == workspace, tables.keys.c.form == form, tables.keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        conn.execute(sa.insert(tables.keys).values(workspace=workspace, form=form, key_id=key_id, key_hash=digest(key), created_at=now))
    return key_id, key


def revoke(engine: sa.Engine, workspace: str, key_id: str, now: dt.datetime) -> bool:
    with engine.begin() as conn:
        res = conn.execute(
            sa.update(tables.keys)
            .where(tables.keys.c.workspace == workspace, tables.keys.c.key_id == key_id, tables.keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return res.rowcount > 0


def list_keys(engine: sa.Engine, workspace: str, form: str | None = None) -> list[KeyInfo]:
    q = sa.select(tables.keys).where(tables.keys.c.workspace == workspace).order_by(tables.keys.c.form, tables.keys.c.id)
    if form:
        q = q.where(tables.keys.c.form == form)
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    return [KeyInfo(r["key_id"], r["form"], r["workspace"], r["created_at"], r["revoked_at"], r["last_used_at"]) for r in rows]


def verify(engine: sa.Engine, workspace: str, form: str, key: str | None) -> str | None:
    """The key's id if ``key`` is a live key of this form, else ``None``."""
    if not key or not key.startswith(PREFIX):
        return None
    parts = key[len(PREFIX):].split("_", 1)
    if len(parts) != 2:
        return None
    key_id = parts[0]
    with engine.connect() as conn:
        row: Any = conn.execute(
            sa.select(tables.keys.c.key_hash, tables.keys.c.form, tables.keys.c.revoked_at).where(
                tables.keys.c.workspace == workspace, tables.keys.c.key_id == key_id
            )
        ).first()
    if row is None or row.revoked_at is not None or row.form != form:
        return None
    if not hmac.compare_digest(row.key_hash, digest(key)):
        return None
    return key_id
