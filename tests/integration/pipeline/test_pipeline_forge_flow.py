"""A labeled issue end to end on the local forge, with the scripted provider.

Real HTTP (the PyGithub adapter with App installation tokens), real git (workspace mirror,
the item's worktree, a push), the executor's `run_command` and the self-check under
bubblewrap, SQLite store, the production webhook handlers, runner, performers, lock manager
and merge-queue service. The planner, reviewers and executor are scripted. The bot is the
production composition: `build_service(settings, configure=configure_dispatch(...))`,
the policy read from the repository's `.github/trunkline.yml` on the forge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from pipeline_forge_rig import (
    CALC_FIXED,
    HEAD_SHA,
    MODEL,
    PLAN_ID,
    PYTEST,
    REPO,
    SANDBOX_PATH,
    tool,
    write_source,
)
from pipeline_harness import labeled_payload
from prerequisites import require_bwrap
from sqlalchemy import Engine, select

from trunkline.bot.events import parse_payload
from trunkline.bot.router import RoutedEvent, Router
from trunkline.bot.service import build_service
from trunkline.clock import FakeClock, SystemClock
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.github.adapter import PyGithubAdapter
from trunkline.github.port import GitHubPort
from trunkline.locks.leases import LockManager
from trunkline.pipeline.composition import DispatchWiring, configure_dispatch
from trunkline.pipeline.runner import PipelineService
from trunkline.pipeline.states import WorkState
from trunkline.queue.service import QueueService
from trunkline.settings import Settings
from trunkline.store.jobs import JobStore
from trunkline.store.runner import RunnerConfig, WorkerPool
from trunkline.store.tables import AgentRun, Job
from trunkline.store.testing import migrated_engine

POLICY_YAML = f"""version: 1
agents:
  commands: ["{PYTEST}"]
queue:
  required_checks: [ci]
"""


SCRIPT = [
    tool(
        "submit_plan",
        summary="Fix add() so it adds.",
        steps=["Change the operator in src/calc.py", "Run the tests"],
        paths=["src/calc.py"],
        acceptance_criteria=["add(2, 3) == 5"],
        tests_to_run=["pytest -q"],
        risk_notes=[],
    ),
    tool("submit_review", subject=PLAN_ID, verdict="approve", summary="The plan is sound."),
    tool("write_file", path="src/calc.py", content=CALC_FIXED),
    tool("run_command", command=PYTEST),
    tool(
        "submit_report",
        summary="Fixed the operator in add().",
        files_changed=["src/calc.py"],
        commands_run=[{"command": PYTEST, "exit_code": 0}],
        open_questions=[],
    ),
    tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Correct and tested."),
]


@dataclass
class World:
    forge: ForgeHandle
    github: PyGithubAdapter
    service: PipelineService
    queue: QueueService
    locks: LockManager
    router: Router
    pool: WorkerPool
    engine: Engine

    def new_issue(self, title: str) -> int:
        response = httpx.post(
            f"{self.forge.api_url}/repos/{REPO}/issues",
            json={"title": title, "body": "add(2, 3) returns -1. Please fix it."},
            headers={"Authorization": f"token {self.forge.token('alice')}"},
            timeout=30,
        )
        response.raise_for_status()
        return int(response.json()["number"])

    def label(self, issue: int, login: str, delivery_id: str) -> None:
        payload = labeled_payload(issue, login)
        payload["repository"]["full_name"] = REPO
        payload["installation"] = {"id": self.forge.installation_id}
        parsed = parse_payload("issues", payload)
        assert parsed is not None
        self.router.dispatch(RoutedEvent(delivery_id, "issues", "labeled", parsed, payload))

    def drain(self) -> None:
        for _ in range(200):
            if not self.pool.run_once("forge-test"):
                return

    def failed_jobs(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Job.kind, Job.last_error).where(Job.last_error.is_not(None))
            ).all()
        return [(row.kind, str(row.last_error)) for row in rows]

    def agent_roles(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(AgentRun.role).order_by(AgentRun.id)).scalars())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The production composition (`build_service` + `configure_dispatch`) on the forge."""
    require_bwrap()
    source = write_source(tmp_path / "source")
    (source / ".github").mkdir()
    (source / ".github" / "trunkline.yml").write_text(POLICY_YAML)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"responses": SCRIPT}))
    settings = Settings(
        data_dir=tmp_path / "data",
        agent_provider="scripted",
        agent_script=script,
        agent_model=MODEL,
        agent_prices={MODEL: {"input": 3.0, "output": 15.0}},
        sandbox_path=SANDBOX_PATH,
        sandbox_command_timeout=120,
    )
    with running_forge(default_spec(source=source), data_dir=tmp_path / "forge") as forge:
        clock = FakeClock(current=datetime.fromisoformat(forge.admin("GET", "health")["now"]))
        http = httpx.Client(timeout=30)
        engine = migrated_engine(f"sqlite:///{tmp_path / 'bot.db'}")
        try:
            clients = forge.app_clients(clock, http)
            tokens = clients.tokens(forge.installation_id)
            github = clients.for_installation(forge.installation_id)

            def github_for(installation: int | None) -> GitHubPort:
                assert installation == forge.installation_id
                return github

            queue = QueueService(engine, SystemClock())
            wired: list[DispatchWiring] = []
            service = build_service(
                settings,
                engine=engine,
                configure=lambda s: wired.append(
                    configure_dispatch(
                        s,
                        queue=queue,
                        github_for=github_for,
                        token_for=lambda installation: tokens.token(),
                        repository_url=lambda repo: f"{forge.base_url}/{repo}.git",
                    )
                ),
            )
            service.handlers.register("queue_effect", lambda job: None)  # the queue runner's
            pool = WorkerPool(
                JobStore(engine, lease_seconds=60), service.handlers, RunnerConfig(threads=1)
            )
            yield World(
                forge,
                github,
                wired[0].pipeline,
                queue,
                LockManager(engine),
                service.router,
                pool,
                engine,
            )
        finally:
            http.close()
            engine.dispose()


