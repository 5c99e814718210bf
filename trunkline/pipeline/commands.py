"""The commands `machine.decide` returns: effects as data for the runner to perform.

Pure; performs no I/O. Every command has `key` (deterministic: `<item>:run<r>:v<version>:
<name>`, so deciding the same event on the same item gives the same keys, and a runner that
stores commands as jobs with unique keys performs each once) and `item` (`OWNER/REPO#N`).
Commands that produce a result (`RunPlanner`, `RunPlanReview`, `AcquireLocks`,
`RunExecutor`, `RunSelfCheck`, `PushAndOpenPr`, `RunReviewer`, `Enqueue`) are answered by
an event whose `answers` is the command's key; the others are fire-and-forget (idempotent
GitHub writes, lock releases, stopping work), which the runner performs however long a
retryable outage lasts unless the item has moved past them (`superseded`).
"""

from __future__ import annotations

from dataclasses import dataclass

from trunkline.pipeline.model import ReviewNote, Spend, Verdict
from trunkline.pipeline.states import WorkState


@dataclass(frozen=True)
class RunPlanner:
    """Run the planner; answered by PlanReady (or StepFailed)."""

    key: str
    item: str
    round: int
    feedback: str = ""


@dataclass(frozen=True)
class RunPlanReview:
    """Run the plan reviewer on `plan_id`; answered by PlanReviewed."""

    key: str
    item: str
    plan_id: str


@dataclass(frozen=True)
class RequestPlanApproval:
    """Ask a human (sticky comment, mentions) to approve the plan: `/trunkline approve-plan`.
    Answered, eventually, by PlanApproved."""

    key: str
    item: str
    plan_id: str
    summary: str
    risk: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class AcquireLocks:
    """Ask for every subsystem's lease for `holder`, all or nothing; answered by
    LocksGranted or LocksWaiting (ask again while waiting: the waiter row is a heartbeat)."""

    key: str
    item: str
    holder: str
    subsystems: tuple[str, ...]


@dataclass(frozen=True)
class RunExecutor:
    """Run the executor (round `round`) on the approved plan; answered by ExecutionDone.
    Its writes are fenced by the epochs the lock manager holds for `holder` when the job
    starts (so a takeover's transfer makes them stale)."""

    key: str
    item: str
    round: int
    plan_id: str
    holder: str
    feedback: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSelfCheck:
    """Run the policy's allowlisted commands on the work; answered by SelfCheckDone."""

    key: str
    item: str
    round: int


@dataclass(frozen=True)
class PushAndOpenPr:
    """Push the branch (fenced by `holder`'s epochs); open the PR (linking the issue,
    carrying the plan, risk reasons and spend) or update it when `pr` exists; answered by
    PrOpened."""

    key: str
    item: str
    pr: int | None
    holder: str
    plan_summary: str
    risk: str
    reasons: tuple[str, ...]
    spend: Spend


@dataclass(frozen=True)
class RunReviewer:
    """Run the reviewer agent on `sha`; answered by ReviewDone for that SHA."""

    key: str
    item: str
    pr: int
    sha: str


@dataclass(frozen=True)
class PostReview:
    """Post the reviewer's verdict as a pull-request review by the App, bound to `sha`, with
    a line comment per note."""

    key: str
    item: str
    pr: int
    sha: str
    verdict: Verdict
    findings: int
    summary: str
    notes: tuple[ReviewNote, ...] = ()


@dataclass(frozen=True)
class Enqueue:
    """Put the PR into the merge queue at `head_sha`; answered by Enqueued."""

    key: str
    item: str
    pr: int
    head_sha: str


@dataclass(frozen=True)
class Dequeue:
    """Take the PR out of the merge queue (the item left queued_for_merge other than by
    merging)."""

    key: str
    item: str
    pr: int
    reason: str


@dataclass(frozen=True)
class UpdateSticky:
    """Edit the item's sticky status comment in place (on the issue and, if any, the PR)."""

    key: str
    item: str
    state: WorkState
    pr: int | None
    text: str


@dataclass(frozen=True)
class ApplyLabel:
    key: str
    item: str
    label: str


@dataclass(frozen=True)
class RemoveLabel:
    key: str
    item: str
    label: str


@dataclass(frozen=True)
class ReleaseLocks:
    """Release the holder's leases and leave any waiting line (idempotent)."""

    key: str
    item: str
    holder: str
    subsystems: tuple[str, ...]


@dataclass(frozen=True)
class TransferLocks:
    """Move the leases from one holder to another with new epochs (takeover and resume)."""

    key: str
    item: str
    from_holder: str
    to_holder: str
    subsystems: tuple[str, ...]


@dataclass(frozen=True)
class CloseIssue:
    key: str
    item: str
    summary: str


@dataclass(frozen=True)
class Escalate:
    """Push the work in progress, post the escalation comment (reason, spend, next steps)
    and mention `notify`. The escalation label is a separate ApplyLabel."""

    key: str
    item: str
    reason: str
    detail: str
    spend: Spend
    notify: tuple[str, ...]
    pr: int | None


@dataclass(frozen=True)
class RefuseLabel:
    """A polite comment: `user` may not hand this issue to trunkline."""

    key: str
    item: str
    user: str
    label: str
    min_permission: str


@dataclass(frozen=True)
class CancelWork:
    """Stop any agent job of the item that is in flight (its results will be ignored)."""

    key: str
    item: str
    reason: str


Command = (
    RunPlanner
    | RunPlanReview
    | RequestPlanApproval
    | AcquireLocks
    | RunExecutor
    | RunSelfCheck
    | PushAndOpenPr
    | RunReviewer
    | PostReview
    | Enqueue
    | Dequeue
    | UpdateSticky
    | ApplyLabel
    | RemoveLabel
    | ReleaseLocks
    | TransferLocks
    | CloseIssue
    | Escalate
    | RefuseLabel
    | CancelWork
)

#: Commands answered by a result event carrying their key in `answers`.
ANSWERED = (
    RunPlanner,
    RunPlanReview,
    AcquireLocks,
    RunExecutor,
    RunSelfCheck,
    PushAndOpenPr,
    RunReviewer,
    Enqueue,
)
