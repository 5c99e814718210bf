"""Fencing acceptance on the pipeline's write path (issue #6): a work item's lease holder,
in its own process, paused with SIGSTOP past its lease while another holder takes the lease
and writes, writes nothing when it resumes (SIGCONT): neither the work item's row in the
database nor the item's branch on the forge change. The control: the same process with its
lease still live does write both.

The holder process (`pipeline_paused_holder.py`) makes the pipeline's writes with the
pipeline's code: `item_leases.check` + `branch_push.push_expecting` for the branch and
`PipelineService.submit(..., fence=...)` for the executor's result.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline_forge_rig import REPO, write_source
from sqlalchemy import Engine, select

from trunkline.clock import FakeClock, SystemClock
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.github.errors import NotFoundError
from trunkline.github.port import GitHubPort
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.locks.fencing import FencedWriter
from trunkline.locks.leases import LockManager
from trunkline.locks.testing import acquire_polling, create_probe, probe_bump, probe_row
from trunkline.pipeline import events as ev
from trunkline.pipeline.branch_push import observed_branch_sha, push_expecting
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.item_leases import check, fence_for
from trunkline.pipeline.model import RiskAssessment, Verdict
from trunkline.pipeline.runner import PipelineService
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Permission
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade
from trunkline.store.tables import WorkItem as WorkItemRow
from trunkline.workspace.model import Identity, RepositorySpec, slugify, work_branch
from trunkline.workspace.workspace import Workspace

HOLDER = Path(__file__).with_name("pipeline_paused_holder.py")


@dataclass
class Forge:
    handle: ForgeHandle
    github: GitHubPort
    tokens: InstallationTokenProvider


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    tmp = tmp_path_factory.mktemp("paused-holder")
    source = write_source(tmp / "source")
    with running_forge(default_spec(source=source), data_dir=tmp / "forge") as handle:
        now = datetime.fromisoformat(handle.admin("GET", "health")["now"])
        http = httpx.Client(timeout=30)
        try:
            clients = handle.app_clients(FakeClock(current=now), http)
            yield Forge(
                handle,
                clients.for_installation(handle.installation_id),
                clients.tokens(handle.installation_id),
            )
        finally:
            http.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield url, engine
    finally:
        engine.dispose()


def new_issue(forge: Forge, title: str) -> int:
    response = httpx.post(
        f"{forge.handle.api_url}/repos/{REPO}/issues",
        json={"title": title, "body": "add() subtracts"},
        headers={"Authorization": f"token {forge.handle.token('alice')}"},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json()["number"])


def to_waiting_for_locks(service: PipelineService, issue: int) -> None:
    """Drive the item to `waiting_for_locks` with the answers its agents would give."""
    service.submit(REPO, issue, ev.Labeled(REPO, issue, "maya", Permission.MAINTAIN, "agent"))
    item = service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.PLANNING
    assert item.awaiting is not None
    risk = RiskAssessment("low", (), ("default",))
    service.submit(REPO, issue, ev.PlanReady(item.awaiting, "plan-1", "fix", ("src/**",), risk))
    item = service.item(REPO, issue)
    assert item is not None
    assert item.awaiting is not None
    service.submit(REPO, issue, ev.PlanReviewed(item.awaiting, "plan-1", Verdict.APPROVE))
    item = service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.WAITING_FOR_LOCKS


def grant_locks(service: PipelineService, issue: int, epoch: int) -> str:
    """The holder's grant, as `AcquireLocks` reports it: the item executes; the key of the
    `RunExecutor` it now waits for."""
    item = service.item(REPO, issue)
    assert item is not None
    assert item.awaiting is not None
    service.submit(REPO, issue, ev.LocksGranted(item.awaiting, ("default",), (("default", epoch),)))
    item = service.item(REPO, issue)
    assert item is not None
    assert item.awaiting is not None
    assert item.state is WorkState.EXECUTING
    return item.awaiting


def row_of(engine: Engine, issue: int) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.execute(
            select(WorkItemRow.state, WorkItemRow.version, WorkItemRow.data).where(
                WorkItemRow.repo_full_name == REPO, WorkItemRow.issue_number == issue
            )
        ).one()
    return tuple(row)


def branch_sha(forge: Forge, branch: str) -> str | None:
    try:
        return forge.github.get_ref(REPO, f"heads/{branch}").sha
    except NotFoundError:
        return None


def start_holder(
    forge: Forge, url: str, issue: int, title: str, data: Path, ttl: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(HOLDER),
            url,
            f"{forge.handle.base_url}/{REPO}.git",
            REPO,
            str(issue),
            title,
            str(data),
            str(ttl),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HOLDER_TOKEN": forge.tokens.token()},
    )


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
                assert line, f"the holder exited early with {process.poll()}"
                return line.strip()
        raise AssertionError("the holder said nothing in time")
    finally:
        selector.close()


def go(process: subprocess.Popen[str], awaited: str) -> list[str]:
    assert process.stdin is not None
    process.stdin.write(f"go {awaited}\n")
    process.stdin.flush()
    lines = [read_line(process), read_line(process)]
    assert process.wait(timeout=60) == 0
    return lines


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
    process.wait(timeout=30)


def test_pipeline_a_paused_holder_that_resumes_writes_nothing(
    forge: Forge, database: tuple[str, Engine], tmp_path: Path
) -> None:
    url, engine = database
    service = PipelineService(engine, SystemClock(), lambda repo: PipelineConfig())
    locks = LockManager(engine)
    title = "paused holder"
    issue = new_issue(forge, title)
    branch = work_branch(issue, slugify(title))
    to_waiting_for_locks(service, issue)
    create_probe(engine, REPO)
    paused = start_holder(forge, url, issue, title, tmp_path / "holder", ttl=1.0)
    try:
        ready = read_line(paused)
        assert ready.startswith("ready ")
        epoch = int(ready.split()[1])
        awaited = grant_locks(service, issue, epoch)
        os.kill(paused.pid, signal.SIGSTOP)

        # another holder (a human) waits until the paused one's lease ran out (database
        # clock), takes it, and writes: a commit on the item's branch and a database row
        other = acquire_polling(locks, REPO, "human:mallory", {"default": 1}, timedelta(minutes=5))
        assert other.epochs["default"] > epoch
        human_fence = fence_for(locks, REPO, "human:mallory", ["default"])
        spec = RepositorySpec(REPO, f"{forge.handle.base_url}/{REPO}.git")
        human = Workspace(tmp_path / "human", Identity("Mallory", "mallory@example.com"))
        tree = human.create_worktree(spec, issue, slugify(title), "main", forge.tokens.token())
        (tree.path / "NOTES.md").write_text("mallory's notes\n")
        assert human.commit_all(spec, tree, "mallory's commit") is not None
        check(engine, human_fence)
        expected = observed_branch_sha(human, spec, tree.branch)
        theirs = push_expecting(human, spec, tree, forge.tokens.token(), expected)
        FencedWriter(engine).write(REPO, "human:mallory", other.epochs, probe_bump(REPO, "mallory"))
        row_before = row_of(engine, issue)

        os.kill(paused.pid, signal.SIGCONT)
        outcome = go(paused, awaited)
    finally:
        stop(paused)
        locks.release(REPO, "human:mallory")  # the PostgreSQL database lives for the session

    assert outcome == ["stale push", "stale submit"]
    assert branch_sha(forge, branch) == theirs  # the branch is untouched
    assert row_of(engine, issue) == row_before  # the item's row is untouched
    assert probe_row(engine, REPO) == ("mallory", 1)
    item = service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.EXECUTING
    assert item.awaiting == awaited  # still waiting: the stale result was not decided


def test_pipeline_a_live_holder_writes(
    forge: Forge, database: tuple[str, Engine], tmp_path: Path
) -> None:
    """The control: the same process, its lease still live, pushes and reports."""
    url, engine = database
    service = PipelineService(engine, SystemClock(), lambda repo: PipelineConfig())
    title = "live holder"
    issue = new_issue(forge, title)
    branch = work_branch(issue, slugify(title))
    to_waiting_for_locks(service, issue)
    holder = start_holder(forge, url, issue, title, tmp_path / "holder", ttl=300.0)
    try:
        ready = read_line(holder)
        awaited = grant_locks(service, issue, int(ready.split()[1]))
        outcome = go(holder, awaited)
    finally:
        stop(holder)
        LockManager(engine).release(REPO, f"issue-{issue}")

    assert outcome[0].startswith("wrote push ")
    assert outcome[1] == "wrote submit"
    assert branch_sha(forge, branch) == outcome[0].split()[2]
    item = service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.SELF_CHECK
