"""Alembic environment for trunkline's one migration history (SQLite and PostgreSQL).

Run programmatically by `trunkline.store.schema`; no alembic.ini is needed. The caller hands
over an open connection in `config.attributes["connection"]`; SQLite runs in batch mode so
that ALTER TABLE steps work there too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from trunkline.store.tables import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("trunkline migrations run through trunkline.store.schema.upgrade()")
_run(connection)
