"""Alembic migrations of the core schema (``corecrm db upgrade``)."""

#: The newest revision; kept here so opening a CRM need not import Alembic.
#: ``tests/test_storage.py`` checks it against the migration scripts.
HEAD = "0002"
