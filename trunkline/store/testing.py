"""Test support that ships with the package: scratch databases and an "effect" worker process.

Performs I/O (creates and drops databases, runs worker processes). Used by trunkline's own
tests, the intake benchmark, and anyone testing code built on the durable core.

`python -m trunkline.store.testing worker URL --threads N --lease S --marker-dir DIR` runs a
worker pool whose only job kind, `effect`, inserts one row into the `effects` table per run
(no unique constraint: a job run twice shows up twice). A job with payload `{"hold": true}`
first leaves a marker file and then blocks forever, unless its marker already exists: that is
a job "in progress" for crash tests (kill the worker while it holds the job).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy import Engine, text

from trunkline.store.engine import make_engine, normalize_url
from trunkline.store.jobs import ClaimedJob, JobStore
from trunkline.store.runner import HandlerRegistry, RunnerConfig, WorkerPool
from trunkline.store.schema import upgrade

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
EFFECT = "effect"


def migrated_engine(url: str) -> Engine:
    """An engine on `url` after running every migration (for fresh scratch databases only)."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


@contextlib.contextmanager
def temporary_postgres(
    admin_url: str = DEFAULT_POSTGRES_ADMIN_URL, *, durable_commits: bool = True
) -> Iterator[str]:
    """A fresh PostgreSQL database (psycopg 3 URL), dropped afterwards.

    `durable_commits=False` sets `synchronous_commit = off` on the scratch database: commits
    no longer wait for the server's WAL flush (lost only if the *server* crashes). Locking,
    isolation and visibility are unchanged, so concurrency tests stay meaningful and run
    several times faster on slow disks.
    """
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"trunkline_scratch_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        if not durable_commits:
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    base = plain.rsplit("/", 1)[0]
    try:
        yield normalize_url(f"{base}/{name}")
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_effects_table(engine: Engine) -> None:
    serial = "INTEGER PRIMARY KEY" if engine.dialect.name == "sqlite" else "BIGSERIAL PRIMARY KEY"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS effects (id {serial}, job_key VARCHAR(300) NOT NULL, "
                "worker VARCHAR(200) NOT NULL)"
            )
        )


def effect_handler(engine: Engine, marker_dir: Path | None) -> HandlerRegistry:
    registry = HandlerRegistry()

    def handle(job: ClaimedJob) -> None:
        if job.payload.get("hold") and marker_dir is not None:
            marker = marker_dir / f"job-{job.id}"
            if not marker.exists():
                marker.write_text(job.claimed_by)
                while True:  # hold the job until this process is killed
                    time.sleep(3600)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO effects (job_key, worker) VALUES (:key, :worker)"),
                {"key": job.key, "worker": job.claimed_by},
            )

    registry.register(EFFECT, handle)
    return registry


def run_effect_worker(
    url: str, *, threads: int, lease_seconds: float, marker_dir: Path | None
) -> None:
    engine = make_engine(url)
    store = JobStore(engine, lease_seconds=lease_seconds)
    config = RunnerConfig(
        threads=threads, poll_seconds=0.05, heartbeat_seconds=max(lease_seconds / 3, 0.05)
    )
    pool = WorkerPool(store, effect_handler(engine, marker_dir), config, name="effect")
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pool.start()
    print(f"ready {os.getpid()}", flush=True)
    stop.wait()
    pool.stop(timeout=5)
    engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trunkline.store.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker")
    worker.add_argument("url")
    worker.add_argument("--threads", type=int, default=1)
    worker.add_argument("--lease", type=float, default=30.0)
    worker.add_argument("--marker-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    run_effect_worker(
        args.url, threads=args.threads, lease_seconds=args.lease, marker_dir=args.marker_dir
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
