"""The plugin's own tables (declared through ``crm_db_schema``).

* ``nurture_enrolments`` is both the membership list and the work queue: an
  active enrolment's ``due_at`` is when its next step is due. Workers claim
  due rows by setting a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; the
  SQLite write lock otherwise); a partial index on active rows keeps the
  claim query from rescanning finished ones.
* ``nurture_messages`` is the send ledger: one row per lead-step, keyed by
  an idempotency key that is written *before* the channel is called and
  travels in the message headers. A row found in ``sending`` state after a
  crash is never sent again.
* ``nurture_consent`` is an append-only consent ledger: the statement made
  last for (lead, channel, purpose) is the state (latest ``at``, then latest
  id: ``consent.is_current``), whatever order the rows were recorded in; every row keeps when, from which
  source, with what proof, and the address it concerns.
* ``nurture_confirmations`` is the double opt-in outbox: one row per
  ``pending`` e-mail consent statement (unique on the ledger row), so a
  statement is confirmed by at most one message; like ``nurture_messages``
  the row is ``sending`` before the channel is called and a row found
  ``sending`` after a crash is never sent again.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, text

metadata = MetaData()
TZ = DateTime(timezone=True)

enrolments = Table(
    "nurture_enrolments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("lead_id", Integer, nullable=False),
    Column("sequence", String(64), nullable=False),
    #: active | completed | exited
    Column("status", String(16), nullable=False),
    Column("step", Integer, nullable=False),  #: index of the next step to send
    Column("step_base_at", TZ, nullable=False),  #: scheduled time the next step's delay counts from
    Column("due_at", TZ),  #: when the next step is due (moves on retries)
    Column("lease_until", TZ),
    Column("lease_owner", String(64)),
    Column("enrolled_at", TZ, nullable=False),
    Column("finished_at", TZ),
    Column("reason", Text),  #: why the lead was enrolled (rule, plugin)
    Column("enrolled_by", String(128)),  #: plugin that enrolled it
    Column("exit_reason", String(32)),
    Column("exit_detail", Text),
    UniqueConstraint("workspace", "lead_id", "sequence", name="uq_nurture_enrolments_lead_sequence"),
    Index("ix_nurture_enrolments_due", "workspace", "due_at", "id", postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'")),
    Index("ix_nurture_enrolments_lead", "workspace", "lead_id"),
)

messages = Table(
    "nurture_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("idempotency_key", String(160), nullable=False),
    Column("enrolment_id", Integer, nullable=False),
    Column("lead_id", Integer, nullable=False),
    Column("sequence", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    Column("step_name", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    #: sending | retry | sent | failed | skipped | uncertain
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("address", Text),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("sent_at", TZ),
    Column("error", Text),
    Column("detail", JSON),
    UniqueConstraint("workspace", "idempotency_key", name="uq_nurture_messages_key"),
    Index("ix_nurture_messages_lead", "workspace", "lead_id"),
    Index("ix_nurture_messages_status", "workspace", "status"),
)

consent = Table(
    "nurture_consent",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("lead_id", Integer, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    #: opted_in | opted_out | pending (double opt-in not confirmed yet)
    Column("status", String(16), nullable=False),
    Column("address", Text),  #: the address the consent concerns (normalised), if any
    Column("at", TZ, nullable=False),  #: when the person gave or withdrew it
    Column("source", String(64), nullable=False),  #: form, email, import, unsubscribe_link, bounce, cli…
    Column("proof", JSON),  #: form id and IP, message id, import file and row, token fingerprint…
    Column("recorded_at", TZ, nullable=False),
    Index("ix_nurture_consent_lead", "workspace", "lead_id", "channel", "purpose", "id"),
    Index("ix_nurture_consent_address", "workspace", "address"),
)

confirmations = Table(
    "nurture_confirmations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("consent_id", Integer, nullable=False),  #: the pending nurture_consent row this message confirms
    Column("lead_id", Integer, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("address", Text),
    #: queued | sending | retry | sent | failed | skipped | uncertain
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("idempotency_key", String(160), nullable=False),
    Column("due_at", TZ),
    Column("lease_until", TZ),
    Column("lease_owner", String(64)),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("sent_at", TZ),
    Column("error", Text),
    Column("detail", JSON),
    UniqueConstraint("workspace", "consent_id", name="uq_nurture_confirmations_consent"),
    Index("ix_nurture_confirmations_due", "workspace", "status", "due_at"),
    Index("ix_nurture_confirmations_lead", "workspace", "lead_id"),
)
