"""queue runner: queue_states and queue_outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 06:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "queue_states",
        _id(),
        sa.Column("repo_full_name", sa.String(length=300), nullable=False),
        sa.Column("base_branch", sa.String(length=300), nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_states")),
        sa.UniqueConstraint(
            "repo_full_name",
            "base_branch",
            name=op.f("uq_queue_states_repo_full_name_base_branch"),
        ),
    )
    op.create_table(
        "queue_outbox",
        _id(),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("repo_full_name", sa.String(length=300), nullable=False),
        sa.Column("base_branch", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("effect", _json(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_queue_outbox_key")),
    )


def downgrade() -> None:
    op.drop_table("queue_outbox")
    op.drop_table("queue_states")
