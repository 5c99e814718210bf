"""Two bot replicas on one PostgreSQL database: every label delivered to both, two worker
pools of two threads each. Every issue is handled once and `dispatch.max_active` holds.

Agent roles are in-test performers (the GitHub fake behind a lock: it is not thread-safe);
the runner, store, jobs, locks and queue service are the production code.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pipeline_harness import (
    MAINTAINER,
    REPO,
    labeled_payload,
    make_harness,
    pull_request_payload,
)
from prerequisites import require_postgres
from sqlalchemy import select

from trunkline.github.fake import FakeGitHub
from trunkline.github.port import GitHubPort
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import RiskAssessment, Verdict
from trunkline.pipeline.runner import CommandContext, Performed
from trunkline.pipeline.states import ACTIVE, WorkState
from trunkline.policies.model import Policy
from trunkline.store.runner import RunnerConfig, WorkerPool
from trunkline.store.tables import Job
from trunkline.store.testing import temporary_postgres

ISSUES = 6
MAX_ACTIVE = 3


class LockedGitHub:
    """The GitHub fake with every call under one lock (it is not thread-safe)."""

    def __init__(self, inner: FakeGitHub) -> None:
        self._inner = inner
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


def _policy() -> Policy:
    return Policy.model_validate(
        {
            "version": 1,
            "dispatch": {"max_active": MAX_ACTIVE},
            "subsystems": {f"s{n}": {"paths": [f"s{n}/**"]} for n in range(1, ISSUES + 1)},
            "queue": {"required_checks": ["ci"]},
        }
    )


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_pipeline_two_replicas_handle_every_issue_once_under_max_active(tmp_path: Path) -> None:
    require_postgres()
    planned: Counter[int] = Counter()
    active_seen: list[int] = []
    github_ref: list[LockedGitHub] = []

    def plan(command: cmd.RunPlanner, context: CommandContext) -> Performed:
        planned[context.issue] += 1
        active_seen.append(sum(1 for item in harness.service.items(REPO) if item.state in ACTIVE))
        risk = RiskAssessment("low", (), (f"s{context.issue}",))
        return Performed(ev.PlanReady(command.key, f"plan-{context.issue}", "p", (), risk))

    def open_pr(command: cmd.PushAndOpenPr, context: CommandContext) -> Performed:
        fake = cast(FakeGitHub, github_ref[0])
        pull = fake.add_pull(
            REPO, head_ref=f"trunkline/issue-{context.issue}", head_sha=f"{context.issue:040x}"
        )
        return Performed(ev.PrOpened(command.key, pull.number, pull.head_sha))

    performers: dict[type[Any], Any] = {
        cmd.RunPlanner: plan,
        cmd.RunPlanReview: lambda c, x: Performed(
            ev.PlanReviewed(c.key, c.plan_id, Verdict.APPROVE)
        ),
        cmd.RunExecutor: lambda c, x: Performed(
            ev.ExecutionDone(c.key, ev.ExecutionKind.COMPLETED)
        ),
        cmd.RunSelfCheck: lambda c, x: Performed(ev.SelfCheckDone(c.key, True)),
        cmd.PushAndOpenPr: open_pr,
        cmd.RunReviewer: lambda c, x: Performed(ev.ReviewDone(c.key, c.sha, Verdict.APPROVE)),
    }
    with temporary_postgres(durable_commits=False) as url:

        def wrap(fake: FakeGitHub) -> GitHubPort:
            locked = LockedGitHub(fake)
            github_ref.append(locked)
            return cast(GitHubPort, locked)

        harness = make_harness(tmp_path, _policy(), performers, url=url, wrap_github=wrap)
        issues = [harness.github.add_issue(REPO, title=f"t{n}").number for n in range(ISSUES)]
        pools = [
            WorkerPool(
                harness.jobs, harness.pool.registry, RunnerConfig(threads=2, poll_seconds=0.05)
            )
            for _ in range(2)
        ]
        try:
            # both replicas receive every label at the same time
            def deliver_all() -> None:
                for n in issues:
                    harness.deliver("issues", labeled_payload(n, MAINTAINER), f"d{n}")

            deliveries = [threading.Thread(target=deliver_all) for _ in range(2)]
            for pool in pools:
                pool.start()
            for thread in deliveries:
                thread.start()
            for thread in deliveries:
                thread.join()

            def states() -> Counter[WorkState]:
                return Counter(item.state for item in harness.service.items(REPO))

            _wait_for(
                lambda: states()[WorkState.QUEUED_FOR_MERGE] == MAX_ACTIVE,
                "the first items to reach the merge queue",
            )
            assert states() == {
                WorkState.QUEUED_FOR_MERGE: MAX_ACTIVE,
                WorkState.QUEUED: ISSUES - MAX_ACTIVE,
            }
            # merging frees the slots: the rest run
            for item in harness.service.items(REPO):
                if item.state is WorkState.QUEUED_FOR_MERGE:
                    assert item.pr is not None
                    assert item.head_sha is not None
                    payload = pull_request_payload("closed", item.pr, item.head_sha, merged=True)
                    harness.deliver("pull_request", payload, f"m{item.issue}")
            _wait_for(
                lambda: (
                    states()
                    == {
                        WorkState.MERGED: MAX_ACTIVE,
                        WorkState.QUEUED_FOR_MERGE: ISSUES - MAX_ACTIVE,
                    }
                ),
                "the remaining items to reach the merge queue",
            )
        finally:
            for pool in pools:
                pool.stop()
        assert planned == Counter({n: 1 for n in issues})
        assert max(active_seen) <= MAX_ACTIVE
        with harness.engine.connect() as conn:
            errors = conn.execute(
                select(Job.key, Job.last_error).where(
                    Job.last_error.is_not(None), Job.kind == "pipeline_command"
                )
            ).all()
        assert errors == []
        harness.engine.dispose()
