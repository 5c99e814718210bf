"""The queue's reconciler: re-read GitHub, so that a lost webhook only delays the queue.

Webhooks are prompts to look, not facts (level-triggered). Every few minutes the scheduler's
reconciler re-reads, for each queue with work in it, what the webhooks would have said: the
base branch's SHA, each queued PR's head and whether it was closed or merged outside the
queue, and the check runs and commit statuses on the integration commits under test (counted
as in `required_checks`). `observations` (pure) turns those readings into the same
engine events the webhook handlers submit; the engine ignores what it already knows, so
re-reading changes nothing when no webhook was lost. Entries without a verdict on their
current head get their gates evaluated again (`refresh_gates`, wired by the bot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from trunkline.errors import TrunklineError
from trunkline.github.model import CheckRun, CommitStatus
from trunkline.github.policy_file import read_policy
from trunkline.policies.model import Policy
from trunkline.queue import events as ev
from trunkline.queue.config_from_policy import queue_config_from_policy
from trunkline.queue.model import (
    ALL_GATES,
    BuildState,
    QueueConfig,
    QueueConfigError,
    QueueState,
)
from trunkline.queue.required_checks import required_reports
from trunkline.queue.runner import RepositoryAccess
from trunkline.queue.service import QueueService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullReading:
    head_sha: str
    open: bool
    merged: bool


@dataclass(frozen=True)
class Readings:
    """What GitHub says now about one queue's base, PRs and integration commits."""

    base_sha: str
    pulls: Mapping[int, PullReading]
    check_runs: Mapping[str, tuple[CheckRun, ...]]  # integration SHA -> its check runs
    config: QueueConfig | None = None  # the base's policy's queue settings; None: keep
    statuses: Mapping[str, tuple[CommitStatus, ...]] | None = None  # integration SHA -> its
    own_app: str | None = None  # trunkline's App slug: its check runs never count
    read_at: datetime | None = None  # when the reading started (the PR heads' `read_at`)


def observations(state: QueueState, readings: Readings) -> tuple[ev.Event, ...]:
    """The engine events that tell `state` what `readings` show (pure)."""
    found: list[ev.Event] = []
    if readings.config is not None and readings.config != state.config:
        found.append(ev.ConfigChanged(readings.config))
    if readings.base_sha != state.base_sha:
        found.append(ev.BaseMoved(readings.base_sha))
    for entry in state.entries:
        pull = readings.pulls.get(entry.pr)
        if pull is None:
            continue
        if not pull.open and not pull.merged:
            found.append(ev.Dequeue(entry.pr, by="trunkline", reason="PR closed"))
        elif pull.merged:
            build = state.build_of(entry.pr)
            if build is None or build.state is not BuildState.PASSED:
                found.append(
                    ev.Dequeue(entry.pr, by="trunkline", reason="PR merged outside the queue")
                )
        elif pull.head_sha != entry.head_sha:
            found.append(ev.PrHeadChanged(entry.pr, pull.head_sha, read_at=readings.read_at))
    statuses = readings.statuses or {}
    for build in state.builds:
        sha = build.integration_sha
        if sha is None:
            continue
        reports = required_reports(
            state.config,
            readings.check_runs.get(sha, ()),
            statuses.get(sha, ()),
            sha=sha,
            own_app=readings.own_app,
        )
        for name, report in reports.items():
            if report.conclusion is not None:
                found.append(ev.CheckCompleted(sha, name, report.conclusion, report.summary))
            elif report.started:
                found.append(ev.CheckStarted(sha, name))
    return tuple(found)


def read(
    state: QueueState,
    access: RepositoryAccess,
    own_app: str | None = None,
    read_at: datetime | None = None,
) -> Readings:
    """Read what the queue's webhooks report, through the repository's GitHub port
    (`read_at`: the time the reading started, on the caller's clock)."""
    github, repo = access.github, state.repo
    base_sha = github.get_ref(repo, f"heads/{state.config.base}").sha
    pulls = {}
    for entry in state.entries:
        pull = github.get_pull(repo, entry.pr)
        pulls[entry.pr] = PullReading(pull.head_sha, pull.state == "open", pull.merged)
    runs = {
        build.integration_sha: github.list_check_runs(repo, build.integration_sha)
        for build in state.builds
        if build.integration_sha is not None
    }
    statuses = {
        build.integration_sha: github.get_combined_status(repo, build.integration_sha).statuses
        for build in state.builds
        if build.integration_sha is not None
    }
    return Readings(base_sha, pulls, runs, policy_config(access, state), statuses, own_app, read_at)


def policy_config(access: RepositoryAccess, state: QueueState) -> QueueConfig | None:
    """The queue settings of the policy on the queue's base branch; None keeps the current."""
    policy = read_policy(access.github, state.repo, state.config.base)
    if not isinstance(policy, Policy):
        log.warning("policy invalid; queue settings unchanged", extra={"repo": state.repo})
        return None
    if policy.queue.base != state.config.base:
        return None  # the policy now names another base: that is another queue
    try:
        return queue_config_from_policy(policy.queue)
    except QueueConfigError as error:
        log.warning(
            "queue settings refused; unchanged", extra={"repo": state.repo, "error": str(error)}
        )
        return None


GateRefresher = Callable[[RepositoryAccess, str, int], object]
"""Re-evaluate one PR's gates (`GateRunner.refresh` through the repository's GitHub port)."""


def unevaluated(state: QueueState) -> tuple[int, ...]:
    """The entries that have no verdict for some gate on their current head (pure): their
    gates were voided by a head change, or the evaluation's webhook was lost."""
    return tuple(
        entry.pr
        for entry in state.entries
        if any(entry.verdict(gate) is None for gate in ALL_GATES)
    )


def queue_reconciler(
    queues: QueueService,
    access: Callable[[str], RepositoryAccess],
    own_app: str | None = None,
    refresh_gates: GateRefresher | None = None,
) -> Callable[[], None]:
    """The scheduler task: reconcile every queue with entries or builds; then, with
    `refresh_gates`, evaluate the gates of every entry that lacks a verdict on its head (a
    lost `synchronize` or review webhook must not leave an entry waiting for ever)."""

    def reconcile() -> None:
        for state in queues.states():
            if not (state.entries or state.builds):
                continue
            try:
                read_at = queues.clock.now()
                events = observations(state, read(state, access(state.repo), own_app, read_at))
            except TrunklineError as error:  # one repository's trouble must not stop the rest
                log.warning(
                    "queue not reconciled",
                    extra={"repo": state.repo, "base": state.base, "error": str(error)},
                )
                continue
            for event in events:
                queues.submit(state.repo, state.base, event)
            if refresh_gates is not None:
                _refresh_unevaluated(queues, access, state, refresh_gates)

    return reconcile


def _refresh_unevaluated(
    queues: QueueService,
    access: Callable[[str], RepositoryAccess],
    state: QueueState,
    refresh_gates: GateRefresher,
) -> None:
    fresh = queues.state(state.repo, state.base)
    for pr in unevaluated(fresh) if fresh is not None else ():
        try:
            refresh_gates(access(state.repo), state.repo, pr)
        except TrunklineError as error:
            log.warning(
                "gates not refreshed",
                extra={"repo": state.repo, "pr": pr, "error": str(error)},
            )
