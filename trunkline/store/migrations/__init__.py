"""Alembic migrations of trunkline's schema (one history for SQLite and PostgreSQL)."""
