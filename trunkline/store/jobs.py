"""The durable job table: enqueue, claim with a lease, heartbeat, finish, retry, dead-letter.

Performs database I/O. Every time here is on the database clock (`dialect.database_now`), so
replicas with skewed clocks agree on leases. Claims are exclusive:
- PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED` picks rows nobody else is claiming;
- SQLite: the claim runs in a `BEGIN IMMEDIATE` transaction (the engine's default), which
  serialises claimers on the file's write lock.
A claim increments `attempts`; `finish`/`fail`/`heartbeat` are fenced on (id, claimed_by,
attempts), so a worker whose lease expired and whose job was re-claimed changes nothing.
A job whose lease expired (its worker died) is claimable again; if it has used all attempts,
`sweep` (run by the worker pool and the scheduler) moves it to the dead letter instead.
Delivery is at-least-once: handlers must be idempotent. An error text is redacted (the
store's `Redactor`) before it is stored as `last_error`: it reaches the dashboard, the CLI and,
through the pipeline's dead-job sweep, GitHub.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Interval, and_, func, literal, or_, select, update

from trunkline.agents.redaction import Redactor
from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.engine import read_only
from trunkline.store.tables import Job, JobState, UTCDateTime

DEFAULT_MAX_ATTEMPTS = 8
ERROR_LIMIT = 4000


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue. `key` is unique: enqueueing the same key twice is a no-op."""

    kind: str
    key: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    delay_seconds: float = 0.0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    key: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    claimed_by: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: int
    key: str
    kind: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    claimed_by: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "kind": self.kind,
            "state": self.state,
            "priority": self.priority,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_at": self.run_at.isoformat(),
            "claimed_by": self.claimed_by,
            "lease_expires_at": (
                self.lease_expires_at.isoformat() if self.lease_expires_at else None
            ),
            "last_error": self.last_error,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    dead: int


JOBS = Job.__table__


def enqueue_in(conn: Connection, job: NewJob, now: datetime) -> bool:
    """Enqueue inside the caller's transaction; True if new, False if the key existed."""
    return insert_ignoring_conflicts(
        conn,
        JOBS,  # type: ignore[arg-type]
        {
            "key": job.key,
            "kind": job.kind,
            "payload": job.payload,
            "priority": job.priority,
            "run_at": now + timedelta(seconds=job.delay_seconds),
            "attempts": 0,
            "max_attempts": job.max_attempts,
            "state": JobState.QUEUED,
            "created_at": now,
            "updated_at": now,
        },
        ["key"],
    )


def _clock(conn: Connection) -> Any:
    """The database clock as a SQL expression: `now()` on PostgreSQL (no extra round trip),
    the host clock SQLite itself would read on SQLite (see `dialect.database_now`)."""
    if conn.dialect.name == "postgresql":
        return func.now()
    return literal(database_now(conn), UTCDateTime())


def _later(conn: Connection, delta: timedelta) -> Any:
    """`delta` after the database clock, as a SQL expression."""
    if conn.dialect.name == "postgresql":
        return func.now() + literal(delta, Interval())
    return literal(database_now(conn) + delta, UTCDateTime())


def _truncate(message: str) -> str:
    return message if len(message) <= ERROR_LIMIT else message[: ERROR_LIMIT - 3] + "..."


