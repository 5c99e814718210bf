"""CLI commands of the bot: `trunkline serve`, `trunkline worker`, `trunkline bench intake`.

Performs I/O (sockets, threads, database, stdout). Settings are read once here, at the
composition root, and passed down. Both long-running commands refuse to start on a database
whose schema is not current and say to run `trunkline db upgrade`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


def register(commands: Any, bench: Any) -> None:
    serve = commands.add_parser("serve", help="run web intake, job workers and scheduler")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None, help="job worker threads")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run job workers only")
    worker.add_argument("--workers", type=int, default=None, help="job worker threads")
    worker.set_defaults(handler=_worker)

    intake = bench.add_parser("intake", help="webhook intake throughput and latency")
    intake.add_argument("--json", action="store_true", help="print one JSON object")
    intake.add_argument("--seconds", type=float, default=5.0, help="measuring time per target")
    intake.add_argument("--clients", type=int, default=8, help="concurrent connections")
    intake.add_argument(
        "--postgres-admin-url",
        default=None,
        help="server to create a scratch database on (default: TRUNKLINE_TEST_POSTGRES_URL "
        "or postgresql://postgres@127.0.0.1:5432/test)",
    )
    intake.set_defaults(handler=_bench_intake)


def _prepare(args: argparse.Namespace) -> Any:
    from trunkline.bot.service import build_service
    from trunkline.bot.wiring import configure_bot
    from trunkline.settings import load_settings
    from trunkline.store.schema import require_current
    from trunkline.telemetry import configure_logging

    settings = load_settings()
    configure_logging(settings)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    service = build_service(settings, configure=configure_bot)
    require_current(service.engine)
    threads = args.workers if args.workers is not None else settings.worker_threads
    return service, max(0, threads)


def _serve(args: argparse.Namespace) -> int:
    from trunkline.bot.service import serve
    from trunkline.errors import ConfigurationError

    try:
        service, threads = _prepare(args)
        return serve(service, host=args.host, port=args.port, threads=threads)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _worker(args: argparse.Namespace) -> int:
    from trunkline.bot.service import work
    from trunkline.errors import ConfigurationError

    try:
        service, threads = _prepare(args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return work(service, threads=max(1, threads))


def _bench_intake(args: argparse.Namespace) -> int:
    import os

    from trunkline.bot.bench import DEFAULT_POSTGRES_URL, format_report, run_intake_bench

    admin = args.postgres_admin_url or os.environ.get(
        "TRUNKLINE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL
    )
    results = run_intake_bench(seconds=args.seconds, clients=args.clients, postgres_admin_url=admin)
    if args.json:
        print(json.dumps(results))
    else:
        print(format_report(results))
    return 0
