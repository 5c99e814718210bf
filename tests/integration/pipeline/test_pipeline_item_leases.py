"""The pipeline's lease pieces on real SQLite and real git: the heartbeat, the keep-alive,
fences, and the compare-and-swap push of a work item's branch."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from processes import wait_until
from sqlalchemy import Engine

from trunkline.locks.fencing import StaleLease
from trunkline.locks.leases import Grant, LockManager
from trunkline.pipeline.branch_push import observed_branch_sha, push_expecting
from trunkline.pipeline.item_leases import (
    LeaseHeartbeat,
    check,
    fence_for,
    renew_held_leases,
)
from trunkline.pipeline.model import LockStatus, WorkItem
from trunkline.pipeline.states import WorkState
from trunkline.store.testing import migrated_engine
from trunkline.workspace.errors import PushRejectedError
from trunkline.workspace.model import Identity, RepositorySpec, Worktree
from trunkline.workspace.workspace import Workspace

REPO = "acme/widgets"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'leases.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


def grant(locks: LockManager, holder: str, ttl: timedelta) -> Grant:
    outcome = locks.acquire(REPO, holder, {"api": 1}, ttl)
    assert isinstance(outcome, Grant)
    return outcome


def test_pipeline_heartbeat_keeps_a_lease_past_its_ttl_and_notices_its_loss(
    engine: Engine,
) -> None:
    locks = LockManager(engine)
    ttl = timedelta(seconds=0.6)
    grant(locks, "issue-1", ttl)
    fence = fence_for(locks, REPO, "issue-1", ["api"])
    assert fence is not None
    with LeaseHeartbeat(locks, fence, ttl) as heartbeat:
        wait_until("five renewals (over 1.5 ttl)", lambda: heartbeat.renewals >= 5)
        assert [lease.subsystem for lease in locks.held(REPO, "issue-1")] == ["api"]
        check(engine, fence)  # still good
        locks.transfer(REPO, "issue-1", "human:bob", timedelta(minutes=5))  # a takeover
        lost = wait_until("the loss noticed", lambda: heartbeat.lost)
    assert lost is not None
    assert lost.holder == "issue-1"
    assert heartbeat.beat() is False  # no renewal after the loss
    with pytest.raises(StaleLease):
        check(engine, fence)
    assert [lease.subsystem for lease in locks.held(REPO, "human:bob")] == ["api"]


def test_pipeline_heartbeat_without_a_fence_starts_no_thread(engine: Engine) -> None:
    before = {thread.name for thread in threading.enumerate()}
    with LeaseHeartbeat(LockManager(engine), None, timedelta(seconds=0.3)) as heartbeat:
        started = {thread.name for thread in threading.enumerate()} - before
        assert not any(name.startswith("lease-heartbeat") for name in started)
        assert heartbeat.beat() is True  # nothing to renew, nothing lost
    assert heartbeat.lost is None
    assert heartbeat.renewals == 0


def test_pipeline_fence_for_refuses_a_holder_without_its_leases(engine: Engine) -> None:
    locks = LockManager(engine)
    assert fence_for(locks, REPO, "issue-2", []) is None  # nothing to fence
    with pytest.raises(StaleLease):
        fence_for(locks, REPO, "issue-2", ["api"])
    first = grant(locks, "issue-2", timedelta(minutes=5))
    fence = fence_for(locks, REPO, "issue-2", ["api"])
    assert fence is not None
    assert dict(fence.epochs) == first.epochs
    locks.release(REPO, "issue-2")
    grant(locks, "issue-3", timedelta(minutes=5))
    with pytest.raises(StaleLease):
        check(engine, fence)


def test_pipeline_keepalive_renews_only_holding_items(engine: Engine) -> None:
    locks = LockManager(engine)
    grant(locks, "issue-4", timedelta(seconds=30))
    grant_other = locks.acquire(REPO, "issue-5", {"docs": 1}, timedelta(seconds=30))
    assert isinstance(grant_other, Grant)
    now = datetime.now(UTC)
    holding = WorkItem(
        repo=REPO,
        issue=4,
        state=WorkState.QUEUED_FOR_MERGE,
        requester="maya",
        created_at=now,
        updated_at=now,
        locks=LockStatus.HELD,
        lock_subsystems=("api",),
    )
    released = replace(holding, issue=5, state=WorkState.ESCALATED, locks=LockStatus.NONE)
    expiry_4 = locks.held(REPO, "issue-4")[0].expires_at
    expiry_5 = locks.held(REPO, "issue-5")[0].expires_at

    assert renew_held_leases([holding, released], locks, timedelta(hours=1)) == 1

    assert locks.held(REPO, "issue-4")[0].expires_at > expiry_4 + timedelta(minutes=30)
    assert locks.held(REPO, "issue-5")[0].expires_at == expiry_5


# -- the compare-and-swap push ------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Workspace, RepositorySpec]:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "initial")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    workspace = Workspace(tmp_path / "data", Identity("bot", "bot@example.com"))
    return workspace, RepositorySpec(REPO, bare.as_uri())


def commit(workspace: Workspace, spec: RepositorySpec, tree: Worktree, text: str) -> str:
    (tree.path / "a.txt").write_text(text)
    sha = workspace.commit_all(spec, tree, text)
    assert sha is not None
    return sha


def test_pipeline_push_expecting_is_a_compare_and_swap(
    remote: tuple[Workspace, RepositorySpec], tmp_path: Path
) -> None:
    workspace, spec = remote
    tree = workspace.create_worktree(spec, 7, "fix", "main", None)
    assert observed_branch_sha(workspace, spec, tree.branch) is None
    first = commit(workspace, spec, tree, "one\n")
    # the branch must not exist yet: it does not, so the push is made
    assert push_expecting(workspace, spec, tree, None, None) == first
    assert observed_branch_sha(workspace, spec, tree.branch) == first
    assert push_expecting(workspace, spec, tree, None, first) == first  # same SHA: no-op

    # another writer (a second run of the same job) pushes `mid`, a descendant of `first`
    mid = commit(workspace, spec, tree, "mid\n")
    workspace.push_commit(spec, mid, tree.branch, None)
    second = commit(workspace, spec, tree, "two\n")  # descends from `mid` too
    # a plain push would fast-forward; expecting `first`, the remote moved: refused
    with pytest.raises(PushRejectedError):
        push_expecting(workspace, spec, tree, None, first)
    bare = Path(spec.url.removeprefix("file://"))
    assert git(bare, "rev-parse", tree.branch) == mid
    assert push_expecting(workspace, spec, tree, None, mid) == second  # the fast-forward

    # someone else pushes a commit of their own: ours does not descend from it: never forced
    other = Workspace(tmp_path / "other", Identity("o", "o@example.com"))
    theirs_tree = other.create_worktree(spec, 7, "fix", "main", None)
    assert theirs_tree.path != tree.path
    (theirs_tree.path / "b.txt").write_text("theirs\n")
    theirs = other.commit_all(spec, theirs_tree, "theirs")
    assert theirs is not None
    other.push_branch(spec, theirs_tree, None)
    third = commit(workspace, spec, tree, "three\n")
    workspace.fetch(spec, None)
    assert observed_branch_sha(workspace, spec, tree.branch) == theirs
    with pytest.raises(PushRejectedError, match="does not descend"):
        push_expecting(workspace, spec, tree, None, theirs)
    assert git(bare, "rev-parse", tree.branch) == theirs
    assert third != theirs
