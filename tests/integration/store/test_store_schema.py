"""Schema versions on real databases: check, refuse, upgrade; migrations match the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from sqlalchemy import text

from trunkline.bot.approval_store import ApprovalStore
from trunkline.queue.gates import ApprovalSource
from trunkline.store.engine import make_engine
from trunkline.store.schema import (
    SchemaOutOfDateError,
    SchemaState,
    alembic_config,
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


def _approvals_gain_decided_at(url: str) -> None:
    """0002 -> 0003 keeps existing approvals (decided_at NULL: the recording time stands
    in) and takes the comment time of new ones; 0003 downgrades."""
    engine = make_engine(url)
    recorded = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO approvals (repo_full_name, pr_number, sha, user_login, source,"
                    " kind, created_at) VALUES ('acme/app', 1, 'a', 'owen', 'command', 'merge',"
                    " :at)"
                ),
                {"at": recorded},
            )
        upgrade(engine, "0003")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT decided_at FROM approvals")).all() == [(None,)]
        store = ApprovalStore(engine)
        before = recorded - timedelta(seconds=1)
        assert store.remove("acme/app", 1, "a", "owen", ApprovalSource.COMMAND, before=before) == 0
        store.record("acme/app", 1, "b", "owen", ApprovalSource.COMMAND, decided_at=before)
        assert store.remove("acme/app", 1, "b", "owen", ApprovalSource.COMMAND, before=recorded)
        assert store.remove("acme/app", 1, "a", "owen", ApprovalSource.COMMAND, before=recorded)
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0002")
        with engine.connect() as conn:
            names = {
                column[0]
                for column in conn.execute(text("SELECT * FROM approvals")).cursor.description
            }
        assert "decided_at" not in names
    finally:
        engine.dispose()


def test_sqlite_approvals_gain_decided_at(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _approvals_gain_decided_at(f"sqlite:///{tmp_path / 'approvals.db'}")


def test_postgres_approvals_gain_decided_at() -> None:
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL) as url:
        _approvals_gain_decided_at(url)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
