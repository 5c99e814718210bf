"""CLI commands: `trunkline dashboard`, `status`, `timeline` and `bench dashboard`.

Performs I/O (database reads, a web server, stdout). Settings are read once here, at the
composition root. `dashboard` binds 127.0.0.1 by default and refuses a non-loopback address
unless TRUNKLINE_DASHBOARD_TOKEN is set.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any


def register(commands: Any, bench: Any) -> None:
    dashboard = commands.add_parser("dashboard", help="serve the read-only dashboard and /metrics")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8001, help="port (8001)")
    dashboard.set_defaults(handler=_dashboard)

    status = commands.add_parser("status", help="work items, merge queues, locks, spend today")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_status)

    timeline = commands.add_parser("timeline", help="the timeline of one work item")
    timeline.add_argument("ref", metavar="OWNER/REPO#N", help="the work item's issue")
    timeline.add_argument("--json", action="store_true", help="print one JSON object")
    timeline.set_defaults(handler=_timeline)

    measure = bench.add_parser("dashboard", help="page, /metrics and live-feed poll costs")
    measure.add_argument("--items", type=int, default=2000, help="work items in the store")
    measure.add_argument("--repeat", type=int, default=20, help="timed requests per page")
    measure.add_argument("--json", action="store_true", help="print one JSON object")
    measure.add_argument(
        "--postgres-admin-url",
        default=None,
        help="also measure on a scratch database on this PostgreSQL server",
    )
    measure.set_defaults(handler=_bench)


def _engine() -> Any:
    from trunkline.settings import load_settings
    from trunkline.store.engine import engine_from_settings

    settings = load_settings()
    return settings, engine_from_settings(settings)


def _dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from trunkline.clock import SystemClock
    from trunkline.telemetry import configure_logging
    from trunkline.web.app import create_dashboard_app
    from trunkline.web.auth import is_loopback

    settings, engine = _engine()
    if not is_loopback(args.host) and settings.dashboard_token is None:
        print(
            f"error: refusing to expose the dashboard on {args.host} without a token; "
            "set TRUNKLINE_DASHBOARD_TOKEN (or bind 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings)
    servers: list[uvicorn.Server] = []
    app = create_dashboard_app(
        engine, settings, SystemClock(), should_stop=lambda: any(s.should_exit for s in servers)
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    servers.append(uvicorn.Server(config))
    # uvicorn shuts down gracefully on SIGTERM and re-raises it afterwards; a handler that
    # returns turns that into a normal exit (status 0, clean-up below runs).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _after_shutdown)
    try:
        servers[0].run()
    finally:
        engine.dispose()
    return 0


def _after_shutdown(signum: int, _: FrameType | None) -> None:
    logging.getLogger(__name__).info("dashboard stopped", extra={"signal": signum})


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trunkline.clock import SystemClock
    from trunkline.web.queries import load_overview
    from trunkline.web.terminal import overview_json, print_overview

    settings, engine = _engine()
    try:
        overview = load_overview(engine, SystemClock().now(), settings.daily_budget_usd)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(overview_json(overview)))
    else:
        print_overview(Console(), overview)
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trunkline.web.queries import load_work_item
    from trunkline.web.terminal import detail_json, parse_ref, print_timeline
    from trunkline.web.timeline import Links, build_entries

    try:
        repo, number = parse_ref(args.ref)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings, engine = _engine()
    try:
        detail = load_work_item(engine, repo, number)
    finally:
        engine.dispose()
    if detail is None:
        print(f"error: no work item {repo}#{number} in the store", file=sys.stderr)
        return 1
    entries = build_entries(detail.events, detail.steps, Links(settings.github_web_url, repo))
    if args.json:
        print(json.dumps(detail_json(detail, entries, settings.github_web_url)))
    else:
        print_timeline(Console(), detail, entries, settings.github_web_url)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from trunkline.web.bench import format_report, run_dashboard_bench

    results = run_dashboard_bench(args.items, args.repeat, args.postgres_admin_url)
    print(json.dumps(results) if args.json else format_report(results))
    return 0
