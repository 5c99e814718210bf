"""Fencing acceptance: a lock holder paused (SIGSTOP) past its lease while another holder takes
the subsystem writes nothing when it resumes (SIGCONT) and gets StaleLease."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from trunkline.locks.fencing import FencedWriter
from trunkline.locks.leases import LockManager
from trunkline.locks.testing import acquire_polling, create_probe, probe_bump, probe_row
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'locks.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()


def read_line(process: subprocess.Popen[str], deadline_seconds: float = 60) -> str:
    """The next stdout line of `process`, failing (not hanging) if none comes in time."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                line = process.stdout.readline()
                assert line, f"holder exited early with {process.poll()}"
                return line.strip()
        raise AssertionError("the holder process said nothing in time")
    finally:
        selector.close()


def start_holder(url: str, repo: str, holder: str, ttl: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trunkline.locks.testing",
            "fenced-holder",
            url,
            "--repo",
            repo,
            "--holder",
            holder,
            "--subsystem",
            "api",
            "--ttl",
            str(ttl),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
    process.wait(timeout=30)


def resume_and_write(process: subprocess.Popen[str]) -> str:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    outcome = read_line(process)
    assert process.wait(timeout=60) == 0
    return outcome


def test_a_paused_holder_that_resumes_writes_nothing(database: tuple[str, Engine]) -> None:
    url, engine = database
    repo = f"acme/{uuid.uuid4().hex[:10]}"
    create_probe(engine, repo)
    paused = start_holder(url, repo, "item-paused", ttl=1.0)
    try:
        granted = read_line(paused)
        assert granted.startswith("granted ")
        old_epoch = int(granted.split()[1])
        os.kill(paused.pid, signal.SIGSTOP)
        # another holder waits in line until the paused one's lease runs out (database clock)
        manager = LockManager(engine)
        other = acquire_polling(manager, repo, "item-other", {"api": 1}, timedelta(seconds=120))
        assert other.epochs["api"] > old_epoch
        FencedWriter(engine).write(repo, "item-other", other.epochs, probe_bump(repo, "other"))
        assert probe_row(engine, repo) == ("other", 1)
        os.kill(paused.pid, signal.SIGCONT)
        outcome = resume_and_write(paused)
    finally:
        stop(paused)
    assert outcome.startswith("stale"), outcome
    assert probe_row(engine, repo) == ("other", 1)  # the stale holder changed nothing


def test_an_unpaused_holder_writes(database: tuple[str, Engine]) -> None:
    """The control: the same holder process, lease still live, does write."""
    url, engine = database
    repo = f"acme/{uuid.uuid4().hex[:10]}"
    create_probe(engine, repo)
    holder = start_holder(url, repo, "item-live", ttl=300.0)
    try:
        assert read_line(holder).startswith("granted ")
        outcome = resume_and_write(holder)
    finally:
        stop(holder)
    assert outcome == "wrote"
    assert probe_row(engine, repo) == ("item-live", 1)
