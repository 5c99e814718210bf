"""The few statements that differ between SQLite and PostgreSQL, behind one function each.

Performs database I/O on the connection it is given, inside the caller's transaction.
- `database_now`: the database clock. PostgreSQL: `now()` (the transaction's start time, so
  one transaction sees one instant; every replica reads the server's clock). SQLite has no
  server: its `'now'` is the host's real-time clock read inside this process, the same clock
  every process sharing the file reads, so we read that clock directly (`datetime.now(UTC)`,
  microsecond precision) instead of a round trip through `strftime('%f', 'now')`.
  Leases and run_at use this clock only.
- `insert_ignoring_conflicts`: `INSERT ... ON CONFLICT (cols) DO NOTHING RETURNING` on both;
  says whether a row was inserted (False: a row with the same key already existed, possibly
  committed by a concurrent transaction a moment ago).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql, sqlite


def database_now(conn: Connection) -> datetime:
    """The current time on the database clock, timezone-aware UTC."""
    if conn.dialect.name == "sqlite":
        return datetime.now(UTC)  # the host clock SQLite's own 'now' reads
    value = conn.execute(text("SELECT now()")).scalar_one()
    if not isinstance(value, datetime):
        raise TypeError(f"database clock returned {value!r}")
    return value.astimezone(UTC)


def insert_ignoring_conflicts(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    conflict_columns: Sequence[str],
) -> bool:
    """Insert `values` unless a row with the same `conflict_columns` exists; True if inserted."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        dialect_insert(table)
        .values(dict(values))
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
        .returning(table.c[conflict_columns[0]])
    )
    return conn.execute(statement).first() is not None
