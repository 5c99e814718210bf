"""Test support that ships with the package: lease hammering workers and a fenced holder process.

Performs I/O (database, files, stdin/stdout). Used by trunkline's own tests and the
`trunkline bench locks` benchmark.

- `hammer(...)`: one worker acquiring random sets of subsystems in a loop (polling while it
  waits), holding briefly, releasing; every grant is recorded as a `GrantRecord` whose
  interval lies inside the real lease (started after the grant committed, ended before the
  release began; `time.monotonic` is one clock for every process of the machine).
  `max_overlap` then says how many holders a subsystem ever had at once.
- `python -m trunkline.locks.testing hammer URL --repo R --holder H --subsystems a:1,b:2
  --iterations N --out FILE` runs one hammer worker in its own process (JSON lines to FILE).
- `python -m trunkline.locks.testing fenced-holder URL --repo R --holder H --subsystem S
  --ttl SECONDS`: acquires S, prints `granted EPOCH`, waits for a line on stdin,
  then tries one guarded write (`probe_bump`: the probe row named R gets value + 1 and writer H)
  and prints `wrote` or `stale`. The fencing test pauses it (SIGSTOP) past its lease.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from trunkline.locks.fencing import FencedWriter, StaleLease
from trunkline.locks.leases import Grant, LockManager
from trunkline.store.engine import make_engine


@dataclass(frozen=True)
class GrantRecord:
    holder: str
    epochs: dict[str, int]
    start: float
    end: float


class AcquireTimeoutError(RuntimeError):
    """A waiter was not granted within the deadline (a starvation or liveness bug)."""


def acquire_polling(
    manager: LockManager,
    repo: str,
    holder: str,
    subsystems: Mapping[str, int],
    ttl: timedelta,
    *,
    deadline_seconds: float = 120.0,
    poll_seconds: float = 0.002,
) -> Grant:
    """Ask again until granted (each ask keeps the place in line); raise after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    try:
        while True:
            outcome = manager.acquire(repo, holder, subsystems, ttl)
            if isinstance(outcome, Grant):
                return outcome
            if time.monotonic() > deadline:
                raise AcquireTimeoutError(
                    f"{holder} waited {deadline_seconds}s for {dict(subsystems)}"
                )
            time.sleep(poll_seconds)
    except BaseException:
        with contextlib.suppress(Exception):  # give the place in line up, best effort
            manager.leave_line(repo, holder)
        raise


def hammer(
    manager: LockManager,
    repo: str,
    holder: str,
    capacities: Mapping[str, int],
    iterations: int,
    *,
    seed: int = 0,
    ttl: timedelta = timedelta(seconds=120),
    hold_seconds: float = 0.002,
) -> list[GrantRecord]:
    """Acquire a random non-empty subset of `capacities` `iterations` times; record grants."""
    rng = random.Random(f"{seed}:{holder}")  # noqa: S311 (test workload, not security)
    names = sorted(capacities)
    records: list[GrantRecord] = []
    for _ in range(iterations):
        chosen = rng.sample(names, rng.randint(1, len(names)))
        rng.shuffle(chosen)  # callers name subsystems in any order
        grant = acquire_polling(manager, repo, holder, {n: capacities[n] for n in chosen}, ttl)
        start = time.monotonic()
        time.sleep(rng.uniform(0, hold_seconds))
        end = time.monotonic()
        manager.release(repo, holder)
        records.append(GrantRecord(holder, grant.epochs, start, end))
    return records


def max_overlap(records: Iterable[GrantRecord]) -> dict[str, int]:
    """The most grant intervals that overlapped at any instant, per subsystem."""
    events: dict[str, list[tuple[float, int]]] = {}
    for record in records:
        for name in record.epochs:
            events.setdefault(name, []).extend(((record.start, 1), (record.end, -1)))
    result: dict[str, int] = {}
    for name, points in events.items():
        current = peak = 0
        for _, change in sorted(points):  # at equal times an end (-1) sorts first
            current += change
            peak = max(peak, current)
        result[name] = peak
    return result


