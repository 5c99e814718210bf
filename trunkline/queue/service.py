"""The durable merge queue: the pure engine's state and outbox in the store.

Performs database I/O (one transaction per call) and reads the injected clock. Contract:
- `submit(repo, base, event)` runs ONE transaction: it locks the queue's `queue_states` row
  (creating it from `initial_state(repo, config, base_sha)` when the caller gives a config and
  the current base SHA), calls `step(state, event, now)`, saves the new state under a version
  check, inserts every effect into `queue_outbox` (`ON CONFLICT (key) DO NOTHING`) and
  enqueues one durable job per new effect (`queue_effect:<effect key>`). Nothing is performed
  here: the effect runner (`trunkline.queue.runner`) claims those jobs.
- `complete_effect(key, events)` marks an outbox row done and feeds the effect's result
  events to the engine in the same transaction, only if the row was still pending: a result
  is fed back exactly once however often the effect is performed.
- An event that changes nothing (the engine returns the same state) writes nothing.
Callers (bot handlers, the runner, the scheduler's tick) may call concurrently from threads
and processes: PostgreSQL row locks (`FOR UPDATE`) and SQLite's `BEGIN IMMEDIATE` serialise
the steps of one queue.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from trunkline.clock import Clock
from trunkline.errors import RetryableError, TerminalError
from trunkline.queue.crashpoints import NO_CRASH_POINTS, CrashPoint, CrashPoints
from trunkline.queue.effects import Effect, FastForwardBase
from trunkline.queue.engine import initial_state, step
from trunkline.queue.events import Event
from trunkline.queue.model import QueueConfig, QueueState
from trunkline.queue.projection import Departure, departures, write_projection
from trunkline.queue.serialization import (
    decode_effect,
    decode_state,
    encode_effect,
    encode_state,
)
from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.engine import read_only
from trunkline.store.jobs import NewJob, enqueue_in
from trunkline.store.tables import OutboxState, QueueOutboxRow, QueueStateRow

log = logging.getLogger(__name__)

EFFECT_JOB = "queue_effect"
"""The job kind that performs one outbox row (payload `{"key": <effect key>}`)."""

EFFECT_JOB_PRIORITY = 5
EFFECT_JOB_MAX_ATTEMPTS = 12
_JOB_KEY_LIMIT = 300
_ERROR_LIMIT = 4000

STATES = QueueStateRow.__table__
OUTBOX = QueueOutboxRow.__table__


class QueueNotFoundError(TerminalError):
    """An event for a queue that does not exist, without the config to create it."""


class QueueVersionConflictError(RetryableError):
    """The queue row changed between read and write (another writer won); retry the event."""


@dataclass(frozen=True)
class OutboxRecord:
    id: int  # insertion order: within one queue, the order the engine asked for the effects
    key: str
    repo: str
    base: str
    effect: Effect
    state: OutboxState
    attempts: int
    result: str | None
    error: str | None


def effect_job_key(effect_key: str) -> str:
    """The job key of the job performing `effect_key` (hashed when too long for the column)."""
    key = f"{EFFECT_JOB}:{effect_key}"
    if len(key) <= _JOB_KEY_LIMIT:
        return key
    return f"{EFFECT_JOB}:sha256:{hashlib.sha256(effect_key.encode()).hexdigest()}"


class QueueService:
    """The queues of every repository and base branch, stored in one database."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        crash_points: CrashPoints = NO_CRASH_POINTS,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.crash_points = crash_points
        self.departure_job_kind: str | None = None
        """When set (by the dispatch pipeline's wiring), every merge and ejection enqueues one
        job of this kind in the step's own transaction (`departure_job`): exactly once."""

    # -- writes -----------------------------------------------------------------------------

    def submit(
        self,
        repo: str,
        base: str,
        event: Event,
        *,
        config: QueueConfig | None = None,
        base_sha: str | None = None,
    ) -> tuple[Effect, ...]:
        """Apply `event` to the queue (repo, base) durably; returns the effects it asked for.

        `config` and `base_sha` create the queue when it does not exist yet (ignored when it
        does; change a config with the `ConfigChanged` event). Without them a missing queue is
        `QueueNotFoundError`.
        """
        with self.engine.begin() as conn:
            effects = self._submit_in(conn, repo, base, (event,), config, base_sha)
        self._after_commit(effects)
        return effects

    def complete_effect(
        self, key: str, events: Sequence[Event] = (), *, result: str = "done"
    ) -> tuple[Effect, ...] | None:
        """Mark the outbox row `key` done and feed `events` in the same transaction.

        Returns the effects of those events, or None when the row was not pending (already
        completed or failed: nothing is fed back a second time).
        """
        with self.engine.begin() as conn:
            row = conn.execute(
                select(QueueOutboxRow.repo_full_name, QueueOutboxRow.base_branch).where(
                    QueueOutboxRow.key == key
                )
            ).one_or_none()
            if row is None:
                return None
            now = database_now(conn)
            changed = conn.execute(
                update(QueueOutboxRow)
                .where(QueueOutboxRow.key == key, QueueOutboxRow.state == OutboxState.PENDING)
                .values(
                    state=OutboxState.DONE,
                    result=result[:_ERROR_LIMIT],
                    updated_at=now,
                    done_at=now,
                )
            ).rowcount
            if changed != 1:
                return None
            effects: tuple[Effect, ...] = ()
            if events:
                effects = self._submit_in(
                    conn, row.repo_full_name, row.base_branch, tuple(events), None, None
                )
        self._after_commit(effects)
        return effects

    def fail_effect(self, key: str, error: str) -> bool:
        """Mark the outbox row `key` failed (a terminal error the engine has no event for)."""
        with self.engine.begin() as conn:
            now = database_now(conn)
            changed = conn.execute(
                update(QueueOutboxRow)
                .where(QueueOutboxRow.key == key, QueueOutboxRow.state == OutboxState.PENDING)
                .values(state=OutboxState.FAILED, error=error[:_ERROR_LIMIT], updated_at=now)
            ).rowcount
        return bool(changed == 1)

    def note_attempt(self, key: str) -> None:
        """Count one attempt at performing the outbox row `key`."""
        with self.engine.begin() as conn:
            conn.execute(
                update(QueueOutboxRow)
                .where(QueueOutboxRow.key == key)
                .values(attempts=QueueOutboxRow.attempts + 1, updated_at=database_now(conn))
            )

    # -- reads ------------------------------------------------------------------------------

    def state(self, repo: str, base: str) -> QueueState | None:
        with self.engine.connect() as conn:
            document = (
                read_only(conn)
                .execute(
                    select(QueueStateRow.state).where(
                        QueueStateRow.repo_full_name == repo, QueueStateRow.base_branch == base
                    )
                )
                .scalar_one_or_none()
            )
        return None if document is None else decode_state(document)

    def states(self, repo: str | None = None) -> list[QueueState]:
        """Every queue (of `repo`, or of every repository), ordered by repository and base."""
        query = select(QueueStateRow.state).order_by(
            QueueStateRow.repo_full_name, QueueStateRow.base_branch
        )
        if repo is not None:
            query = query.where(QueueStateRow.repo_full_name == repo)
        with self.engine.connect() as conn:
            documents = read_only(conn).execute(query).scalars().all()
        return [decode_state(document) for document in documents]

    def outbox(self, key: str) -> OutboxRecord | None:
        with self.engine.connect() as conn:
            row = (
                read_only(conn)
                .execute(select(OUTBOX).where(QueueOutboxRow.key == key))
                .one_or_none()
            )
        return None if row is None else _record(row)

    def outbox_records(self, repo: str, base: str) -> list[OutboxRecord]:
        query = (
            select(OUTBOX)
            .where(QueueOutboxRow.repo_full_name == repo, QueueOutboxRow.base_branch == base)
            .order_by(QueueOutboxRow.id)
        )
        with self.engine.connect() as conn:
            rows = read_only(conn).execute(query).all()
        return [_record(row) for row in rows]

    def later_records(self, record: OutboxRecord, kind: str) -> list[OutboxRecord]:
        """Outbox rows of `kind` in `record`'s queue that the engine asked for after it."""
        query = (
            select(OUTBOX)
            .where(
                QueueOutboxRow.repo_full_name == record.repo,
                QueueOutboxRow.base_branch == record.base,
                QueueOutboxRow.kind == kind,
                QueueOutboxRow.id > record.id,
            )
            .order_by(QueueOutboxRow.id)
        )
        with self.engine.connect() as conn:
            rows = read_only(conn).execute(query).all()
        return [_record(row) for row in rows]

    # -- internals --------------------------------------------------------------------------

    def _submit_in(
        self,
        conn: Connection,
        repo: str,
        base: str,
        events: Iterable[Event],
        config: QueueConfig | None,
        base_sha: str | None,
    ) -> tuple[Effect, ...]:
        now = self.clock.now()
        row = _lock_state_row(conn, repo, base)
        if row is None:
            if config is None or base_sha is None:
                raise QueueNotFoundError(
                    f"no merge queue for {repo}@{base}; enqueue a PR (with the queue's config "
                    f"and the base SHA) first"
                )
            if config.base != base:
                raise ValueError(f"queue config is for base {config.base!r}, not {base!r}")
            insert_ignoring_conflicts(
                conn,
                STATES,  # type: ignore[arg-type]
                {
                    "repo_full_name": repo,
                    "base_branch": base,
                    "state": encode_state(initial_state(repo, config, base_sha)),
                    "version": 0,
                    "created_at": now,
                    "updated_at": now,
                },
                ["repo_full_name", "base_branch"],
            )
            row = _lock_state_row(conn, repo, base)
            if row is None:  # pragma: no cover - the insert or a concurrent one made it
                raise QueueVersionConflictError(f"queue {repo}@{base} vanished while created")
        row_id, document, version = row
        original = decode_state(document)
        state = original
        effects: list[Effect] = []
        for event in events:
            state, produced = step(state, event, now)
            effects.extend(produced)
        if not effects and (state is original or state == original):
            return ()
        changed = conn.execute(
            update(QueueStateRow)
            .where(QueueStateRow.id == row_id, QueueStateRow.version == version)
            .values(state=encode_state(state), version=version + 1, updated_at=now)
        ).rowcount
        if changed != 1:
            raise QueueVersionConflictError(f"queue {repo}@{base} changed concurrently")
        write_projection(conn, original, state, now)
        if self.departure_job_kind is not None:
            for departure in departures(original, state):
                if departure.state in DEPARTURES_REPORTED:
                    job = departure_job(self.departure_job_kind, repo, base, departure)
                    enqueue_in(conn, job, now)
        for effect in effects:
            _insert_effect(conn, repo, base, effect, now)
        return tuple(effects)

    def _after_commit(self, effects: Sequence[Effect]) -> None:
        if any(isinstance(effect, FastForwardBase) for effect in effects):
            self.crash_points.hit(CrashPoint.CHECKS_PASSED)


