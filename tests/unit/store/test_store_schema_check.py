"""check_schema on an in-memory database: empty, current, and newer-than-code revisions."""

from __future__ import annotations

from sqlalchemy import text

from trunkline.store.engine import make_engine
from trunkline.store.schema import SchemaState, check_schema, head_revisions, upgrade


def test_check_schema_reports_each_state_and_never_migrates() -> None:
    engine = make_engine("sqlite://")
    try:
        empty = check_schema(engine)
        assert (empty.state, empty.current) == (SchemaState.NEEDS_UPGRADE, ())
        assert "run `trunkline db upgrade`" in empty.message
        assert check_schema(engine).state is SchemaState.NEEDS_UPGRADE  # checking changed nothing
        current = upgrade(engine)
        assert (current.state, current.current) == (SchemaState.UP_TO_DATE, head_revisions())
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
        newer = check_schema(engine)
        assert newer.state is SchemaState.NEWER_THAN_CODE
        assert newer.current == ("from-the-future",)
        assert "upgrade trunkline" in newer.message
    finally:
        engine.dispose()
