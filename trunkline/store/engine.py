"""Engine factory: one SQLAlchemy engine per process, configured for SQLite or PostgreSQL.

Performs I/O only when the engine connects. SQLite (the embedded default, a file in the data
directory) is set up for many processes sharing one file:
- WAL journal, `synchronous=NORMAL`, `busy_timeout` (waits instead of "database is locked"),
  `foreign_keys=ON`;
- the driver's own transaction handling is switched off and every transaction starts with
  `BEGIN IMMEDIATE`, so a read-then-write transaction takes the write lock up front and never
  fails half-way with SQLITE_BUSY on lock upgrade (SQLAlchemy pysqlite docs, "Serializable
  isolation / Savepoints / Transactional DDL"). Read-only work may ask for a deferred
  transaction with `conn.execution_options(sqlite_deferred=True)` (see `read_only`).
PostgreSQL uses psycopg 3 (`postgresql+psycopg://`); plain `postgresql://` URLs are mapped to it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from trunkline.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 60_000
DEFERRED_OPTION = "sqlite_deferred"


def normalize_url(url: str) -> str:
    """Map bare `postgresql://`/`postgres://` URLs to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def engine_from_settings(settings: Settings, **engine_options: Any) -> Engine:
    """The engine for the configured store; creates the data directory for SQLite."""
    url = settings.effective_database_url
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return make_engine(url, **engine_options)


def make_engine(url: str, **engine_options: Any) -> Engine:
    """An engine for `url` with trunkline's connection set-up applied."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        }
        options.update(engine_options)
        engine = create_engine(url, **options)
        _configure_sqlite(engine)
        return engine
    # No pre-ping (a round trip per checkout); a dropped connection fails one operation,
    # SQLAlchemy then invalidates the pool and the runner retries.
    options = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800}
    options.update(engine_options)
    return create_engine(url, **options)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event below own transaction boundaries.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(DEFERRED_OPTION):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def read_only(conn: Connection) -> Connection:
    """Mark `conn` for read-only work: SQLite then begins DEFERRED (no write lock)."""
    return conn.execution_options(**{DEFERRED_OPTION: True})


def ping(engine: Engine) -> None:
    """Raise if the database cannot be reached."""
    with engine.connect() as conn:
        read_only(conn).execute(text("SELECT 1"))