def parse_capacities(spec: str) -> dict[str, int]:
    """`a:1,b:2` -> {"a": 1, "b": 2}."""
    result: dict[str, int] = {}
    for part in spec.split(","):
        name, _, count = part.partition(":")
        result[name.strip()] = int(count or 1)
    return result


PROBE_TABLE = "locks_fence_probe"


def create_probe(engine: Engine, name: str) -> None:
    """The fencing tests' target: a row `name` with a counter and the last writer."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS locks_fence_probe (name VARCHAR(300) PRIMARY KEY, "
                "writer VARCHAR(300), value INTEGER NOT NULL)"
            )
        )
        conn.execute(
            text("INSERT INTO locks_fence_probe (name, writer, value) VALUES (:name, NULL, 0)"),
            {"name": name},
        )


def probe_bump(name: str, writer: str) -> Callable[[Connection], int]:
    """A write for `FencedWriter.write`: add one to the probe row, sign it with `writer`."""

    def write(conn: Connection) -> int:
        result = conn.execute(
            text(
                "UPDATE locks_fence_probe SET value = value + 1, writer = :writer "
                "WHERE name = :name"
            ),
            {"writer": writer, "name": name},
        )
        return int(result.rowcount)

    return write


def probe_row(engine: Engine, name: str) -> tuple[str | None, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT writer, value FROM locks_fence_probe WHERE name = :name"),
            {"name": name},
        ).one()
        conn.rollback()
    return row.writer, int(row.value)


def _fenced_holder(args: argparse.Namespace) -> int:
    engine = make_engine(args.url)
    try:
        manager = LockManager(engine)
        grant = acquire_polling(
            manager, args.repo, args.holder, {args.subsystem: 1}, timedelta(seconds=args.ttl)
        )
        print(f"granted {grant.epochs[args.subsystem]}", flush=True)
        sys.stdin.readline()
        write = probe_bump(args.repo, args.holder)
        try:
            FencedWriter(engine).write(args.repo, args.holder, grant.epochs, write)
        except StaleLease as error:
            print(f"stale {error}", flush=True)
            return 0
        print("wrote", flush=True)
        return 0
    finally:
        engine.dispose()


def _hammer_process(args: argparse.Namespace) -> int:
    engine = make_engine(args.url, **engine_options(args.url))
    try:
        records = hammer(
            LockManager(engine),
            args.repo,
            args.holder,
            parse_capacities(args.subsystems),
            args.iterations,
            seed=args.seed,
        )
    finally:
        engine.dispose()
    Path(args.out).write_text("".join(json.dumps(asdict(record)) + "\n" for record in records))
    return 0


def engine_options(url: str) -> dict[str, object]:
    """Small pools; on PostgreSQL commits skip the WAL flush wait (tests and benchmarks only)."""
    if url.startswith("sqlite"):
        return {}
    return {
        "pool_size": 2,
        "max_overflow": 2,
        "connect_args": {"options": "-c synchronous_commit=off"},
    }


def read_records(path: Path) -> list[GrantRecord]:
    return [GrantRecord(**json.loads(line)) for line in path.read_text().splitlines() if line]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trunkline.locks.testing")
    commands = parser.add_subparsers(dest="command", required=True)
    holder = commands.add_parser("fenced-holder")
    holder.add_argument("url")
    holder.add_argument("--repo", required=True)
    holder.add_argument("--holder", required=True)
    holder.add_argument("--subsystem", required=True)
    holder.add_argument("--ttl", type=float, required=True)
    holder.set_defaults(run=_fenced_holder)
    worker = commands.add_parser("hammer")
    worker.add_argument("url")
    worker.add_argument("--repo", required=True)
    worker.add_argument("--holder", required=True)
    worker.add_argument("--subsystems", required=True)
    worker.add_argument("--iterations", type=int, default=20)
    worker.add_argument("--seed", type=int, default=0)
    worker.add_argument("--out", required=True)
    worker.set_defaults(run=_hammer_process)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
