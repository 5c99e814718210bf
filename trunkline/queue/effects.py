"""Effects the merge-queue engine asks the outside world to perform, as data.

Pure; performs no I/O. Every effect carries a `key`: a string unique to that request and
identical when the same step is replayed from the same state, so a runner that records effects
before performing them (an outbox) and crashes half way can perform them again safely: it
skips keys it has already completed. Keys start with `<repo>@<base>:` so they are unique
across queues. The runner reports results back as events (see `trunkline.queue.events`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trunkline.queue.model import MergeMethod


class CheckRunStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class CheckRunConclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    CANCELLED = "cancelled"


QUEUE_CHECK_NAME = "trunkline/queue"


def integration_branch(base: str, build_id: str) -> str:
    """The branch a build's integration commit is pushed to."""
    return f"trunkline/queue/{base}/{build_id}"


@dataclass(frozen=True)
class BuildIntegration:
    """Create the integration commit: `prs` (each at its head SHA, in order) onto `base_sha`
    by `merge_method`; push it to `branch`; report IntegrationBuilt or IntegrationConflict."""

    key: str
    build_id: str
    base_sha: str
    prs: tuple[tuple[int, str], ...]
    merge_method: MergeMethod
    branch: str


@dataclass(frozen=True)
class RequestChecks:
    """Run `check_names` on exactly `integration_sha` (pushed to `branch`); `attempt` counts
    the requests for this build, so a retry is a distinct request."""

    key: str
    build_id: str
    integration_sha: str
    check_names: tuple[str, ...]
    attempt: int
    branch: str


@dataclass(frozen=True)
class FastForwardBase:
    """Move `base` from `expected_old_sha` to `new_sha`, force=false; report FastForwarded or
    FastForwardRejected (with the base SHA read after the refusal). `prs`: the (PR, head SHA)
    pairs `new_sha` merges; a PR whose head moved is reported (PrHeadChanged) instead of
    merged."""

    key: str
    build_id: str
    base: str
    expected_old_sha: str
    new_sha: str
    prs: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class PostCheckRun:
    """Create or update the `trunkline/queue` check run on the PR's head SHA."""

    key: str
    pr: int
    head_sha: str
    name: str
    status: CheckRunStatus
    conclusion: CheckRunConclusion | None
    title: str
    summary: str


@dataclass(frozen=True)
class Comment:
    key: str
    pr: int
    body: str


@dataclass(frozen=True)
class Eject:
    """The PR left the queue without merging. `reason` is never empty."""

    key: str
    pr: int
    reason: str
    detail: str


@dataclass(frozen=True)
class ReleaseLocks:
    """Release the ownership locks of the work item behind `pr` (emitted on merge only)."""

    key: str
    pr: int


@dataclass(frozen=True)
class ClosePull:
    """Close `pr` without a GitHub merge: it was squashed into `merged_sha`, which is on the
    base, but its head is not, so GitHub would never mark it merged (emitted on merge with
    the squash method only; the merge comment names the commit)."""

    key: str
    pr: int
    merged_sha: str | None


@dataclass(frozen=True)
class DeleteIntegrationBranch:
    """The build is over (merged, void or failed): delete its branch and cancel its CI runs."""

    key: str
    build_id: str
    branch: str


Effect = (
    BuildIntegration
    | RequestChecks
    | FastForwardBase
    | PostCheckRun
    | Comment
    | Eject
    | ReleaseLocks
    | DeleteIntegrationBranch
    | ClosePull
)
