"""approvals: decided_at, when the person decided (GitHub's clock)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 14:00:00.000000

A `/trunkline approve` may be recorded long after its comment was written (a job backlog, a
retry), and after the same person's later "changes requested" review was handled; that
review withdraws the approvals decided before it, so each row needs the time of the
decision on GitHub's clock (the comment's `created_at`), not the time it was recorded.
Existing rows keep NULL: their `created_at` stands in for it, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("decided_at")