def test_pipeline_forge_maintainers_label_ends_in_the_merge_queue(world: World) -> None:
    issue = world.new_issue("add() subtracts")

    world.label(issue, "bob", "label-1")  # bob has write access
    world.label(issue, "bob", "label-1")  # the same delivery again
    world.drain()

    assert world.failed_jobs() == []
    item = world.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE, [
        (t.to_state.value, t.reason) for t in item.history
    ]
    assert item.pr is not None
    assert item.head_sha is not None
    # the PR links the issue and carries the plan, the risk and the spend
    pull = world.github.get_pull(REPO, item.pr)
    assert pull.head_sha == item.head_sha
    assert f"Closes #{issue}" in pull.body
    assert "Fix add() so it adds." in pull.body
    assert "## Risk:" in pull.body
    assert "tokens" in pull.body
    # the fix is on the branch, tested under bubblewrap by the self-check
    content = world.github.get_file(REPO, "src/calc.py", item.head_sha)
    assert content is not None
    assert content.text == CALC_FIXED
    # the reviewer's verdict is the App's review on the head, with the verdict marker
    reviews = world.github.list_reviews(REPO, item.pr)
    assert [(r.commit_sha, r.author.login) for r in reviews] == [(item.head_sha, "trunkline[bot]")]
    assert "trunkline:verdict=approve" in reviews[0].body
    # the merge queue got the Enqueue at the reviewed head
    queue = world.queue.state(REPO, "main")
    assert queue is not None
    entry = queue.entry(item.pr)
    assert entry is not None
    # one run per role, recorded against the item (the duplicate delivery started nothing)
    assert world.agent_roles() == ["planner", "plan_reviewer", "executor", "reviewer"]
    assert [lease.subsystem for lease in world.locks.held(REPO, f"issue-{issue}")] == ["default"]


def test_pipeline_forge_outsiders_label_gets_a_polite_comment(world: World) -> None:
    issue = world.new_issue("please fix add()")

    world.label(issue, "carol", "label-carol")  # carol can only read
    world.drain()

    item = world.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.REFUSED
    assert world.agent_roles() == []  # no agent ran
    comments = world.github.list_issue_comments(REPO, issue)
    assert len(comments) == 1
    assert "@carol" in comments[0].body
    assert comments[0].author.login == "trunkline[bot]"
