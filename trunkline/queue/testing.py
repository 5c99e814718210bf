"""A merge queue bot worker process for tests: `python -m trunkline.queue.testing worker ...`.

Performs I/O (database, GitHub/forge HTTP, git, threads, signals). It runs what `trunkline
worker` runs, plus the queue: `process_delivery` (webhooks -> queue events) and
`queue_effect` jobs, wired as a bot is from its settings (`runtime_from_settings`: the
installation comes from the stored webhooks), with crash points read from
`TRUNKLINE_TEST_CRASH_AT` (so a test can SIGKILL it at a named point of the merge path and
start it again). Prints `ready <pid>` once
its workers run; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import httpx
from pydantic import SecretStr

from trunkline.bot.queue_events import queue_configure
from trunkline.bot.service import Service, build_service, work
from trunkline.clock import SystemClock
from trunkline.queue.composition import runtime_from_settings
from trunkline.settings import Settings
from trunkline.store.engine import make_engine


def run_queue_worker(args: argparse.Namespace) -> int:
    settings = Settings(
        database_url=args.database_url,
        data_dir=args.data_dir,
        webhook_secret=SecretStr("unused-by-workers"),
        job_lease_seconds=args.lease,
        worker_poll_seconds=0.05,
        github_api_url=args.api_url,
        github_app_id=str(args.app_id),
        github_private_key_path=args.key_path,
        github_web_url=args.web_url,
        github_bot_login=args.bot_login,
        github_min_write_interval=0.0,
    )
    engine = make_engine(args.database_url)
    http = httpx.Client(timeout=30)

    def configure(service: Service) -> None:
        runtime = runtime_from_settings(
            settings,
            engine,
            SystemClock(),
            http=http,
            environ=os.environ,
            redactor=service.redactor,
        )
        queue_configure(runtime.queues, runtime.runner)(service)

    service = build_service(settings, engine=engine, configure=configure)
    print(f"ready {os.getpid()}", flush=True)
    try:
        return work(service, threads=args.threads)
    finally:
        http.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trunkline.queue.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker")
    worker.add_argument("--database-url", required=True)
    worker.add_argument("--data-dir", type=Path, required=True)
    worker.add_argument("--api-url", required=True)
    worker.add_argument("--web-url", required=True)
    worker.add_argument("--app-id", required=True)
    worker.add_argument("--key-path", type=Path, required=True)
    worker.add_argument("--bot-login", default="trunkline[bot]")
    worker.add_argument("--lease", type=float, default=3.0)
    worker.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return run_queue_worker(args)


if __name__ == "__main__":
    raise SystemExit(main())
