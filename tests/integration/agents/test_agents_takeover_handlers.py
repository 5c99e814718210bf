"""The takeover/resume handlers with the recording GitHub fake, on SQLite and PostgreSQL:
idempotent re-runs, refusals, bots ignored, the flag and the lease handover."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from trunkline.agents.takeover import (
    TakeoverFlag,
    human_holder,
    read_takeover,
    work_item_holder,
)
from trunkline.agents.work_item_rows import ItemRef, ensure_work_item, read_state
from trunkline.bot.events import parse_payload
from trunkline.bot.router import RoutedEvent, Router
from trunkline.bot.takeover_handlers import (
    RESUME_JOB,
    JobLauncher,
    ResumeRequest,
    TakeoverDeps,
    register_takeover_handlers,
)
from trunkline.github.fake import FakeGitHub
from trunkline.github.model import Permission
from trunkline.github.sticky import marker
from trunkline.locks.leases import Grant, LockManager
from trunkline.store.engine import make_engine
from trunkline.store.jobs import JobStore
from trunkline.store.schema import upgrade
from trunkline.store.tables import Job
from trunkline.store.tables import WorkItem as WorkItemRow


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'takeover.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


class RecordingLauncher:
    def __init__(self) -> None:
        self.requests: list[ResumeRequest] = []

    def resume(self, request: ResumeRequest) -> None:
        self.requests.append(request)


def comment_event(
    repo: str,
    number: int,
    comment_id: int,
    login: str,
    body: str,
    *,
    bot: bool = False,
    pull_request: bool = False,
) -> RoutedEvent:
    user = {"login": login, "id": 7, "type": "Bot" if bot else "User"}
    raw: dict[str, Any] = {
        "action": "created",
        "installation": {"id": 42},
        "repository": {
            "id": 1,
            "name": repo.split("/")[1],
            "full_name": repo,
            "private": False,
        },
        "sender": user,
        "issue": {"number": number, "title": "t", "user": user},
        "comment": {"id": comment_id, "body": body, "user": user},
    }
    if pull_request:
        raw["issue"]["pull_request"] = {"url": f"https://api.github.test/pulls/{number}"}
    payload = parse_payload("issue_comment", raw)
    assert payload is not None
    return RoutedEvent(f"d-{comment_id}", "issue_comment", "created", payload, raw)


@pytest.fixture
def repo() -> str:
    return f"acme/h{uuid.uuid4().hex[:8]}"


def setup(engine: Engine, repo: str) -> tuple[Router, FakeGitHub, RecordingLauncher, LockManager]:
    github = FakeGitHub()
    github.add_repo(repo)
    github.add_issue(repo, title="add() subtracts")
    github.set_permission(repo, "bob", Permission.WRITE)
    github.set_permission(repo, "carol", Permission.TRIAGE)
    launcher = RecordingLauncher()
    locks = LockManager(engine)
    router = Router()
    register_takeover_handlers(
        router,
        TakeoverDeps(
            engine=engine,
            github_for=lambda installation: github,
            launcher=launcher,
            locks=locks,
        ),
    )
    return router, github, launcher, locks


def replies(github: FakeGitHub, repo: str, comment_id: int) -> list[str]:
    tag = marker(f"slash.{comment_id}")
    return [c.body for c in github.comments_on(repo, 1) if c.body.startswith(tag)]


def test_agents_takeover_handler_is_idempotent_and_hands_over_the_lease(
    engine: Engine, repo: str
) -> None:
    router, github, launcher, locks = setup(engine, repo)
    ref = ItemRef(repo, 1)
    ensure_work_item(engine, ref, title="add() subtracts")  # the item being worked on
    grant = locks.acquire(repo, work_item_holder(ref), {"api": 1, "docs": 2}, timedelta(minutes=5))
    assert isinstance(grant, Grant)
    flag = TakeoverFlag(engine, ref)
    assert not flag()

    takeover = comment_event(repo, 1, 501, "bob", "/trunkline takeover")
    for _ in range(2):  # at-least-once delivery: the same event twice
        assert router.dispatch(takeover) == 1
    assert flag()
    assert read_state(engine, ref) == "taken_over"
    assert sorted(lease.subsystem for lease in locks.held(repo, human_holder("bob", ref))) == [
        "api",
        "docs",
    ]
    assert locks.held(repo, work_item_holder(ref)) == ()
    (reply,) = replies(github, repo, 501)
    assert "@bob is taking over" in reply
    assert "`api`, `docs`" in reply

    resume = comment_event(repo, 1, 502, "bob", "thanks\n/trunkline resume")
    for _ in range(2):
        router.dispatch(resume)
    assert not flag()
    assert read_state(engine, ref) == "executing"
    assert [r.key for r in launcher.requests] == [f"agents_resume:{repo}#1:502"] * 2
    assert launcher.requests[0].installation_id == 42
    assert len(replies(github, repo, 502)) == 1
    assert len(locks.held(repo, work_item_holder(ref))) == 2
    assert locks.held(repo, human_holder("bob", ref)) == ()

    # a later resume with nothing taken over launches nothing
    router.dispatch(comment_event(repo, 1, 503, "bob", "/trunkline resume"))
    assert len(launcher.requests) == 2
    (nothing,) = replies(github, repo, 503)
    assert "Nothing to resume" in nothing


def test_agents_takeover_handler_refuses_politely_and_ignores_others(
    engine: Engine, repo: str
) -> None:
    router, github, launcher, _ = setup(engine, repo)
    ref = ItemRef(repo, 1)
    router.dispatch(comment_event(repo, 1, 601, "carol", "/trunkline takeover"))
    router.dispatch(comment_event(repo, 1, 602, "dave", "/trunkline resume"))
    assert not read_takeover(engine, ref).active
    (refusal,) = replies(github, repo, 601)
    assert "Sorry @carol, `/trunkline takeover` needs write access" in refusal
    assert "you have triage" in refusal
    assert "you have none" in replies(github, repo, 602)[0]

    before = len(github.calls)
    for event in (
        comment_event(repo, 1, 603, "trunkline[bot]", "/trunkline takeover", bot=True),
        comment_event(repo, 1, 604, "bob", "```\n/trunkline takeover\n```"),
        comment_event(repo, 1, 605, "bob", "/trunkline queue"),  # someone else's command
        comment_event(repo, 1, 606, "bob", "> /trunkline takeover"),
    ):
        router.dispatch(event)
    assert len(github.calls) == before  # not even a permission lookup
    assert not read_takeover(engine, ref).active
    assert launcher.requests == []


def test_agents_takeover_handler_acts_only_on_work_items(engine: Engine, repo: str) -> None:
    """A takeover of an issue that is no work item creates nothing (a later label would
    otherwise start an item already taken over); on a PR it acts on the PR's item."""
    router, github, _, _ = setup(engine, repo)
    router.dispatch(comment_event(repo, 1, 701, "bob", "/trunkline takeover"))
    assert read_state(engine, ItemRef(repo, 1)) is None
    (reply,) = replies(github, repo, 701)
    assert "#1 is not a trunkline work item" in reply

    ref = ItemRef(repo, 1)
    ensure_work_item(engine, ref)
    pr = github.add_pull(repo, head_ref="trunkline/issue-1", head_sha="a" * 40).number
    with engine.begin() as conn:
        conn.execute(
            update(WorkItemRow)
            .where(WorkItemRow.repo_full_name == repo, WorkItemRow.issue_number == 1)
            .values(pr_number=pr)
        )
    router.dispatch(comment_event(repo, pr, 702, "bob", "/trunkline takeover", pull_request=True))
    assert read_takeover(engine, ref).active
    assert read_state(engine, ItemRef(repo, pr)) is None  # no row for the PR's number


def test_agents_job_launcher_enqueues_one_job_per_command(engine: Engine, repo: str) -> None:
    jobs = JobStore(engine, lease_seconds=30)
    launcher = JobLauncher(jobs)
    request = ResumeRequest(ItemRef(repo, 3), 42, "bob", 777)
    launcher.resume(request)
    launcher.resume(request)
    listed = [job for job in jobs.list(limit=1000) if job.key == request.key]
    assert len(listed) == 1
    assert listed[0].kind == RESUME_JOB
    with engine.connect() as conn:
        payload = conn.execute(select(Job.payload).where(Job.key == request.key)).scalar_one()
    assert payload["requested_by"] == "bob"
    assert payload["comment_id"] == 777
