"""A rig for pipeline tests on the local forge: the production composition
(`build_service(settings, configure=configure_dispatch(...))`) on SQLite, the forge over
HTTP and git, the scripted provider, the sandbox's bubblewrap.

Performs I/O (a forge process, git, SQLite files under the test's temporary directory).
One forge may serve many bots (one per test case, each with its own script, policy,
database and data directory); each case works on its own issues.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pipeline_harness import labeled_payload
from sqlalchemy import Engine, select

from trunkline.agents.composition import build_provider
from trunkline.agents.messages import Provider
from trunkline.bot.events import parse_payload
from trunkline.bot.router import RoutedEvent, Router
from trunkline.bot.service import build_service
from trunkline.clock import FakeClock, SystemClock
from trunkline.forge.testing import ForgeHandle
from trunkline.github.errors import NotFoundError
from trunkline.github.port import GitHubPort
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.locks.leases import LockManager
from trunkline.pipeline.composition import (
    LOCK_TTL,
    DispatchWiring,
    RepositoryPolicies,
    configure_dispatch,
)
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.runner import PipelineService
from trunkline.policies.model import Policy
from trunkline.queue.service import QueueService
from trunkline.settings import Settings
from trunkline.store.jobs import JobStore
from trunkline.store.runner import RunnerConfig, WorkerPool
from trunkline.store.tables import AgentRun, Job
from trunkline.store.testing import migrated_engine
from trunkline.workspace.model import slugify, work_branch

REPO = "alice/demo"
MODEL = "claude-test"
PYTEST = f"{sys.executable} -m pytest -q -p no:cacheprovider"
SANDBOX_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
CALC_BUGGY = "def add(a, b):\n    return a - b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from src.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
PLAN_ID = "{{match: (plan-[0-9a-f]{16})}}"
HEAD_SHA = "{{match: Review commit ([0-9a-f]{40})}}"


def tool(name: str, **arguments: object) -> dict[str, object]:
    return {"content": [{"type": "tool_use", "name": name, "input": arguments}]}


def write_source(root: Path) -> Path:
    """A small project whose test fails until `add` adds."""
    (root / "src").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "calc.py").write_text(CALC_BUGGY)
    (root / "tests" / "test_calc.py").write_text(TEST_CALC)
    (root / ".gitignore").write_text("__pycache__/\n")
    return root


@dataclass
class TickingClock(FakeClock):
    """A fake clock whose monotonic time moves `tick` seconds at every read (wall budgets)."""

    tick: float = 0.0

    def monotonic(self) -> float:
        self.advance(self.tick)
        return super().monotonic()


@dataclass
class ForgeBot:
    forge: ForgeHandle
    github: GitHubPort
    tokens: InstallationTokenProvider
    service: PipelineService
    router: Router
    pool: WorkerPool
    engine: Engine
    locks: LockManager
    clock: TickingClock
    queue: QueueService
    titles: dict[int, str] = field(default_factory=dict)

    def new_issue(self, title: str) -> int:
        response = httpx.post(
            f"{self.forge.api_url}/repos/{REPO}/issues",
            json={"title": title, "body": "add(2, 3) returns -1. Please fix it."},
            headers={"Authorization": f"token {self.forge.token('alice')}"},
            timeout=30,
        )
        response.raise_for_status()
        number = int(response.json()["number"])
        self.titles[number] = title
        return number

    def branch(self, issue: int) -> str:
        return work_branch(issue, slugify(self.titles[issue]))

    def branch_sha(self, issue: int) -> str | None:
        try:
            return self.github.get_ref(REPO, f"heads/{self.branch(issue)}").sha
        except NotFoundError:
            return None

    def label(self, issue: int, login: str, delivery_id: str) -> None:
        payload = labeled_payload(issue, login)
        payload["repository"]["full_name"] = REPO
        payload["installation"] = {"id": self.forge.installation_id}
        parsed = parse_payload("issues", payload)
        assert parsed is not None
        self.router.dispatch(RoutedEvent(delivery_id, "issues", "labeled", parsed, payload))

    def item(self, issue: int) -> WorkItem:
        item = self.service.item(REPO, issue)
        assert item is not None
        return item

    def drain(self, until: Callable[[], bool] | None = None, limit: int = 300) -> None:
        """Run due jobs one at a time until none is left (or `until()` holds)."""
        for _ in range(limit):
            if until is not None and until():
                return
            if not self.pool.run_once("forge-rig"):
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

    def review_comments(self, pr: int) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.forge.api_url}/repos/{REPO}/pulls/{pr}/comments",
            headers={"Authorization": f"token {self.forge.token('alice')}"},
            timeout=30,
        )
        response.raise_for_status()
        comments: list[dict[str, Any]] = response.json()
        return comments


@contextmanager
def forge_bot(
    forge: ForgeHandle,
    tmp: Path,
    script: list[dict[str, object]],
    policy: Policy | None,
    *,
    tick: float = 0.0,
    lock_ttl: timedelta | None = None,
    database: Path | None = None,
    wrap_provider: Callable[[Provider], Provider] | None = None,
) -> Iterator[ForgeBot]:
    """The production composition on `forge`, scripted by `script`, under `policy` (None: the
    repository's own `.github/trunkline.yml`, read through the App as in production); its own
    data directory under `tmp`, its own SQLite database unless `database` (another replica's
    file: replicas share the database, not the disk)."""
    tmp.mkdir(parents=True, exist_ok=True)
    script_file = tmp / "script.json"
    script_file.write_text(json.dumps({"responses": script}))
    settings = Settings(
        data_dir=tmp / "data",
        agent_provider="scripted",
        agent_script=script_file,
        agent_model=MODEL,
        agent_prices={MODEL: {"input": 3.0, "output": 15.0}},
        sandbox_path=SANDBOX_PATH,
        sandbox_command_timeout=120,
    )
    now = datetime.fromisoformat(forge.admin("GET", "health")["now"])
    clock = TickingClock(current=now)
    http = httpx.Client(timeout=30)
    engine = migrated_engine(f"sqlite:///{database or tmp / 'bot.db'}")
    try:
        clients = forge.app_clients(FakeClock(current=now), http)
        tokens = clients.tokens(forge.installation_id)
        github = clients.for_installation(forge.installation_id)

        def github_for(installation: int | None) -> GitHubPort:
            assert installation == forge.installation_id
            return github

        policies = RepositoryPolicies(engine, github_for, clock, ttl_seconds=1e12)
        if policy is not None:
            policies.remember(REPO, policy)
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
                    clock=clock,
                    policies=policies,
                    lock_ttl=lock_ttl or LOCK_TTL,
                    provider=None
                    if wrap_provider is None
                    else wrap_provider(build_provider(s.settings)),
                )
            ),
        )
        service.handlers.register("queue_effect", lambda job: None)  # the queue runner's
        pool = WorkerPool(
            JobStore(engine, lease_seconds=60), service.handlers, RunnerConfig(threads=1)
        )
        bot = ForgeBot(
            forge,
            github,
            tokens,
            wired[0].pipeline,
            service.router,
            pool,
            engine,
            LockManager(engine),
            clock,
            queue,
        )
        clock.tick = tick
        yield bot
    finally:
        http.close()
        engine.dispose()
