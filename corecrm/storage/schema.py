"""The core's tables (SQLAlchemy Core). Versioned by Alembic (``corecrm/migrations``).

Every table has a ``workspace`` column and every query the core runs filters
on it: no command returns another workspace's data.

A lead's intake history (what each plugin did while the lead was captured)
is stored with the lead, in ``leads.intake``, rather than as one ``events``
row per step: it is written once, with the lead, in the same bulk insert, and
keeps a million-lead import at one row per lead. ``corecrm explain`` and
``leads show --json`` present both as one history. Everything that happens
afterwards (stage changes, re-scores, assignments, merges, activities) is a
row in ``events``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TZDateTime = DateTime(timezone=True)

captures = Table(
    "captures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("origin", Text),
    Column("content_type", String(128)),
    Column("format", String(64)),
    Column("payload", LargeBinary, nullable=False),
    Column("meta", JSON),
    #: new | processed | skipped | quarantined | rejected
    Column("status", String(16), nullable=False, default="new"),
    Column("reason", Text),
    Column("received_at", TZDateTime, nullable=False),
    Column("processed_at", TZDateTime),
    UniqueConstraint("workspace", "content_hash", name="uq_captures_workspace_hash"),
    Index("ix_captures_workspace_status", "workspace", "status"),
)

leads = Table(
    "leads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_name", Text),
    Column("last_name", Text),
    Column("email", Text),
    Column("email_norm", Text),
    Column("phone", Text),
    Column("company", Text),
    Column("title", Text),
    Column("country", String(2)),
    Column("region", String(8)),
    Column("city", Text),
    Column("postal_code", String(16)),
    Column("source", Text),
    Column("campaign", Text),
    Column("language", String(16)),
    Column("timezone", String(64)),
    Column("interests", JSON),
    Column("attributes", JSON),
    Column("consent", JSON),
    Column("score", Float),
    Column("grade", String(8)),
    Column("score_detail", JSON),
    Column("owner", String(128)),
    Column("team", String(128)),
    Column("capture_id", Integer),
    Column("origin_key", String(80)),
    Column("intake", JSON),
    Column("created_at", TZDateTime, nullable=False),
    Column("updated_at", TZDateTime, nullable=False),
    Column("assigned_at", TZDateTime),
    Column("first_contact_at", TZDateTime),
    Column("customer_id", Integer),
    Column("merged_into", Integer),
    UniqueConstraint("workspace", "origin_key", name="uq_leads_workspace_origin"),
    Index("ix_leads_workspace_email", "workspace", "email_norm"),
    Index("ix_leads_workspace_stage", "workspace", "stage"),
    Index("ix_leads_workspace_owner", "workspace", "owner"),
    Index("ix_leads_workspace_created", "workspace", "created_at"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("lead_id", Integer),
    Column("deal_id", Integer),
    Column("type", String(64), nullable=False),
    Column("at", TZDateTime, nullable=False),
    Column("plugin", String(128)),
    Column("detail", JSON),
    Index("ix_events_workspace_lead", "workspace", "lead_id"),
    Index("ix_events_workspace_type_at", "workspace", "type", "at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("capture_id", Integer, ForeignKey("captures.id"), nullable=False),
    Column("item_index", Integer),  #: position of the lead in its capture (NULL: the whole capture)
    Column("lead", JSON),  #: the parsed lead, when parsing got that far
    Column("step", String(32), nullable=False),
    Column("plugin", String(128)),
    Column("error", Text, nullable=False),
    #: open | resolved | released | discarded
    Column("status", String(16), nullable=False),
    Column("created_at", TZDateTime, nullable=False),
    Column("resolved_at", TZDateTime),
    Column("lead_id", Integer),
    Index("ix_quarantine_workspace_status", "workspace", "status"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("lead_id", Integer),
    Column("external_id", String(128)),
    Column("name", Text),
    Column("email", Text),
    Column("created_at", TZDateTime, nullable=False),
    UniqueConstraint("workspace", "lead_id", name="uq_customers_workspace_lead"),
    UniqueConstraint("workspace", "external_id", name="uq_customers_workspace_external"),
)

deals = Table(
    "deals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("lead_id", Integer),
    Column("customer_id", Integer),
    Column("pipeline", String(64), nullable=False),
    Column("stage", String(64), nullable=False),
    Column("name", Text),
    Column("amount", Float),
    Column("owner", String(128)),
    Column("status", String(8), nullable=False),
    Column("lost_reason", Text),
    Column("expected_close", Date),
    Column("created_at", TZDateTime, nullable=False),
    Column("closed_at", TZDateTime),
    Index("ix_deals_workspace_status", "workspace", "status"),
    Index("ix_deals_workspace_lead", "workspace", "lead_id"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("customer_id", Integer, nullable=False),
    Column("at", Date, nullable=False),
    Column("amount", Float, nullable=False),
    Column("cost", Float),
    Index("ix_transactions_workspace_customer_at", "workspace", "customer_id", "at", "amount"),
)

activities = Table(
    "activities",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("lead_id", Integer),
    Column("deal_id", Integer),
    Column("type", String(16), nullable=False),
    Column("note", Text),
    Column("owner", String(128)),
    Column("due_at", TZDateTime),
    Column("done", Boolean, nullable=False, default=False),
    Column("at", TZDateTime, nullable=False),
    Index("ix_activities_workspace_lead", "workspace", "lead_id"),
    Index("ix_activities_workspace_owner", "workspace", "owner", "done"),
)

#: Columns of ``leads`` in the order the bulk insert binds them.
LEAD_COLUMNS: tuple[str, ...] = tuple(c.name for c in leads.columns)
