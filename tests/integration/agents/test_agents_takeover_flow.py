"""Takeover and resume through the real pieces: forge webhooks -> bot intake over HTTP ->
job worker -> handler; a scripted executor in a thread stops at its next turn boundary,
its lease goes to the human, the human pushes a commit, and resume restarts the executor
with that commit in its context.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import uvicorn
from agents_testkit import (
    CALC_BUGGY,
    HEAD_SHA,
    TEST_CALC,
    TEST_CALC_MORE,
    approve_plan,
    config,
    submit_plan,
    tool,
)
from sqlalchemy import Engine

from trunkline.agents.escalation import EscalationPolicy, perform_escalation
from trunkline.agents.messages import ModelRequest, ModelResponse
from trunkline.agents.outcome import OutcomeKind, WorkOutcome
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import WorkItem
from trunkline.agents.sandbox import RefusingSandbox
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.store_timeline import StoreTimeline
from trunkline.agents.takeover import (
    TakeoverFlag,
    checkout_for_resume,
    human_holder,
    load_plan,
    read_takeover,
    save_plan,
    work_item_holder,
)
from trunkline.agents.work_item_rows import ItemRef, read_state
from trunkline.agents.work_item_runner import WorkItemRunner
from trunkline.bot.app import create_app
from trunkline.bot.service import build_service, worker_pool
from trunkline.bot.takeover_handlers import ResumeRequest, TakeoverDeps, register_takeover_handlers
from trunkline.clock import FakeClock
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.github.adapter import AdapterOptions, PyGithubAdapter
from trunkline.github.sticky import marker
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.locks.leases import Grant, LockManager
from trunkline.settings import Settings
from trunkline.store.testing import migrated_engine
from trunkline.workspace.model import Identity, RepositorySpec, Worktree
from trunkline.workspace.workspace import Workspace

REPO = "alice/demo"
SECRET = "takeover-webhook-secret"
SLUG = "takeover"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@dataclass
class GatedProvider(ScriptedProvider):
    """Scripted, but from call `gate_from` on each call waits for `opened` (a slow model)."""

    gate_from: int = 10**9
    entered: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)

    def complete(self, request: ModelRequest) -> ModelResponse:
        if len(self.requests) + 1 >= self.gate_from:
            self.entered.set()
            assert self.opened.wait(120), "the test never opened the gate"
        return super().complete(request)


class Launcher:
    """Runs the resumed executor in a thread, as the `agents_resume` job would."""

    def __init__(self, start: Callable[[ResumeRequest], WorkOutcome]) -> None:
        self.start = start
        self.requests: list[ResumeRequest] = []
        self.outcomes: list[WorkOutcome] = []
        self.threads: list[threading.Thread] = []

    def resume(self, request: ResumeRequest) -> None:
        if any(r.key == request.key for r in self.requests):
            return  # idempotent per command comment, like the job's unique key
        self.requests.append(request)
        thread = threading.Thread(target=lambda: self.outcomes.append(self.start(request)))
        self.threads.append(thread)
        thread.start()


@dataclass
class World:
    forge: ForgeHandle
    engine: Engine
    tokens: InstallationTokenProvider
    github: PyGithubAdapter
    workspace: Workspace
    spec: RepositorySpec
    locks: LockManager
    launcher: Launcher
    tmp: Path

    def comment(self, login: str, number: int, body: str) -> int:
        response = httpx.post(
            f"{self.forge.api_url}/repos/{REPO}/issues/{number}/comments",
            json={"body": body},
            headers={"Authorization": f"token {self.forge.token(login)}"},
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["id"])

    def reply_to(self, number: int, comment_id: int) -> str | None:
        tag = marker(f"slash.{comment_id}")
        for comment in self.github.list_issue_comments(REPO, number):
            if comment.body.startswith(tag):
                return comment.body
        return None


def adapter(
    forge: ForgeHandle, tokens: InstallationTokenProvider, clock: FakeClock
) -> PyGithubAdapter:
    return PyGithubAdapter(
        base_url=forge.api_url,
        tokens=tokens,
        clock=clock,
        bot_login="trunkline[bot]",
        options=AdapterOptions(min_write_interval=0.0),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    source = tmp_path / "source"
    (source / "src").mkdir(parents=True)
    (source / "tests").mkdir()
    (source / "src" / "__init__.py").write_text("")
    (source / "src" / "calc.py").write_text(CALC_BUGGY)
    (source / "tests" / "test_calc.py").write_text(TEST_CALC)
    engine = migrated_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    http = httpx.Client(timeout=30)
    launcher_ref: list[Launcher] = []
    with running_forge(default_spec(source=source), data_dir=tmp_path / "forge") as forge:
        clock = FakeClock(current=datetime.fromisoformat(forge.admin("GET", "health")["now"]))
        tokens = InstallationTokenProvider(
            base_url=forge.api_url,
            app_id=str(forge.app_id),
            private_key=forge.private_key_path.read_text(),
            installation_id=forge.installation_id,
            clock=clock,
            http=http,
        )
        bot_github = adapter(forge, tokens, clock)
        locks = LockManager(engine)
        workspace = Workspace(tmp_path / "data", Identity("trunkline[bot]", "bot@example.com"))
        spec = RepositorySpec(REPO, f"{forge.base_url}/alice/demo.git")
        launcher = Launcher(lambda request: launcher_ref[0].start(request))
        settings = Settings(data_dir=tmp_path, webhook_secret=SECRET, worker_poll_seconds=0.05)
        service = build_service(
            settings,
            engine=engine,
            configure=lambda s: register_takeover_handlers(
                s.router,
                TakeoverDeps(
                    engine=engine,
                    github_for=lambda _installation: bot_github,
                    launcher=launcher,
                    locks=locks,
                ),
            ),
        )
        pool = worker_pool(service, 2)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, engine=engine, on_jobs_enqueued=lambda _: pool.wake()),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        serving = threading.Thread(target=server.run, daemon=True)
        pool.start()
        serving.start()
        try:
            wait_for("the bot to serve", lambda: server.started)
            forge.admin(
                "PUT", "webhook", {"url": f"http://127.0.0.1:{port}/webhooks", "secret": SECRET}
            )
            world = World(
                forge,
                engine,
                tokens,
                adapter(forge, tokens, clock),
                workspace,
                spec,
                locks,
                launcher,
                tmp_path,
            )
            launcher_ref.append(launcher)
            yield world
        finally:
            server.should_exit = True
            serving.join(30)
            pool.stop()
            for thread in launcher.threads:
                thread.join(60)
            http.close()
            engine.dispose()


def runner_for(
    world: World, tree: Worktree, ref: ItemRef, provider: ScriptedProvider
) -> WorkItemRunner:
    return WorkItemRunner(
        item=WorkItem(ref.key, "add() subtracts", "Fix add()."),
        worktree=tree.path,
        base_sha=tree.base_sha,
        config=config(),
        provider=provider,
        sandbox=RefusingSandbox("no commands here"),
        timeline=StoreTimeline(world.engine),
        clock=FakeClock(),
        redactor=Redactor.of([]),
        should_stop=TakeoverFlag(world.engine, ref),
    )


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Bob", "-c", "user.email=bob@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_agents_takeover_then_resume_through_webhooks(world: World) -> None:
    response = httpx.post(
        f"{world.forge.api_url}/repos/{REPO}/issues",
        json={"title": "add() subtracts", "body": "Fix add()."},
        headers={"Authorization": f"token {world.forge.token('alice')}"},
        timeout=30,
    )
    number = int(response.json()["number"])
    ref = ItemRef(REPO, number)
    tree = world.workspace.create_worktree(world.spec, number, SLUG, "main", world.tokens.token())
    grant = world.locks.acquire(REPO, work_item_holder(ref), {"default": 1}, timedelta(minutes=10))
    assert isinstance(grant, Grant)

    # 1. The executor runs in a thread; from its 4th call on, each model call is slow.
    script = [
        submit_plan(),
        approve_plan(),
        tool("write_file", path="src/calc.py", content=CALC_BUGGY.replace("-", "+")),
        *[tool("read_file", path="src/calc.py") for _ in range(30)],
    ]
    provider = GatedProvider(ScriptedProvider.of(script).script, gate_from=4)
    first: list[WorkOutcome] = []

    def run_agent() -> None:
        outcome = runner_for(world, tree, ref, provider).run()
        assert outcome.plan is not None
        save_plan(world.engine, ref, outcome.plan)
        perform_escalation(
            outcome,
            github=world.github,
            workspace=world.workspace,
            spec=world.spec,
            worktree=tree,
            issue_number=number,
            token=world.tokens.token,
            policy=EscalationPolicy(),
        )
        first.append(outcome)

    agent = threading.Thread(target=run_agent)
    agent.start()
    try:
        assert provider.entered.wait(60)
        # 2. bob (write) comments /trunkline takeover on the forge -> signed webhook -> bot.
        takeover = world.comment("bob", number, "I'll take it from here.\n/trunkline takeover")
        wait_for("the takeover flag", lambda: read_takeover(world.engine, ref).active)
    finally:
        provider.opened.set()
        agent.join(120)
    (outcome,) = first
    assert outcome.kind is OutcomeKind.TAKEN_OVER
    assert provider.remaining >= 25  # stopped at the next turn boundary, not at the end
    assert read_state(world.engine, ref) == "taken_over"
    assert read_takeover(world.engine, ref).by == "bob"
    # the lease is now in the human's name, with a new epoch; the agent holds nothing
    held = world.locks.held(REPO, human_holder("bob", ref))
    assert [lease.subsystem for lease in held] == ["default"]
    assert held[0].epoch > grant.epochs["default"]
    assert world.locks.held(REPO, work_item_holder(ref)) == ()
    # the work in progress is on the branch, and the bot replied once
    assert world.github.get_ref(REPO, f"heads/{tree.branch}").sha == outcome.head_sha
    reply = wait_for("the takeover reply", lambda: world.reply_to(number, takeover))
    assert "@bob is taking over" in reply
    assert f"`human:bob:issue-{number}`" in reply

    # 3. carol (read) may not resume: a polite refusal, and nothing changes.
    refused = world.comment("carol", number, "/trunkline resume")
    refusal = wait_for("the refusal", lambda: world.reply_to(number, refused))
    assert refusal.endswith(
        "needs write access to this repository, and you have read. "
        "Ask a maintainer to run it for you."
    )
    assert read_takeover(world.engine, ref).active

    # 4. bob pushes a commit to the branch.
    human = world.tmp / "human"
    git(
        world.tmp,
        "clone",
        "-q",
        "--branch",
        tree.branch,
        world.forge.git_url("alice", "demo", world.forge.token("bob")),
        str(human),
    )
    (human / "tests" / "test_calc.py").write_text(TEST_CALC_MORE)
    git(human, "commit", "-qam", "human: add a negative test")
    git(human, "push", "-q", "origin", tree.branch)
    human_head = git(human, "rev-parse", "HEAD")

    # 5. /trunkline resume: the executor restarts from the branch with bob's commit in context.
    resumed_provider = ScriptedProvider.of(
        [
            {
                "expect": {
                    "role": "executor",
                    "last_user_contains": ["human: add a negative test"],
                },
                **tool("read_file", path="tests/test_calc.py"),
            },
            tool("submit_report", summary="Checked the human's test."),
            tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Good."),
        ]
    )

    def start(request: ResumeRequest) -> WorkOutcome:
        resumed_tree = checkout_for_resume(
            world.workspace, world.spec, request.ref, SLUG, "main", world.tokens.token()
        )
        plan = load_plan(world.engine, request.ref)
        assert plan is not None
        return runner_for(world, resumed_tree, request.ref, resumed_provider).resume(plan)

    world.launcher.start = start
    resume = world.comment("bob", number, "/trunkline resume")
    wait_for("the resume reply", lambda: world.reply_to(number, resume))
    wait_for("the resumed executor", lambda: world.launcher.outcomes)
    (resumed,) = world.launcher.outcomes
    assert resumed.kind is OutcomeKind.COMPLETED, resumed.comment
    assert resumed.head_sha == human_head  # nothing to add: the human's commit is the head
    first_prompt = str(resumed_provider.requests[0].messages[0].content[0])
    assert "human: add a negative test" in first_prompt
    assert not read_takeover(world.engine, ref).active
    assert [lease.subsystem for lease in world.locks.held(REPO, work_item_holder(ref))] == [
        "default"
    ]
    assert world.locks.held(REPO, human_holder("bob", ref)) == ()
    (request,) = world.launcher.requests
    assert (request.requested_by, request.comment_id) == ("bob", resume)
