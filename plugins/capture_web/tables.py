"""The plugin's own tables, declared through ``crm_db_schema``.

* ``capture_web_keys``: per-form API keys, kept as SHA-256 digests (keys are
  192 random bits, so a fast hash is enough; the clear key is shown once).
* ``capture_web_submissions``: form tokens and ``Idempotency-Key`` headers
  already seen, with the capture they produced, so a double click or a
  client retry answers with the first capture id instead of a second lead.
* ``capture_web_deliveries``: the outbound queue. ``idempotency_key`` is
  unique per workspace: the same event for the same target is queued once,
  whatever number of observers or workers saw it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TZ = sa.DateTime(timezone=True)

keys = sa.Table(
    "capture_web_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("form", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),  #: the public prefix that finds the row
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("revoked_at", TZ),
    sa.Column("last_used_at", TZ),
    sa.UniqueConstraint("key_id", name="uq_capture_web_keys_key_id"),
    sa.Index("ix_capture_web_keys_ws_form", "workspace", "form"),
)

submissions = sa.Table(
    "capture_web_submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("form", sa.String(64), nullable=False),
    sa.Column("token", sa.String(128), nullable=False),
    sa.Column("capture_id", sa.Integer),
    sa.Column("at", TZ, nullable=False),
    sa.UniqueConstraint("workspace", "form", "token", name="uq_capture_web_submissions_token"),
)

deliveries = sa.Table(
    "capture_web_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("workspace", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(160), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  #: webhook | adf | form | email
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("lead_id", sa.Integer),
    sa.Column("payload", sa.Text, nullable=False),  #: JSON snapshot taken when queued
    #: pending | sending | delivered | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", TZ, nullable=False),
    sa.Column("lease_until", TZ),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("delivered_at", TZ),
    sa.UniqueConstraint("workspace", "idempotency_key", name="uq_capture_web_deliveries_key"),
    sa.Index("ix_capture_web_deliveries_due", "status", "next_attempt_at"),
)


def ensure(engine: sa.Engine) -> None:
    """Create the tables if missing (for callers that did not run ``corecrm init``)."""
    metadata.create_all(engine, checkfirst=True)
