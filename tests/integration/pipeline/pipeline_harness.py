"""Test harness for the pipeline runner: a SQLite store, the recording GitHub fake, the real
lock manager and merge queue service, and webhook payloads shaped like GitHub's.

Performs I/O (SQLite in a temporary directory).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from trunkline.agents.redaction import Redactor
from trunkline.bot.dispatch_handlers import QUEUE_DEPARTURE_JOB, DispatchHandlers
from trunkline.bot.events import parse_payload
from trunkline.bot.item_commands import ItemCommands
from trunkline.bot.router import RoutedEvent, Router
from trunkline.clock import SystemClock
from trunkline.github.fake import FakeGitHub
from trunkline.github.model import Permission
from trunkline.github.port import GitHubPort
from trunkline.github.redacting import RedactingGitHub
from trunkline.locks.leases import LockManager
from trunkline.pipeline.agent_performers import RESUME_JOB, resume_handler
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.performers import GitHubPerformers
from trunkline.pipeline.runner import Performer, PipelineService
from trunkline.policies.model import Policy
from trunkline.queue.service import QueueService
from trunkline.store.jobs import JobStore
from trunkline.store.runner import HandlerRegistry, RunnerConfig, WorkerPool
from trunkline.store.testing import migrated_engine

REPO = "acme/widgets"
INSTALLATION = 7
MAINTAINER = "maya"
OUTSIDER = "oscar"


def repository_json() -> dict[str, Any]:
    return {
        "id": 1,
        "name": "widgets",
        "full_name": REPO,
        "private": False,
        "owner": {"login": "acme", "id": 2},
    }


def pull_request_payload(
    action: str, pr: int, head_sha: str, *, merged: bool = False, login: str = MAINTAINER
) -> dict[str, Any]:
    return {
        "action": action,
        "number": pr,
        "pull_request": {
            "number": pr,
            "state": "closed" if action == "closed" else "open",
            "title": "A change",
            "merged": merged,
            "head": {"ref": "trunkline/issue-1", "sha": head_sha},
            "base": {"ref": "main", "sha": "0" * 40},
        },
        "repository": repository_json(),
        "sender": {"login": login, "id": 3, "type": "User"},
        "installation": {"id": INSTALLATION},
    }


def review_payload(pr: int, head_sha: str, state: str, login: str, body: str) -> dict[str, Any]:
    payload = pull_request_payload("submitted", pr, head_sha, login=login)
    payload["review"] = {
        "id": 501,
        "state": state,
        "commit_id": head_sha,
        "body": body,
        "user": {"login": login, "id": 3, "type": "User"},
    }
    return payload


def comment_payload(
    number: int,
    body: str,
    login: str,
    *,
    comment_id: int = 900,
    labels: tuple[str, ...] = ("agent",),
    pull_request: bool = False,
    account_type: str = "User",
) -> dict[str, Any]:
    """`issue_comment.created` on issue (or pull request) `number`."""
    issue: dict[str, Any] = {
        "number": number,
        "title": "Add a widget",
        "labels": [{"name": name} for name in labels],
    }
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.test/pulls/{number}"}
    user = {"login": login, "id": 3, "type": account_type}
    return {
        "action": "created",
        "issue": issue,
        "comment": {"id": comment_id, "body": body, "user": user},
        "repository": repository_json(),
        "sender": user,
        "installation": {"id": INSTALLATION},
    }


def labeled_payload(
    issue: int, login: str, label: str = "agent", action: str = "labeled"
) -> dict[str, Any]:
    return {
        "action": action,
        "issue": {"number": issue, "title": "Add a widget", "labels": [{"name": label}]},
        "label": {"name": label},
        "repository": repository_json(),
        "sender": {"login": login, "id": 99, "type": "User"},
        "installation": {"id": INSTALLATION},
    }


@dataclass
class Harness:
    engine: Engine
    github: FakeGitHub
    service: PipelineService
    queue: QueueService
    locks: LockManager
    router: Router
    jobs: JobStore
    pool: WorkerPool
    handlers: DispatchHandlers

    def deliver(self, event: str, payload: dict[str, Any], delivery_id: str = "d") -> None:
        parsed = parse_payload(event, payload)
        assert parsed is not None
        self.router.dispatch(
            RoutedEvent(delivery_id, event, payload.get("action"), parsed, payload)
        )

    def drain(self, limit: int = 200) -> int:
        """Run due jobs until none is left (queue effects are not this area's: skipped)."""
        ran = 0
        while ran < limit and self.pool.run_once("test-worker"):
            ran += 1
        return ran


def make_harness(
    tmp_path: Path,
    policy: Policy,
    agent_performers: Mapping[type[Any], Performer] = {},
    *,
    url: str | None = None,
    lock_poll_seconds: float = 20.0,
    wrap_github: Callable[[FakeGitHub], GitHubPort] | None = None,
    team_members: Mapping[str, frozenset[str]] | None = None,
    redactor: Redactor | None = None,
) -> Harness:
    """`redactor`: as the composition root wires it (GitHub port, timeline, job errors)."""
    engine = migrated_engine(url or f"sqlite:///{tmp_path / 'pipeline.db'}")
    github = FakeGitHub()
    github.add_repo(REPO)
    github.set_permission(REPO, MAINTAINER, Permission.MAINTAIN)
    github.set_permission(REPO, OUTSIDER, Permission.READ)
    clock = SystemClock()
    service = PipelineService(
        engine, clock, lambda repo: PipelineConfig.of(policy), redactor=redactor
    )
    queue = QueueService(engine, clock)
    locks = LockManager(engine)

    port: GitHubPort = wrap_github(github) if wrap_github is not None else github
    if redactor is not None:
        port = RedactingGitHub(port, redactor)

    def github_for(installation: int | None) -> GitHubPort:
        assert installation == INSTALLATION
        return port

    GitHubPerformers(
        github_for, lambda repo: policy, locks, queue, lock_poll_seconds=lock_poll_seconds
    ).register(service)
    for command_type, performer in agent_performers.items():
        service.register(command_type, performer)
    registry = HandlerRegistry()
    service.register_handlers(registry)
    registry.register("queue_effect", lambda job: None)  # the queue runner's, not tested here
    registry.register(RESUME_JOB, resume_handler(service))
    jobs = JobStore(engine, lease_seconds=30, redactor=redactor)
    pool = WorkerPool(jobs, registry, RunnerConfig(threads=1))
    router = Router()
    handlers = DispatchHandlers(service, github_for)
    handlers.register(router)
    ItemCommands(service, github_for, lambda repo: policy, team_members or {}).register(router)
    registry.register(QUEUE_DEPARTURE_JOB, handlers.queue_departure_job)
    queue.departure_job_kind = QUEUE_DEPARTURE_JOB  # as configure_dispatch wires it
    return Harness(engine, github, service, queue, locks, router, jobs, pool, handlers)