DEPARTURES_REPORTED = frozenset({"merged", "ejected", "dequeued"})
DEPARTURE_JOB_MAX_ATTEMPTS = 20
"""A listener may ask to be told again later (the work item has not recorded its Enqueue yet):
with the job runner's backoff, 20 attempts span hours."""


def departure_job(kind: str, repo: str, base: str, departure: Departure) -> NewJob:
    """The job telling a listener that `departure.pr` left the queue (merged or ejected);
    its key names the stay, so a step re-decided after a conflict enqueues it once."""
    return NewJob(
        kind=kind,
        key=f"{kind}:{repo}@{base}#{departure.pr}:{departure.state}:{departure.at.isoformat()}",
        payload={
            "repo": repo,
            "base": base,
            "pr": departure.pr,
            "state": departure.state,
            "head_sha": departure.head_sha,
            "merged_sha": departure.merged_sha,
            "reason": departure.reason,
        },
        priority=3,
        max_attempts=DEPARTURE_JOB_MAX_ATTEMPTS,
    )


def _lock_state_row(conn: Connection, repo: str, base: str) -> tuple[int, Any, int] | None:
    row = conn.execute(
        select(QueueStateRow.id, QueueStateRow.state, QueueStateRow.version)
        .where(QueueStateRow.repo_full_name == repo, QueueStateRow.base_branch == base)
        .with_for_update()
    ).one_or_none()
    return None if row is None else (row.id, row.state, row.version)


def _insert_effect(conn: Connection, repo: str, base: str, effect: Effect, now: datetime) -> None:
    inserted = insert_ignoring_conflicts(
        conn,
        OUTBOX,  # type: ignore[arg-type]
        {
            "key": effect.key,
            "repo_full_name": repo,
            "base_branch": base,
            "kind": type(effect).__name__,
            "effect": encode_effect(effect),
            "state": OutboxState.PENDING,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
        ["key"],
    )
    if inserted:
        enqueue_in(
            conn,
            NewJob(
                kind=EFFECT_JOB,
                key=effect_job_key(effect.key),
                payload={"key": effect.key},
                priority=EFFECT_JOB_PRIORITY,
                max_attempts=EFFECT_JOB_MAX_ATTEMPTS,
            ),
            database_now(conn),
        )
    else:
        log.info("effect already in the outbox", extra={"effect_key": effect.key})


def _record(row: Any) -> OutboxRecord:
    return OutboxRecord(
        id=row.id,
        key=row.key,
        repo=row.repo_full_name,
        base=row.base_branch,
        effect=decode_effect(row.effect),
        state=OutboxState(row.state),
        attempts=row.attempts,
        result=row.result,
        error=row.error,
    )
