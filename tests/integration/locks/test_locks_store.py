"""LockManager and fencing on real SQLite and real PostgreSQL: all-or-nothing, epochs, FIFO,
expiry on the database clock, renew, release, transfer, guarded writes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select

from trunkline.locks.decisions import BlockReason
from trunkline.locks.fencing import FencedWriter, StaleLease, guarded
from trunkline.locks.leases import Grant, LockManager, Waiting
from trunkline.locks.testing import create_probe, probe_bump, probe_row
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade
from trunkline.store.tables import Lock, LockWaiter

LONG = timedelta(seconds=120)
SHORT = timedelta(seconds=0.5)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'locks.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def repo() -> str:
    return f"acme/{uuid.uuid4().hex[:10]}"


def grant(outcome: Grant | Waiting) -> Grant:
    assert isinstance(outcome, Grant), outcome
    return outcome


def wait_for_expiry(manager: LockManager, repo: str, holder: str) -> None:
    """Poll the database clock until `holder` holds nothing live (no fixed sleeps)."""
    deadline = time.monotonic() + 60
    while manager.held(repo, holder):
        assert time.monotonic() < deadline, "lease never expired"
        time.sleep(0.05)


def test_all_or_nothing(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    grant(locks.acquire(repo, "item-1", {"docs": 1}, LONG))
    outcome = locks.acquire(repo, "item-2", {"api": 1, "docs": 1, "web": 2}, LONG)
    assert isinstance(outcome, Waiting)
    assert [(b.subsystem, b.reason, b.holders) for b in outcome.blockers] == [
        ("docs", BlockReason.FULL, ("item-1",))
    ]
    assert locks.held(repo, "item-2") == ()  # api and web were free, yet not taken
    with engine.connect() as conn:
        holders = conn.execute(
            select(Lock.subsystem, Lock.holder).where(Lock.repo_full_name == repo)
        ).all()
        waiting = conn.execute(
            select(LockWaiter.subsystem).where(
                LockWaiter.repo_full_name == repo, LockWaiter.holder == "item-2"
            )
        ).scalars()
        assert sorted(waiting) == ["api", "docs", "web"]
    assert {(s, h) for s, h in holders if h} == {("docs", "item-1")}
    locks.release(repo, "item-1")
    second = grant(locks.acquire(repo, "item-2", {"web": 2, "api": 1, "docs": 1}, LONG))
    assert sorted(second.epochs) == ["api", "docs", "web"]
    with engine.connect() as conn:
        left = conn.execute(
            select(func.count()).select_from(LockWaiter).where(LockWaiter.repo_full_name == repo)
        ).scalar_one()
    assert left == 0


def test_epochs_grow_and_are_never_reused(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    seen: list[int] = []
    for round_ in range(4):
        holder = f"item-{round_}"
        seen.append(grant(locks.acquire(repo, holder, {"api": 1}, LONG)).epochs["api"])
        assert grant(locks.acquire(repo, holder, {"api": 1}, LONG)).epochs["api"] == seen[-1]
        locks.release(repo, holder)
    first = grant(locks.acquire(repo, "x", {"docs": 2}, LONG)).epochs["docs"]
    second = grant(locks.acquire(repo, "y", {"docs": 2}, LONG)).epochs["docs"]
    locks.release(repo, "x")
    third = grant(locks.acquire(repo, "z", {"docs": 2}, LONG)).epochs["docs"]
    assert seen == sorted(set(seen))
    assert first < second < third  # across slots too


def test_max_active_slots(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    grant(locks.acquire(repo, "a", {"docs": 2}, LONG))
    grant(locks.acquire(repo, "b", {"docs": 2}, LONG))
    assert isinstance(locks.acquire(repo, "c", {"docs": 2}, LONG), Waiting)
    frozen = locks.acquire(repo, "d", {"frozen": 0}, LONG)
    assert isinstance(frozen, Waiting)
    assert frozen.blockers[0].reason is BlockReason.FROZEN


def test_fifo_per_subsystem_and_newcomers_wait_their_turn(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    grant(locks.acquire(repo, "holder", {"api": 1}, LONG))
    assert isinstance(locks.acquire(repo, "first", {"api": 1, "docs": 1}, LONG), Waiting)
    assert isinstance(locks.acquire(repo, "second", {"api": 1}, LONG), Waiting)
    # docs is free, but `first` waits for it: a newcomer may not overtake
    newcomer = locks.acquire(repo, "newcomer", {"docs": 1}, LONG, wait=False)
    assert isinstance(newcomer, Waiting)
    assert newcomer.blockers[0].reason is BlockReason.QUEUED
    assert newcomer.blockers[0].holders == ("first",)
    locks.release(repo, "holder")
    assert isinstance(locks.acquire(repo, "second", {"api": 1}, LONG), Waiting)
    grant(locks.acquire(repo, "first", {"api": 1, "docs": 1}, LONG))
    locks.release(repo, "first")
    grant(locks.acquire(repo, "second", {"api": 1}, LONG))
    grant(locks.acquire(repo, "newcomer", {"docs": 1}, LONG))


def test_cancel_leaves_the_line(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    grant(locks.acquire(repo, "holder", {"api": 1}, LONG))
    assert isinstance(locks.acquire(repo, "quitter", {"api": 1}, LONG), Waiting)
    assert isinstance(locks.acquire(repo, "impatient", {"api": 1}, LONG), Waiting)
    assert locks.release(repo, "quitter") == 0  # a cancel: no lease, leaves the line
    assert locks.leave_line(repo, "impatient") == 1
    locks.release(repo, "holder")
    grant(locks.acquire(repo, "later", {"api": 1}, LONG))


def test_a_stale_waiter_stops_holding_the_line(engine: Engine, repo: str) -> None:
    locks = LockManager(engine, waiter_ttl=timedelta(seconds=0.3))
    grant(locks.acquire(repo, "holder", {"api": 1}, LONG))
    assert isinstance(locks.acquire(repo, "vanished", {"api": 1}, LONG), Waiting)
    locks.release(repo, "holder")
    deadline = time.monotonic() + 60
    while not isinstance(locks.acquire(repo, "patient", {"api": 1}, LONG), Grant):
        assert time.monotonic() < deadline, "a vanished waiter blocked the line forever"
        time.sleep(0.05)


def test_expiry_and_reclaim_on_the_database_clock(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    old = grant(locks.acquire(repo, "sleepy", {"api": 1}, SHORT))
    wait_for_expiry(locks, repo, "sleepy")
    new = grant(locks.acquire(repo, "fresh", {"api": 1}, LONG))
    assert new.epochs["api"] > old.epochs["api"]
    with pytest.raises(StaleLease):
        locks.renew(repo, "sleepy", LONG, old.epochs)
    assert locks.renew(repo, "sleepy", LONG) == ()  # nothing live to renew
    snapshot = locks.snapshot(repo)
    assert [(row.holder, row.epoch) for _, row in snapshot.leases] == [("fresh", new.epochs["api"])]


def test_renew_keeps_the_lease_alive_and_the_epoch(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    first = grant(locks.acquire(repo, "worker", {"api": 1, "docs": 1}, LONG))
    renewed = locks.renew(repo, "worker", timedelta(seconds=600), first.epochs)
    assert {lease.subsystem: lease.epoch for lease in renewed} == first.epochs
    assert all(lease.expires_at > first.expires_at for lease in renewed)


def test_transfer_to_a_human_fences_the_old_holder(engine: Engine, repo: str) -> None:
    locks = LockManager(engine)
    bot = grant(locks.acquire(repo, "item-7", {"api": 1, "docs": 1}, LONG))
    taken = locks.transfer(repo, "item-7", "human:alice", LONG)
    assert {lease.subsystem: lease.holder for lease in taken.leases} == {
        "api": "human:alice",
        "docs": "human:alice",
    }
    assert all(lease.epoch > bot.epochs[lease.subsystem] for lease in taken.leases)
    assert locks.held(repo, "item-7") == ()
    with engine.begin() as conn, pytest.raises(StaleLease):
        guarded(conn, repo, "item-7", bot.epochs)
    with engine.begin() as conn:
        guarded(conn, repo, "human:alice", {lease.subsystem: lease.epoch for lease in taken.leases})


def test_fenced_writer_writes_only_under_the_current_lease(engine: Engine, repo: str) -> None:
    create_probe(engine, repo)
    locks = LockManager(engine)
    writer = FencedWriter(engine)
    old = grant(locks.acquire(repo, "old", {"api": 1}, SHORT))
    writer.write(repo, "old", old.epochs, probe_bump(repo, "old"))
    assert probe_row(engine, repo) == ("old", 1)
    wait_for_expiry(locks, repo, "old")
    with pytest.raises(StaleLease):  # expired, even before anyone else took it
        writer.write(repo, "old", old.epochs, probe_bump(repo, "old"))
    new = grant(locks.acquire(repo, "new", {"api": 1}, LONG))
    writer.write(repo, "new", new.epochs, probe_bump(repo, "new"))
    for epochs in (old.epochs, {"api": new.epochs["api"]}, {"api": new.epochs["api"] + 1}):
        with pytest.raises(StaleLease):
            writer.write(repo, "old", epochs, probe_bump(repo, "old"))
    with pytest.raises(StaleLease):  # a lease it never had
        writer.write(repo, "new", {**new.epochs, "docs": 1}, probe_bump(repo, "new"))
    assert probe_row(engine, repo) == ("new", 2)
    with pytest.raises(ValueError, match="at least one"):
        writer.write(repo, "new", {}, probe_bump(repo, "new"))
