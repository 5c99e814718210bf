"""Leases under real concurrency on SQLite and PostgreSQL: threads acquiring overlapping sets
in opposite orders never deadlock, and processes hammering acquire/release never put more than
max_active holders on a subsystem. Every waiter finishes all its rounds (no starvation)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from trunkline.locks.leases import Grant, LockManager
from trunkline.locks.testing import (
    GrantRecord,
    acquire_polling,
    engine_options,
    hammer,
    max_overlap,
    read_records,
)
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade

CAPACITIES = {"api": 1, "docs": 2, "web": 3}
TTL = timedelta(seconds=120)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'locks.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def check_records(records: list[GrantRecord], capacities: dict[str, int]) -> None:
    peaks = max_overlap(records)
    assert peaks, "nothing was granted"
    for name, peak in peaks.items():
        assert peak <= capacities[name], f"{name}: {peak} holders at once, max {capacities[name]}"
    for name in peaks:
        epochs = [record.epochs[name] for record in records if name in record.epochs]
        assert len(epochs) == len(set(epochs)), f"{name}: an epoch was issued twice"
        if capacities[name] == 1:  # one holder at a time: epochs follow the grant order
            ordered = sorted((r for r in records if name in r.epochs), key=lambda r: r.start)
            assert [r.epochs[name] for r in ordered] == sorted(epochs)


def test_opposite_orders_never_deadlock(database_url: str) -> None:
    engine = make_engine(database_url, **engine_options(database_url))
    manager = LockManager(engine)
    repo = "acme/opposite"
    orders = [
        {"api": 1, "docs": 1},
        {"docs": 1, "api": 1},
        {"web": 1, "docs": 1, "api": 1},
    ]
    records: list[GrantRecord] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def work(index: int) -> None:
        holder = f"thread-{index}"
        try:
            for _ in range(25):
                grant = acquire_polling(manager, repo, holder, orders[index], TTL)
                start = time.monotonic()
                end = time.monotonic()
                manager.release(repo, holder)
                with guard:
                    records.append(GrantRecord(holder, grant.epochs, start, end))
        except BaseException as error:
            with guard:
                errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(orders))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
        assert not errors, errors
        assert len(records) == 25 * len(orders)
        check_records(records, {"api": 1, "docs": 1, "web": 1})
        assert not manager.snapshot(repo).leases
    finally:
        engine.dispose()


def test_processes_hammering_never_exceed_max_active(database_url: str, tmp_path: Path) -> None:
    repo = "acme/hammer"
    spec = ",".join(f"{name}:{count}" for name, count in CAPACITIES.items())
    workers = 4
    iterations = 15
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes: list[subprocess.Popen[bytes]] = []
    outputs = [tmp_path / f"worker-{index}.jsonl" for index in range(workers)]
    try:
        for index, out in enumerate(outputs):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "trunkline.locks.testing",
                        "hammer",
                        database_url,
                        "--repo",
                        repo,
                        "--holder",
                        f"process-{index}",
                        "--subsystems",
                        spec,
                        "--iterations",
                        str(iterations),
                        "--seed",
                        str(index),
                        "--out",
                        str(out),
                    ],
                    env=environment,
                    stderr=subprocess.PIPE,
                )
            )
        for process in processes:
            _, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr.decode()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    records = [record for out in outputs for record in read_records(out)]
    assert len(records) == workers * iterations  # every worker got every turn
    check_records(records, CAPACITIES)
    engine = make_engine(database_url)
    try:
        snapshot = LockManager(engine).snapshot(repo)
        assert not snapshot.leases
        assert not snapshot.waiters
    finally:
        engine.dispose()


def test_threads_hammering_one_engine(database_url: str) -> None:
    engine = make_engine(database_url, **engine_options(database_url))
    manager = LockManager(engine)
    results: dict[int, list[GrantRecord]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = hammer(
                manager, "acme/threads", f"thread-{index}", CAPACITIES, 15, seed=index
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in threads)
        assert not errors, errors
        check_records([record for batch in results.values() for record in batch], CAPACITIES)
    finally:
        engine.dispose()


def test_a_waiter_for_everything_is_not_starved_by_churn(database_url: str) -> None:
    """Three threads keep taking single subsystems; a fourth needs all three. Once it is in line
    nobody overtakes it: each churner gets at most the one turn it was already owed."""
    engine = make_engine(database_url, **engine_options(database_url))
    manager = LockManager(engine)
    repo = "acme/churn"
    names = ["api", "docs", "web"]
    stop = threading.Event()
    grants: list[tuple[str, float]] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def churn(index: int) -> None:
        holder = f"churner-{index}"
        try:
            while not stop.is_set():
                acquire_polling(manager, repo, holder, {names[index]: 1}, TTL)
                started = time.monotonic()
                with guard:
                    grants.append((holder, started))
                time.sleep(0.003)
                manager.release(repo, holder)
        except BaseException as error:
            with guard:
                errors.append(error)

    churners = [threading.Thread(target=churn, args=(index,)) for index in range(3)]
    try:
        for thread in churners:
            thread.start()
        deadline = time.monotonic() + 60
        while len(grants) < 10:  # churn is under way
            assert not errors, errors
            assert time.monotonic() < deadline, "the churners never got going"
            time.sleep(0.01)
        everything = dict.fromkeys(names, 1)
        while isinstance(manager.acquire(repo, "big", everything, TTL), Grant):
            manager.release(repo, "big")  # it got lucky; ask again until it must wait
        in_line = time.monotonic()
        grant = acquire_polling(manager, repo, "big", everything, TTL)
        granted = time.monotonic()
        assert sorted(grant.epochs) == names
        manager.release(repo, "big")
    finally:
        stop.set()
        for thread in churners:
            thread.join(timeout=120)
        engine.dispose()
    assert not errors, errors
    overtakers = [holder for holder, started in grants if in_line < started < granted]
    assert len(overtakers) <= len(churners), overtakers
