"""Events the merge-queue engine consumes: what people asked for and what the world reported.

Pure; performs no I/O. Events are prompts, not commands: the engine ignores an event about an
unknown PR or build, a stale SHA, or one it has already applied, so runners may deliver events
late, twice or out of order. The engine's clock is the `now` argument of `step`; the only
times events carry are when a runner's reading started (`read_at`), compared with each other
to tell a stale reading from a newer one.

Gate verdicts arrive as one event, `GatesUpdated`, carrying any subset of the three gates
(scope, review, approval) for one head SHA: a reviewer verdict sends just `review`, an approval
change just `approval`, a level-triggered re-read all three. A verdict for a SHA that is not
the entry's current head is ignored; runners re-evaluate the gates after a `PrHeadChanged`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from trunkline.queue.model import CheckConclusion, Gate, Priority, QueueConfig


@dataclass(frozen=True)
class Enqueue:
    """Add a PR at `head_sha`. Ignored when the PR is already queued or already merged.
    `read_at`: when the reading that saw `head_sha` started (as in `PrHeadChanged`)."""

    pr: int
    head_sha: str
    priority: Priority = Priority.NORMAL
    read_at: datetime | None = None


@dataclass(frozen=True)
class Dequeue:
    """Remove a PR (a human's `/trunkline dequeue`, the PR closed, the work item cancelled)."""

    pr: int
    by: str
    reason: str = ""


@dataclass(frozen=True)
class PriorityChanged:
    pr: int
    priority: Priority


@dataclass(frozen=True)
class GateReport:
    """One gate's verdict inside `GatesUpdated`."""

    gate: Gate
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class GatesUpdated:
    """Gate verdicts for `pr` at `head_sha` (any subset of the gates; later ones replace).
    `read_at`: when the evaluation started reading; a report read before the verdict it
    would replace is ignored, so two evaluations racing cannot leave the older one in force."""

    pr: int
    head_sha: str
    reports: tuple[GateReport, ...]
    read_at: datetime | None = None


@dataclass(frozen=True)
class PrHeadChanged:
    """The PR's head is now `new_sha`: verdicts for the old SHA are void.

    `read_at`: when the reading that saw `new_sha` started (the runner's clock). A reading
    older than the one that set the head in force is stale and ignored, so a slow reader can
    never move the queue back to a head that was pushed over; a reading that finds the head
    in force again only renews its time. Without `read_at` the report is always taken."""

    pr: int
    new_sha: str
    read_at: datetime | None = None


@dataclass(frozen=True)
class BaseMoved:
    """The base branch was observed at `new_sha` (a push webhook or a reconciler read)."""

    new_sha: str


@dataclass(frozen=True)
class IntegrationBuilt:
    build_id: str
    sha: str


@dataclass(frozen=True)
class IntegrationConflict:
    build_id: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class CheckStarted:
    """A required check began on `sha`. `attempt` (from `RequestChecks.attempt`, when the
    runner can tell) lets the engine drop reports of an earlier attempt after a retry."""

    sha: str
    name: str
    attempt: int | None = None


@dataclass(frozen=True)
class CheckCompleted:
    sha: str
    name: str
    conclusion: CheckConclusion
    summary: str = ""
    attempt: int | None = None  # as in CheckStarted


@dataclass(frozen=True)
class FastForwarded:
    """The runner moved the base from the build's base SHA to `sha` (force=false)."""

    build_id: str
    sha: str


@dataclass(frozen=True)
class FastForwardRejected:
    """The fast-forward was refused. `current_base_sha` is the base as read after the refusal:
    if it differs from the build's base the base moved under us (rebuild), otherwise the
    refusal has another cause (branch protection, permissions) and the PRs are ejected."""

    build_id: str
    reason: str
    current_base_sha: str


@dataclass(frozen=True)
class ChecksRegressed:
    """Re-read just before the fast-forward of `build_id`, a required check on `sha` is no
    longer a success (re-run red, a failing commit status, a report gone): the build fails
    with `reason` (bisected if it is a batch) instead of moving the base."""

    build_id: str
    sha: str
    reason: str


@dataclass(frozen=True)
class Tick:
    """Evaluate the check timeouts against `now` (sent periodically by the scheduler)."""


@dataclass(frozen=True)
class ConfigChanged:
    """The policy's queue settings changed (validated by constructing the `QueueConfig`)."""

    config: QueueConfig


Event = (
    Enqueue
    | Dequeue
    | PriorityChanged
    | GatesUpdated
    | PrHeadChanged
    | BaseMoved
    | IntegrationBuilt
    | IntegrationConflict
    | CheckStarted
    | CheckCompleted
    | FastForwarded
    | FastForwardRejected
    | ChecksRegressed
    | Tick
    | ConfigChanged
)
