"""CLI commands of the store: `trunkline db upgrade|status`, `trunkline jobs [--dead] [--json]`,
`trunkline jobs retry ID`.

Performs I/O (database, stdout). Settings are read once here, at the composition root.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(commands: Any, bench: Any) -> None:
    db = commands.add_parser("db", help="database schema: upgrade, status")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION")
    db.set_defaults(handler=lambda _: _usage(db))
    upgrade = db_commands.add_parser("upgrade", help="migrate the database to this version")
    upgrade.set_defaults(handler=_db_upgrade)
    status = db_commands.add_parser("status", help="compare the database schema with this code")
    status.set_defaults(handler=_db_status)

    jobs = commands.add_parser("jobs", help="list durable jobs; `jobs retry ID` revives a dead one")
    jobs.add_argument("--dead", action="store_true", help="only dead-lettered jobs")
    jobs.add_argument("--state", choices=["queued", "running", "done", "dead"], default=None)
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true", help="one JSON list on stdout")
    jobs.set_defaults(handler=_jobs_list)
    jobs_commands = jobs.add_subparsers(dest="jobs_command", metavar="ACTION")
    retry = jobs_commands.add_parser("retry", help="queue a dead job again with fresh attempts")
    retry.add_argument("job_id", type=int, metavar="ID")
    retry.set_defaults(handler=_jobs_retry)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _engine() -> Any:
    from trunkline.settings import load_settings
    from trunkline.store.engine import engine_from_settings

    return engine_from_settings(load_settings())


def _db_upgrade(_: argparse.Namespace) -> int:
    from trunkline.store.schema import SchemaOutOfDateError, upgrade

    engine = _engine()
    try:
        status = upgrade(engine)
    except SchemaOutOfDateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(status.message)
    return 0


def _db_status(_: argparse.Namespace) -> int:
    from trunkline.store.schema import SchemaState, check_schema

    engine = _engine()
    try:
        status = check_schema(engine)
    finally:
        engine.dispose()
    print(status.message)
    return 0 if status.state is SchemaState.UP_TO_DATE else 1


def _jobs_store() -> Any:
    from trunkline.settings import load_settings
    from trunkline.store.engine import engine_from_settings
    from trunkline.store.jobs import JobStore
    from trunkline.store.schema import require_current

    settings = load_settings()
    engine = engine_from_settings(settings)
    require_current(engine)
    return JobStore(engine, lease_seconds=settings.job_lease_seconds)


def _jobs_list(args: argparse.Namespace) -> int:
    from trunkline.errors import ConfigurationError

    try:
        store = _jobs_store()
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = "dead" if args.dead else args.state
    records = store.list(state=state, limit=max(1, args.limit))
    store.engine.dispose()
    if args.json:
        print(json.dumps([record.as_json() for record in records], indent=2))
        return 0
    if not records:
        print("no jobs" + (f" in state {state}" if state else ""))
        return 0
    print(f"{'ID':>6}  {'STATE':<8} {'TRIES':>5}  {'KIND':<20} {'KEY':<40} LAST ERROR")
    for record in records:
        tries = f"{record.attempts}/{record.max_attempts}"
        last = record.last_error.splitlines()[0][:60] if record.last_error else ""
        print(
            f"{record.id:>6}  {record.state:<8} {tries:>5}  {record.kind[:20]:<20} "
            f"{record.key[:40]:<40} {last}"
        )
    return 0


def _jobs_retry(args: argparse.Namespace) -> int:
    from trunkline.errors import ConfigurationError

    try:
        store = _jobs_store()
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        revived = store.retry(args.job_id)
    finally:
        store.engine.dispose()
    if not revived:
        print(f"error: job {args.job_id} does not exist or is not dead", file=sys.stderr)
        return 1
    print(f"job {args.job_id} queued again")
    return 0
