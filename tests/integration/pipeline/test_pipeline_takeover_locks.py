"""Takeovers and their locks on real SQLite: the pure decisions performed by the lock
performers, so each item one person takes over keeps exactly its own leases through a
cancel or a resume of another, and leases taken over under the older shared
`human:<login>` holder are handed back item by item."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from trunkline.locks.fencing import FencedWriter, StaleLease
from trunkline.locks.leases import Grant, LockManager
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.machine import decide
from trunkline.pipeline.model import LockStatus, WorkItem
from trunkline.pipeline.performers import GitHubPerformers
from trunkline.pipeline.runner import CommandContext
from trunkline.pipeline.states import WorkState
from trunkline.policies.loader import load_policy
from trunkline.policies.model import Policy
from trunkline.store.testing import migrated_engine

REPO = "acme/app"
TTL = timedelta(minutes=10)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = load_policy("version: 1\n")
assert isinstance(POLICY, Policy)
CONFIG = PipelineConfig.of(POLICY)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


class Items:
    """Work items executing under their own leases, driven through `decide` and the lock
    performers on a real `LockManager`."""

    def __init__(self, engine: Engine) -> None:
        self.locks = LockManager(engine)
        self.performers = GitHubPerformers(
            github_for=lambda _: None,  # type: ignore[arg-type,return-value]
            policy_for=lambda _: None,  # type: ignore[arg-type,return-value]
            locks=self.locks,
        )
        self.items: dict[int, WorkItem] = {}

    def executing(self, issue: int, subsystem: str) -> None:
        assert isinstance(self.locks.acquire(REPO, f"issue-{issue}", {subsystem: 1}, TTL), Grant)
        self.items[issue] = WorkItem(
            REPO,
            issue,
            WorkState.EXECUTING,
            "rita",
            NOW,
            NOW,
            run=1,
            locks=LockStatus.HELD,
            lock_subsystems=(subsystem,),
            awaiting="executor",
        )

    def send(self, issue: int, event: ev.Event) -> None:
        item, commands = decide(self.items[issue], event, NOW, CONFIG)
        assert item is not None
        self.items[issue] = item
        context = CommandContext(REPO, issue, None, item, 1, True)
        for command in commands:
            if isinstance(command, cmd.TransferLocks):
                self.performers.transfer_locks(command, context)
            elif isinstance(command, cmd.ReleaseLocks):
                self.performers.release_locks(command, context)

    def held(self, holder: str) -> list[str]:
        return sorted(lease.subsystem for lease in self.locks.held(REPO, holder))

    def epochs(self, holder: str) -> dict[str, int]:
        return {lease.subsystem: lease.epoch for lease in self.locks.held(REPO, holder)}


def test_two_takeovers_by_one_person_keep_their_own_locks_through_a_cancel(
    engine: Engine,
) -> None:
    items = Items(engine)
    items.executing(1, "api")
    items.executing(2, "docs")
    items.send(1, ev.TakeoverRequested("alice"))
    items.send(2, ev.TakeoverRequested("alice"))
    assert items.held("human:alice:issue-1") == ["api"]
    assert items.held("human:alice:issue-2") == ["docs"]

    items.send(1, ev.CancelRequested("alice"))
    assert items.items[1].state is WorkState.CANCELLED
    assert items.held("human:alice:issue-1") == []
    assert items.held("human:alice:issue-2") == ["docs"]  # alice still works on #2
    assert not isinstance(items.locks.acquire(REPO, "issue-3", {"docs": 1}, TTL, wait=False), Grant)

    items.send(2, ev.Resumed("alice"))
    assert items.held("issue-2") == ["docs"]
    assert items.held("human:alice:issue-2") == []


def test_resuming_one_takeover_hands_back_only_its_own_locks(engine: Engine) -> None:
    items = Items(engine)
    items.executing(1, "api")
    items.executing(2, "docs")
    items.send(1, ev.TakeoverRequested("alice"))
    items.send(2, ev.TakeoverRequested("alice"))

    items.send(1, ev.Resumed("alice"))
    assert items.held("issue-1") == ["api"]
    assert items.held("human:alice:issue-2") == ["docs"]

    items.send(2, ev.Resumed("alice"))
    assert items.held("issue-2") == ["docs"]
    assert items.items[2].locks is LockStatus.HELD
    # the executor of #2 writes under the leases the pipeline says it holds
    written: list[str] = []
    FencedWriter(engine).write(
        REPO, "issue-2", items.epochs("issue-2"), lambda conn: written.append("ok")
    )
    assert written == ["ok"]


def test_leases_under_the_older_shared_holder_go_back_item_by_item(engine: Engine) -> None:
    """Taken over before holders named the item: both items' leases are `human:alice`'s."""
    items = Items(engine)
    items.executing(1, "api")
    items.executing(2, "docs")
    for issue in (1, 2):  # what the takeovers did then: one shared holder
        items.locks.transfer(REPO, f"issue-{issue}", "human:alice", TTL)
        item, _ = decide(items.items[issue], ev.TakeoverRequested("alice"), NOW, CONFIG)
        assert item is not None
        items.items[issue] = item
    assert items.held("human:alice") == ["api", "docs"]

    items.send(1, ev.Resumed("alice"))
    assert items.held("issue-1") == ["api"]
    assert items.held("human:alice") == ["docs"]

    items.send(2, ev.CancelRequested("alice"))
    assert items.held("human:alice") == []
    assert items.held("issue-1") == ["api"]


def test_a_stale_holder_cannot_write_after_its_item_was_taken_over(engine: Engine) -> None:
    items = Items(engine)
    items.executing(1, "api")
    before = items.epochs("issue-1")
    items.send(1, ev.TakeoverRequested("alice"))
    with pytest.raises(StaleLease):
        FencedWriter(engine).write(REPO, "issue-1", before, lambda conn: None)
