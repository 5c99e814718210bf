"""Worker processes on one PostgreSQL: 8 workers drain 5,000 jobs with each handler effect
exactly once; a worker killed with SIGKILL while holding a job loses nothing (another worker
completes the job after the lease expires, and no job completes twice)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from processes import stop_processes, wait_until
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
        stop_processes(self.processes)


@pytest.fixture
def workers() -> Iterator[Workers]:
    pool = Workers()
    try:
        yield pool
    finally:
        pool.stop_all()


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
    wait_until("5,000 jobs done", lambda: store.counts().get("done", 0) == 5000, 150)
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
    wait_until("the plain jobs", lambda: store.counts().get("done", 0) == 20, 60)
    store.enqueue(NewJob(kind=EFFECT, key="held", payload={"hold": True}))
    wait_until("the victim to hold the job", lambda: any(tmp_path.glob("job-*")), 60)
    (held,) = [job for job in store.list(state="running") if job.key == "held"]
    assert held.claimed_by is not None
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=20)
    assert _effects(engine) == (20, 20)
    workers.start(url, lease=2, marker_dir=tmp_path)
    wait_until("the held job to be completed", lambda: store.counts() == {"done": 21}, 60)
    assert _effects(engine) == (21, 21)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT attempts, state FROM jobs WHERE key = 'held'")).one()
        worker = conn.execute(
            text("SELECT worker FROM effects WHERE job_key = 'held'")
        ).scalar_one()
    assert tuple(row) == (2, "done")
    assert worker != held.claimed_by
