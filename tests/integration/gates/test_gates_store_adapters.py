"""The store adapters of the gates on real databases: approvals (idempotent, SHA-bound) on
SQLite and PostgreSQL, work item -> lock holder (following a takeover) and held leases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prerequisites import require_postgres
from sqlalchemy import Engine, insert, update

from trunkline.bot.approval_store import ApprovalRecords, ApprovalStore, MemoryApprovals
from trunkline.bot.gate_runner import LeaseHeldLocks, StoreWorkItems, WorkItemRef
from trunkline.locks.leases import Grant, LockManager
from trunkline.queue.gates import ApprovalSource, RecordedApproval
from trunkline.store.tables import WorkItem
from trunkline.store.testing import migrated_engine, temporary_postgres

REPO = "acme/app"
A, B = "a" * 40, "b" * 40
REVIEW, COMMAND = ApprovalSource.GITHUB_REVIEW, ApprovalSource.COMMAND


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApprovalRecords]:
    if request.param == "memory":
        yield MemoryApprovals()
        return
    engine: Engine
    if request.param == "sqlite":
        engine = migrated_engine(f"sqlite:///{tmp_path / 'store.db'}")
        try:
            yield ApprovalStore(engine)
        finally:
            engine.dispose()
        return
    require_postgres()
    with temporary_postgres(durable_commits=False) as url:
        engine = migrated_engine(url)
        try:
            yield ApprovalStore(engine)
        finally:
            engine.dispose()


def test_recording_is_idempotent_and_bound_to_the_sha(records: ApprovalRecords) -> None:
    assert records.record(REPO, 1, A, "alice", REVIEW) is True
    assert records.record(REPO, 1, A, "alice", REVIEW) is False
    assert records.record(REPO, 1, A, "alice", COMMAND) is False  # one row per person and SHA
    assert records.record(REPO, 1, B, "alice", COMMAND) is True
    assert records.record(REPO, 2, A, "bob", REVIEW) is True
    assert records.approvals(REPO, 1) == (
        RecordedApproval("alice", A, REVIEW),
        RecordedApproval("alice", B, COMMAND),
    )
    assert records.remove(REPO, 1, B, "alice", REVIEW) == 0  # another source: kept
    assert records.remove(REPO, 1, B, "alice") == 1
    assert records.approvals(REPO, 1) == (RecordedApproval("alice", A, REVIEW),)


def test_replace_reviews_keeps_command_approvals(records: ApprovalRecords) -> None:
    records.record(REPO, 1, A, "alice", REVIEW)
    records.record(REPO, 1, A, "carol", COMMAND)
    records.record(REPO, 1, A, "dave", REVIEW)
    records.replace_reviews(REPO, 1, {(A, "alice"), (B, "bob")})
    assert sorted((a.user, a.sha, a.source) for a in records.approvals(REPO, 1)) == [
        ("alice", A, REVIEW),
        ("bob", B, REVIEW),
        ("carol", A, COMMAND),
    ]
    records.replace_reviews(REPO, 1, set())
    assert [a.user for a in records.approvals(REPO, 1)] == ["carol"]


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_change_request_withdraws_approvals_decided_before_it_however_late_recorded(
    records: ApprovalRecords,
) -> None:
    # Written at 10 and 30 on GitHub's clock, recorded now (jobs that ran late).
    records.record(REPO, 1, A, "owen", COMMAND, decided_at=at(10))
    records.record(REPO, 1, B, "owen", COMMAND, decided_at=at(30))
    # owen's "changes requested" submitted at 20 withdraws what he decided before it ...
    assert records.remove(REPO, 1, A, "owen", COMMAND, before=at(20)) == 1
    # ... never a later decision
    assert records.remove(REPO, 1, B, "owen", COMMAND, before=at(20)) == 0
    assert records.approvals(REPO, 1) == (RecordedApproval("owen", B, COMMAND),)


def test_head_observations_give_the_start_of_the_heads_latest_run(
    records: ApprovalRecords,
) -> None:
    assert records.head_since(REPO, 1, A) is None  # never seen
    records.observe_head(REPO, 1, A, at(10))
    records.observe_head(REPO, 1, A, at(30))  # seen again: the run started no later than 10
    records.observe_head(REPO, 1, A, at(5))  # a late webhook: the run started earlier
    assert records.head_since(REPO, 1, A) == at(5)
    assert records.approvals(REPO, 1) == ()  # observations are not approvals
    records.observe_head(REPO, 1, B, at(40))  # a push
    assert records.head_since(REPO, 1, A) is None  # another head was seen after it
    assert records.head_since(REPO, 1, B) == at(40)
    records.observe_head(REPO, 1, A, at(50))  # pushed back: a new run of A
    assert records.head_since(REPO, 1, A) == at(50)
    assert records.head_since(REPO, 1, B) is None
    records.observe_head(REPO, 1, B, at(50))  # seen at the same second: the order is unknown
    assert records.head_since(REPO, 1, A) is None
    assert records.head_since(REPO, 2, A) is None  # another PR
    records.record(REPO, 1, A, "alice", COMMAND)
    assert [a.user for a in records.approvals(REPO, 1)] == ["alice"]


def test_live_holders_per_subsystem(tmp_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'holders.db'}")
    try:
        locks = LockManager(engine)
        ttl = timedelta(minutes=5)
        assert isinstance(locks.acquire(REPO, "issue-1", {"api": 2}, ttl), Grant)
        assert isinstance(locks.acquire(REPO, "human:bob", {"api": 2, "docs": 1}, ttl), Grant)
        assert isinstance(locks.acquire("other/repo", "issue-9", {"web": 1}, ttl), Grant)
        assert dict(LeaseHeldLocks(locks).live_holders(REPO)) == {
            "api": ("human:bob", "issue-1"),
            "docs": ("human:bob",),
        }
        locks.release(REPO, "human:bob")
        assert dict(LeaseHeldLocks(locks).live_holders(REPO)) == {"api": ("issue-1",)}
    finally:
        engine.dispose()


def test_work_item_holder_follows_a_takeover(tmp_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'items.db'}")
    try:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                insert(WorkItem).values(
                    repo_full_name=REPO,
                    issue_number=4,
                    state="reviewing",
                    pr_number=9,
                    data={},
                    created_at=now,
                    updated_at=now,
                )
            )
        items, locks = StoreWorkItems(engine), LockManager(engine)
        assert items.for_pr(REPO, 8) is None
        assert items.for_pr(REPO, 9) == WorkItemRef(4, "issue-4")
        assert isinstance(locks.acquire(REPO, "issue-4", {"api": 1}, timedelta(minutes=5)), Grant)
        assert LeaseHeldLocks(locks).held_subsystems(REPO, "issue-4") == ("api",)

        locks.transfer(REPO, "issue-4", "human:alice:issue-4", timedelta(minutes=5))
        with engine.begin() as conn:
            conn.execute(
                update(WorkItem).values(data={"takeover": {"active": True, "by": "alice"}})
            )
        ref = items.for_pr(REPO, 9)
        assert ref == WorkItemRef(4, "human:alice:issue-4")
        assert LeaseHeldLocks(locks).held_subsystems(REPO, ref.holder) == ("api",)
        # taken over before human holders named the item: the person's shared holder counts
        locks.transfer(REPO, "human:alice:issue-4", "human:alice", timedelta(minutes=5))
        assert LeaseHeldLocks(locks).held_subsystems(REPO, ref.holder) == ("api",)
    finally:
        engine.dispose()
