"""CLI of the locks area: `trunkline locks [--repo R] [--json]`, `trunkline bench locks`.

Performs I/O (database, stdout). Settings are read once here, at the composition root.
Lists every lease row that has a holder (live, or expired and not yet reclaimed) with its
epoch and expiry on the database clock, and every waiter in line order.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trunkline.locks.leases import LockSnapshot


def register(commands: Any, bench: Any) -> None:
    locks = commands.add_parser(
        "locks", help="subsystem leases: holders, epochs, expiry and waiters"
    )
    locks.add_argument("--repo", default=None, metavar="OWNER/NAME", help="only this repository")
    locks.add_argument("--json", action="store_true", help="one JSON object on stdout")
    locks.set_defaults(handler=_locks)

    bench_locks = bench.add_parser(
        "locks", help="lease grants per second and acquire latency under contention"
    )
    bench_locks.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    bench_locks.add_argument("--threads", type=int, default=4)
    bench_locks.add_argument("--iterations", type=int, default=100, help="grants per thread")
    bench_locks.add_argument("--json", action="store_true", help="one JSON object on stdout")
    bench_locks.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from trunkline.locks.bench import run

    result = run(args.backend, max(1, args.threads), max(1, args.iterations)).as_json()
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"locks on {result['backend']}: {result['grants']} grants by {result['threads']} threads "
        f"in {result['seconds']}s = {result['grants_per_second']} grants/s; acquire latency "
        f"p50 {result['acquire_ms_p50']} ms, p95 {result['acquire_ms_p95']} ms (incl. waiting); "
        f"max holders {result['max_holders']} (max_active {result['max_active']})"
    )
    return 0


def _locks(args: argparse.Namespace) -> int:
    from trunkline.errors import ConfigurationError
    from trunkline.locks.leases import LockManager
    from trunkline.settings import load_settings
    from trunkline.store.engine import engine_from_settings
    from trunkline.store.schema import require_current

    engine = engine_from_settings(load_settings())
    try:
        try:
            require_current(engine)
        except ConfigurationError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        snapshot = LockManager(engine).snapshot(args.repo)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(snapshot_as_json(snapshot), indent=2))
    else:
        print(render_table(snapshot))
    return 0


def snapshot_as_json(snapshot: LockSnapshot) -> dict[str, Any]:
    return {
        "now": snapshot.now.isoformat(),
        "leases": [
            {
                "repo": repo,
                "subsystem": row.subsystem,
                "slot": row.slot,
                "holder": row.holder,
                "epoch": row.epoch,
                "acquired_at": row.acquired_at.isoformat() if row.acquired_at else None,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                "live": row.live(snapshot.now),
            }
            for repo, row in snapshot.leases
        ],
        "waiters": [
            {
                "repo": repo,
                "id": row.id,
                "subsystem": row.subsystem,
                "holder": row.holder,
                "requested_at": row.requested_at.isoformat(),
            }
            for repo, row in snapshot.waiters
        ],
    }


def render_table(snapshot: LockSnapshot) -> str:
    lines: list[str] = []
    if not snapshot.leases:
        lines.append("no leases held")
    else:
        lines.append(
            f"{'REPOSITORY':<30} {'SUBSYSTEM':<20} {'SLOT':>4} {'EPOCH':>6}  {'HOLDER':<30} EXPIRES"
        )
        for repo, row in snapshot.leases:
            if row.expires_at is None:
                expiry = "-"
            elif row.live(snapshot.now):
                seconds = (row.expires_at - snapshot.now).total_seconds()
                expiry = f"in {seconds:.0f}s ({row.expires_at:%Y-%m-%d %H:%M:%S}Z)"
            else:
                expiry = f"EXPIRED ({row.expires_at:%Y-%m-%d %H:%M:%S}Z)"
            lines.append(
                f"{repo[:30]:<30} {row.subsystem[:20]:<20} {row.slot:>4} {row.epoch:>6}  "
                f"{(row.holder or '')[:30]:<30} {expiry}"
            )
    if snapshot.waiters:
        lines.append("")
        lines.append(f"{'REPOSITORY':<30} {'SUBSYSTEM':<20} {'LINE':>6}  {'WAITER':<30} ASKED")
        for repo, waiter in snapshot.waiters:
            lines.append(
                f"{repo[:30]:<30} {waiter.subsystem[:20]:<20} {waiter.id:>6}  "
                f"{waiter.holder[:30]:<30} {waiter.requested_at:%Y-%m-%d %H:%M:%S}Z"
            )
    return "\n".join(lines)