class JobStore:
    """Job table operations, each in its own short transaction."""

    def __init__(
        self, engine: Engine, *, lease_seconds: float, redactor: Redactor | None = None
    ) -> None:
        """`redactor`: applied to every error text before it is stored in `last_error` (the
        composition root passes the process's; default: token shapes only)."""
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.redactor = redactor if redactor is not None else Redactor()

    def enqueue(self, job: NewJob) -> bool:
        with self.engine.begin() as conn:
            return enqueue_in(conn, job, database_now(conn))

    def enqueue_many(self, jobs: Sequence[NewJob]) -> int:
        """Enqueue several jobs in one transaction; returns how many were new."""
        with self.engine.begin() as conn:
            now = database_now(conn)
            return sum(1 for job in jobs if enqueue_in(conn, job, now))

    def claim(
        self, worker_id: str, *, limit: int = 1, kinds: Iterable[str] | None = None
    ) -> list[ClaimedJob]:
        """Take up to `limit` runnable jobs: due queued ones, or running ones whose lease
        expired and that have attempts left (spent ones are dead-lettered by `sweep`).

        One statement: `WITH claimable AS (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ...
        RETURNING`; on SQLite the surrounding BEGIN IMMEDIATE makes it exclusive.
        """
        with self.engine.begin() as conn:
            now = _clock(conn)
            runnable = or_(
                and_(Job.state == JobState.QUEUED, Job.run_at <= now),
                and_(
                    Job.state == JobState.RUNNING,
                    Job.lease_expires_at < now,
                    Job.attempts < Job.max_attempts,
                ),
            )
            candidates = select(Job.id).where(runnable)
            if kinds is not None:
                candidates = candidates.where(Job.kind.in_(list(kinds)))
            claimable = (
                candidates.order_by(Job.priority.desc(), Job.run_at, Job.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .cte("claimable")
            )
            rows = conn.execute(
                update(Job)
                .where(Job.id.in_(select(claimable.c.id)))
                .values(
                    state=JobState.RUNNING,
                    claimed_by=worker_id,
                    attempts=Job.attempts + 1,
                    heartbeat_at=now,
                    lease_expires_at=_later(conn, self.lease),
                    updated_at=now,
                )
                .returning(
                    Job.id,
                    Job.key,
                    Job.kind,
                    Job.payload,
                    Job.attempts,
                    Job.max_attempts,
                    Job.priority,
                    Job.run_at,
                    Job.lease_expires_at,
                )
            ).all()
        rows = sorted(rows, key=lambda row: (-row.priority, row.run_at, row.id))
        return [
            ClaimedJob(
                id=row.id,
                key=row.key,
                kind=row.kind,
                payload=dict(row.payload or {}),
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                claimed_by=worker_id,
                lease_expires_at=row.lease_expires_at,
            )
            for row in rows
        ]

    def _fenced(self, job: ClaimedJob) -> Any:
        return and_(
            Job.id == job.id,
            Job.state == JobState.RUNNING,
            Job.claimed_by == job.claimed_by,
            Job.attempts == job.attempts,
        )

    def heartbeat(self, job: ClaimedJob) -> bool:
        """Renew the lease; False when the job is no longer ours (lease lost)."""
        with self.engine.begin() as conn:
            now = _clock(conn)
            result = conn.execute(
                update(Job)
                .where(self._fenced(job))
                .values(heartbeat_at=now, lease_expires_at=_later(conn, self.lease), updated_at=now)
            )
            return result.rowcount == 1

    def finish(self, job: ClaimedJob) -> bool:
        """Mark done; False when the lease was lost (someone else owns the job now)."""
        with self.engine.begin() as conn:
            now = _clock(conn)
            result = conn.execute(
                update(Job)
                .where(self._fenced(job))
                .values(
                    state=JobState.DONE,
                    claimed_by=None,
                    lease_expires_at=None,
                    last_error=None,
                    updated_at=now,
                    finished_at=now,
                )
            )
            return result.rowcount == 1

    def fail(self, job: ClaimedJob, error: str, *, dead: bool, delay_seconds: float) -> bool:
        """Record a failed attempt: back to queued after `delay_seconds`, or dead."""
        with self.engine.begin() as conn:
            now = _clock(conn)
            values: dict[str, Any] = {
                "claimed_by": None,
                "lease_expires_at": None,
                "last_error": _truncate(self.redactor.redact(error)),
                "updated_at": now,
            }
            if dead:
                values.update(state=JobState.DEAD, finished_at=now)
            else:
                values.update(
                    state=JobState.QUEUED,
                    run_at=_later(conn, timedelta(seconds=delay_seconds)),
                )
            result = conn.execute(update(Job).where(self._fenced(job)).values(**values))
            return result.rowcount == 1

    def sweep(self) -> SweepResult:
        """Release jobs whose lease expired: requeue them, or dead-letter spent ones."""
        with self.engine.begin() as conn:
            now = _clock(conn)
            expired = and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
            dead = conn.execute(
                update(Job)
                .where(expired, Job.attempts >= Job.max_attempts)
                .values(
                    state=JobState.DEAD,
                    claimed_by=None,
                    lease_expires_at=None,
                    last_error="lease expired on the last attempt (worker died?)",
                    updated_at=now,
                    finished_at=now,
                )
            ).rowcount
            requeued = conn.execute(
                update(Job)
                .where(expired, Job.attempts < Job.max_attempts)
                .values(
                    state=JobState.QUEUED,
                    claimed_by=None,
                    lease_expires_at=None,
                    run_at=now,
                    last_error="lease expired (worker died?); requeued",
                    updated_at=now,
                )
            ).rowcount
        return SweepResult(requeued=requeued, dead=dead)

    def retry(self, job_id: int) -> bool:
        """Give a dead job a fresh set of attempts; False unless it exists and is dead."""
        with self.engine.begin() as conn:
            now = database_now(conn)
            result = conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.DEAD)
                .values(
                    state=JobState.QUEUED,
                    attempts=0,
                    run_at=now,
                    finished_at=None,
                    updated_at=now,
                )
            )
            return result.rowcount == 1

    def list(self, *, state: str | None = None, limit: int = 100) -> list[JobRecord]:
        query = select(JOBS).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            query = query.where(Job.state == state)
        with self.engine.connect() as conn:
            rows = read_only(conn).execute(query).all()
        return [
            JobRecord(
                id=row.id,
                key=row.key,
                kind=row.kind,
                state=row.state,
                priority=row.priority,
                attempts=row.attempts,
                max_attempts=row.max_attempts,
                run_at=row.run_at,
                claimed_by=row.claimed_by,
                lease_expires_at=row.lease_expires_at,
                last_error=row.last_error,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = read_only(conn).execute(select(Job.state, func.count()).group_by(Job.state))
            return {str(state): int(count) for state, count in rows}
