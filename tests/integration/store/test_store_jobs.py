"""The job table on real SQLite and PostgreSQL: idempotent enqueue, claims, leases, dead letter."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from sqlalchemy import Engine, text, update

from trunkline.errors import RetryableError, TerminalError
from trunkline.store.backoff import BackoffPolicy
from trunkline.store.jobs import JobStore, NewJob
from trunkline.store.runner import HandlerRegistry, RunnerConfig, WorkerPool
from trunkline.store.tables import Job, JobState
from trunkline.store.testing import migrated_engine, temporary_postgres


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = migrated_engine(f"sqlite:///{tmp_path_factory.mktemp('jobs') / 'jobs.db'}")
        yield engine
        engine.dispose()
        return
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL) as url:
        engine = migrated_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture
def engine(module_engine: Engine) -> Engine:
    with module_engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs"))
    return module_engine


def _state(engine: Engine, key: str) -> tuple[str, int, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT state, attempts, last_error FROM jobs WHERE key = :key"), {"key": key}
        ).one()
    return row[0], row[1], row[2]


def _expire_leases(engine: Engine) -> None:
    """Move every lease into the past, as if its worker had died long ago."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET lease_expires_at = run_at, heartbeat_at = run_at "
                "WHERE state = 'running'"
            )
        )


def test_duplicate_enqueue_is_a_no_op(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    assert store.enqueue(NewJob(kind="k", key="same", payload={"n": 1}))
    assert not store.enqueue(NewJob(kind="k", key="same", payload={"n": 2}))
    assert store.enqueue_many([NewJob(kind="k", key="same"), NewJob(kind="k", key="other")]) == 1
    jobs = store.list()
    assert sorted(job.key for job in jobs) == ["other", "same"]
    claimed = store.claim("w", limit=5)
    assert {job.key: job.payload for job in claimed}["same"] == {"n": 1}


def test_claims_follow_priority_then_age_and_respect_run_at(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    store.enqueue(NewJob(kind="k", key="low-old", priority=0))
    store.enqueue(NewJob(kind="k", key="high", priority=5))
    store.enqueue(NewJob(kind="k", key="later", priority=9, delay_seconds=3600))
    store.enqueue(NewJob(kind="k", key="low-new", priority=0))
    keys = [job.key for job in store.claim("w", limit=10)]
    assert keys == ["high", "low-old", "low-new"]
    assert store.claim("w") == []
    assert _state(engine, "later")[0] == JobState.QUEUED


def test_a_claimed_job_is_not_claimed_again_until_its_lease_expires(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    store.enqueue(NewJob(kind="k", key="a"))
    first = store.claim("worker-1")
    assert [job.key for job in first] == ["a"]
    assert first[0].attempts == 1
    assert store.claim("worker-2") == []
    assert store.heartbeat(first[0])
    _expire_leases(engine)
    second = store.claim("worker-2")
    assert [job.attempts for job in second] == [2]
    # The first worker was fenced off: its late writes change nothing.
    assert not store.heartbeat(first[0])
    assert not store.finish(first[0])
    assert not store.fail(first[0], "late", dead=True, delay_seconds=0)
    assert store.finish(second[0])
    assert _state(engine, "a")[0] == JobState.DONE


def test_failures_retry_later_then_go_dead_and_can_be_retried(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    store.enqueue(NewJob(kind="k", key="flaky", max_attempts=2))
    (job,) = store.claim("w")
    assert store.fail(job, "RetryableError: 502", dead=False, delay_seconds=3600)
    assert _state(engine, "flaky") == (JobState.QUEUED, 1, "RetryableError: 502")
    assert store.claim("w") == []  # not due yet
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.key == "flaky").values(run_at=Job.created_at))
    (job,) = store.claim("w")
    assert job.attempts == 2
    assert store.fail(job, "gave up", dead=True, delay_seconds=0)
    assert [record.key for record in store.list(state=JobState.DEAD)] == ["flaky"]
    assert store.counts() == {"dead": 1}
    assert store.retry(job.id)
    assert not store.retry(job.id)  # no longer dead
    assert not store.retry(999_999)
    assert _state(engine, "flaky") == (JobState.QUEUED, 0, "gave up")
    assert [claimed.attempts for claimed in store.claim("w")] == [1]


def test_sweep_requeues_expired_jobs_and_dead_letters_spent_ones(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    store.enqueue(NewJob(kind="k", key="again", max_attempts=3))
    store.enqueue(NewJob(kind="k", key="spent", max_attempts=1))
    assert len(store.claim("dead-worker", limit=2)) == 2
    _expire_leases(engine)
    result = store.sweep()
    assert (result.requeued, result.dead) == (1, 1)
    assert _state(engine, "again")[0] == JobState.QUEUED
    assert _state(engine, "spent")[0] == JobState.DEAD


def test_an_expired_job_on_its_last_attempt_is_not_claimed_but_swept_dead(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    store.enqueue(NewJob(kind="k", key="last", max_attempts=1))
    store.claim("dead-worker")
    _expire_leases(engine)
    assert store.claim("w") == []
    assert store.sweep().dead == 1
    state, _, error = _state(engine, "last")
    assert state == JobState.DEAD
    assert error is not None
    assert "lease expired" in error


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_worker_pool_runs_handlers_and_applies_the_error_policy(engine: Engine) -> None:
    store = JobStore(engine, lease_seconds=30)
    registry = HandlerRegistry()
    calls: dict[str, int] = {}

    @registry.handler("ok")
    def ok(job) -> None:  # type: ignore[no-untyped-def]
        calls[job.key] = calls.get(job.key, 0) + 1

    @registry.handler("flaky")
    def flaky(job) -> None:  # type: ignore[no-untyped-def]
        calls[job.key] = calls.get(job.key, 0) + 1
        if calls[job.key] < 3:
            raise RetryableError("try again")

    @registry.handler("broken")
    def broken(job) -> None:  # type: ignore[no-untyped-def]
        raise TerminalError("never works")

    @registry.handler("crashing")
    def crashing(job) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("bug")

    store.enqueue_many(
        [
            NewJob(kind="ok", key="ok"),
            NewJob(kind="flaky", key="flaky"),
            NewJob(kind="broken", key="broken"),
            NewJob(kind="crashing", key="crashing", max_attempts=2),
            NewJob(kind="nobody", key="unknown-kind"),
        ]
    )
    config = RunnerConfig(
        threads=2,
        poll_seconds=0.02,
        heartbeat_seconds=1,
        backoff=BackoffPolicy(base_seconds=0.01, cap_seconds=0.05),
    )
    pool = WorkerPool(store, registry, config)
    pool.start()
    try:
        _wait_for(lambda: store.counts() == {"done": 2, "dead": 3})
    finally:
        pool.stop()
    assert calls == {"ok": 1, "flaky": 3}
    assert _state(engine, "broken") == (JobState.DEAD, 1, "TerminalError: never works")
    state, attempts, error = _state(engine, "crashing")
    assert (state, attempts) == (JobState.DEAD, 2)
    assert error is not None
    assert "RuntimeError: bug" in error
    unknown = _state(engine, "unknown-kind")
    assert unknown[0] == JobState.DEAD
    assert unknown[2] is not None
    assert "no handler" in unknown[2]
