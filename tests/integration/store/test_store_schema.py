"""Schema versions on real databases: check, refuse, upgrade; migrations match the tables."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from sqlalchemy import text

from trunkline.store.engine import make_engine
from trunkline.store.schema import (
    SchemaOutOfDateError,
    SchemaState,
    check_schema,
    head_revisions,
    require_current,
    upgrade,
)
from trunkline.store.tables import Base
from trunkline.store.testing import temporary_postgres


def _exercise(url: str) -> None:
    engine = make_engine(url)
    try:
        status = check_schema(engine)
        assert status.state is SchemaState.NEEDS_UPGRADE
        assert status.current == ()
        with pytest.raises(SchemaOutOfDateError, match="run `trunkline db upgrade`"):
            require_current(engine)
        assert upgrade(engine).state is SchemaState.UP_TO_DATE
        require_current(engine)
        assert check_schema(engine).current == head_revisions()
        assert upgrade(engine).state is SchemaState.UP_TO_DATE  # idempotent
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert differences == [], differences
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
        newer = check_schema(engine)
        assert newer.state is SchemaState.NEWER_THAN_CODE
        assert "newer than this code" in newer.message
        with pytest.raises(SchemaOutOfDateError):
            upgrade(engine)
    finally:
        engine.dispose()


def test_sqlite_schema_lifecycle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _exercise(f"sqlite:///{tmp_path / 'schema.db'}")


def test_postgres_schema_lifecycle() -> None:
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL) as url:
        _exercise(url)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
