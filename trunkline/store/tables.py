"""The database tables of trunkline (SQLAlchemy 2 typed declarative mapping).

Pure declarations; performs no I/O. The Alembic history in `trunkline.store.migrations` is the
source of truth for the physical schema and must be kept in step with these classes (a test
compares them). Every timestamp is a timezone-aware UTC datetime (`UTCDateTime`), whatever the
dialect. Idempotency is data here: delivery ids and job keys are unique, locks carry epochs.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a timezone-aware one")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Delivery(Base):
    """One webhook delivery as GitHub sent it; `delivery_id` is GitHub's X-GitHub-Delivery."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(100), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    action: Mapped[str | None] = mapped_column(String(100))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repo_full_name: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Listed newest first by primary key; no other index, to keep intake writes cheap.


class Job(Base):
    """A durable unit of work; `key` makes enqueueing idempotent."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    state: Mapped[str] = mapped_column(String(20), default=JobState.QUEUED)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Claims scan (state='queued', run_at <= now); sweeps scan the few state='running'.
        Index("ix_jobs_claim", "state", "run_at", "priority"),
    )


class WorkItem(Base):
    """One issue trunkline works on; `state` follows the work item state machine."""

    __tablename__ = "work_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    issue_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text, default="")
    branch: Mapped[str | None] = mapped_column(String(300))
    pr_number: Mapped[int | None] = mapped_column(Integer)
    head_sha: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("repo_full_name", "issue_number"),)


class Lock(Base):
    """A lease on one slot of a subsystem; `epoch` is the monotonic fencing token."""

    __tablename__ = "locks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    subsystem: Mapped[str] = mapped_column(String(200))
    slot: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str | None] = mapped_column(String(300))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("repo_full_name", "subsystem", "slot"),)


class LockWaiter(Base):
    """A holder waiting for subsystems, in arrival order."""

    __tablename__ = "lock_waiters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    subsystem: Mapped[str] = mapped_column(String(200))
    holder: Mapped[str] = mapped_column(String(300))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("repo_full_name", "subsystem", "holder"),)


class QueueEntry(Base):
    """A pull request in a repository's merge queue for one base branch."""

    __tablename__ = "queue_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    base_branch: Mapped[str] = mapped_column(String(300))
    pr_number: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(40))
    integration_sha: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_queue_entries_queue", "repo_full_name", "base_branch", "state"),)


class Approval(Base):
    """A human approval of one PR head SHA; it never carries over to another SHA."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    pr_number: Mapped[int] = mapped_column(Integer)
    sha: Mapped[str] = mapped_column(String(64))
    user_login: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40), default="merge")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # when the person decided, on GitHub's clock (a command's comment time); NULL: unknown,
    # `created_at` stands in (migration 0003)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("repo_full_name", "pr_number", "sha", "user_login", "kind"),)


class AgentRun(Base):
    """One agent role invocation for a work item (planner, executor, reviewer)."""

    __tablename__ = "agent_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    work_item_id: Mapped[int | None] = mapped_column(ForeignKey("work_items.id"))
    role: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(40))
    verdict: Mapped[str | None] = mapped_column(String(40))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AgentStep(Base):
    """One model call of an agent run, with the tool calls it made (the timeline)."""

    __tablename__ = "agent_steps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    prompt_digest: Mapped[str] = mapped_column(String(128))
    tool_calls: Mapped[list[Any]] = mapped_column(JSONDocument, default=list)
    verdict: Mapped[str | None] = mapped_column(String(40))
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("run_id", "seq"),)


class TimelineEvent(Base):
    """A work item transition or notable step, in order; what a human reads afterwards."""

    __tablename__ = "timeline_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    work_item_id: Mapped[int | None] = mapped_column(ForeignKey("work_items.id"))
    repo_full_name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(60))
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_timeline_events_item", "work_item_id", "created_at"),)


class SchedulerLease(Base):
    """The leader lease: the replica whose name is `holder` runs the periodic scheduler."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QueueStateRow(Base):
    """The serialized `QueueState` of one merge queue (repository, base branch).

    `version` is the row's optimistic-concurrency counter: every write checks the version it
    read (the queue service also holds the row lock for the whole step).
    """

    __tablename__ = "queue_states"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    base_branch: Mapped[str] = mapped_column(String(300))
    state: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("repo_full_name", "base_branch"),)


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class QueueOutboxRow(Base):
    """One effect the merge-queue engine asked for, recorded before it is performed.

    `key` is the effect's idempotency key (unique): a replayed step inserts nothing new, and
    a performed effect is marked done in the transaction that feeds its result back.
    """

    __tablename__ = "queue_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)
    repo_full_name: Mapped[str] = mapped_column(String(300))
    base_branch: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(60))
    effect: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    state: Mapped[str] = mapped_column(String(20), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
