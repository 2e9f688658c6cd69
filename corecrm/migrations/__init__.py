"""Alembic migrations of the core schema (``corecrm db upgrade``)."""
