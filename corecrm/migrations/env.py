"""Alembic environment: runs on the connection the CRM hands it (never its own URL)."""

from __future__ import annotations

from alembic import context

from corecrm.storage.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch mode for ALTERs
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
