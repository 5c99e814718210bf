"""Schema versions: run the Alembic history programmatically and check a database against it.

Performs database I/O. `check_schema` never changes anything; `upgrade` is only called by
`trunkline db upgrade` and by code that explicitly creates a fresh database (the demo, test
fixtures). The application refuses to start on a database that is behind (`require_current`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from trunkline.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaState(enum.StrEnum):
    UP_TO_DATE = "up to date"
    NEEDS_UPGRADE = "needs upgrade"
    NEWER_THAN_CODE = "newer than this code"


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    current: tuple[str, ...]
    head: tuple[str, ...]

    @property
    def message(self) -> str:
        current = ", ".join(self.current) or "empty"
        head = ", ".join(self.head)
        if self.state is SchemaState.UP_TO_DATE:
            return f"database schema is up to date (revision {head})"
        if self.state is SchemaState.NEEDS_UPGRADE:
            return (
                f"database schema is at {current}, this code needs {head}: "
                "run `trunkline db upgrade`"
            )
        return (
            f"database schema is at {current}, newer than this code knows ({head}): "
            "upgrade trunkline"
        )


class SchemaOutOfDateError(ConfigurationError):
    """The database is not at the revision this code expects."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revisions() -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def check_schema(engine: Engine) -> SchemaStatus:
    """Compare the database's revision with the code's head; changes nothing."""
    script = ScriptDirectory.from_config(alembic_config())
    head = tuple(sorted(script.get_heads()))
    with engine.connect() as conn:
        current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
        conn.rollback()
    if current == head:
        state = SchemaState.UP_TO_DATE
    elif all(_known(script, revision) for revision in current):
        state = SchemaState.NEEDS_UPGRADE
    else:
        state = SchemaState.NEWER_THAN_CODE
    return SchemaStatus(state=state, current=current, head=head)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an unknown revision
        return False


def require_current(engine: Engine) -> None:
    """Raise `SchemaOutOfDateError` (with what to do) unless the schema is up to date."""
    status = check_schema(engine)
    if status.state is not SchemaState.UP_TO_DATE:
        raise SchemaOutOfDateError(status.message)


def upgrade(engine: Engine, revision: str = "head") -> SchemaStatus:
    """Migrate the database to `revision` (default: the newest); returns the new status."""
    status = check_schema(engine)
    if status.state is SchemaState.NEWER_THAN_CODE:
        raise SchemaOutOfDateError(status.message)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return check_schema(engine)
