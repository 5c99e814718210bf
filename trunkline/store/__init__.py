"""Durable state: SQLAlchemy tables, Alembic migrations, the job runner and the timeline."""
