"""Worker processes on one PostgreSQL: 8 workers drain 5,000 jobs with each handler effect
exactly once; a worker killed with SIGKILL while holding a job loses nothing (another worker
completes the job after the lease expires, and no job completes twice)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from sqlalchemy import Engine, text

from trunkline.store.jobs import JobStore, NewJob
from trunkline.store.testing import (
    EFFECT,
    create_effects_table,
    migrated_engine,
    temporary_postgres,
)


@pytest.fixture
def postgres_engine() -> Iterator[tuple[str, Engine]]:
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL, durable_commits=False) as url:
        engine = migrated_engine(url)
        create_effects_table(engine)
        try:
            yield url, engine
        finally:
            engine.dispose()


class Workers:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(
        self, url: str, *, lease: float, marker_dir: Path | None = None
    ) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            "-m",
            "trunkline.store.testing",
            "worker",
            url,
            "--lease",
            str(lease),
        ]
        if marker_dir is not None:
            command += ["--marker-dir", str(marker_dir)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers() -> Iterator[Workers]:
    pool = Workers()
    try:
        yield pool
    finally:
        pool.stop_all()


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _effects(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT count(*), count(DISTINCT job_key) FROM effects")).one()
    return int(row[0]), int(row[1])


@pytest.mark.slow
@pytest.mark.postgres
def test_eight_workers_drain_5000_jobs_with_each_effect_exactly_once(
    postgres_engine: tuple[str, Engine], workers: Workers
) -> None:
    url, engine = postgres_engine
    store = JobStore(engine, lease_seconds=60)
    jobs = [NewJob(kind=EFFECT, key=f"drain-{index}") for index in range(5000)]
    assert store.enqueue_many(jobs) == 5000
    for _ in range(8):
        workers.start(url, lease=60)
    _wait_for(lambda: store.counts().get("done", 0) == 5000, 150, "5,000 jobs done")
    assert store.counts() == {"done": 5000}
    assert _effects(engine) == (5000, 5000)
    with engine.connect() as conn:
        runners = conn.execute(text("SELECT count(DISTINCT worker) FROM effects")).scalar_one()
        attempts = conn.execute(text("SELECT max(attempts) FROM jobs")).scalar_one()
    assert runners > 1  # the work really was shared
    assert attempts == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_a_killed_workers_job_is_completed_by_another_after_its_lease_expires(
    postgres_engine: tuple[str, Engine], workers: Workers, tmp_path: Path
) -> None:
    url, engine = postgres_engine
    store = JobStore(engine, lease_seconds=2)
    store.enqueue_many([NewJob(kind=EFFECT, key=f"plain-{index}") for index in range(20)])
    victim = workers.start(url, lease=2, marker_dir=tmp_path)
    _wait_for(lambda: store.counts().get("done", 0) == 20, 60, "the plain jobs")
    store.enqueue(NewJob(kind=EFFECT, key="held", payload={"hold": True}))
    _wait_for(lambda: any(tmp_path.glob("job-*")), 60, "the victim to hold the job")
    (held,) = [job for job in store.list(state="running") if job.key == "held"]
    assert held.claimed_by is not None
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=20)
    assert _effects(engine) == (20, 20)
    workers.start(url, lease=2, marker_dir=tmp_path)
    _wait_for(lambda: store.counts() == {"done": 21}, 60, "the held job to be completed")
    assert _effects(engine) == (21, 21)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT attempts, state FROM jobs WHERE key = 'held'")).one()
        worker = conn.execute(
            text("SELECT worker FROM effects WHERE job_key = 'held'")
        ).scalar_one()
    assert tuple(row) == (2, "done")
    assert worker != held.claimed_by
