"""The events `machine.decide` consumes: facts from GitHub, humans, the merge queue and the
results of commands the runner performed.

Pure; performs no I/O. Result events carry `answers`: the `key` of the command they answer
(the runner copies it from the command). An item accepts a result only for the command it is
waiting for (`WorkItem.awaiting`), so a duplicate or a late result of an earlier command
changes nothing. Facts from outside (labels, reviews, pushes, the queue, slash commands) are
bound to what they are about instead: the PR number, the head SHA or the plan id.

Permissions in `Labeled` are read through the API by the runner, never from the payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from trunkline.pipeline.model import ReviewNote, RiskAssessment, Spend, Verdict
from trunkline.policies.model import Permission


class ExecutionKind(StrEnum):
    COMPLETED = "completed"
    ESCALATED = "escalated"
    TAKEN_OVER = "taken_over"


class HumanReviewState(StrEnum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"


# --- GitHub and humans ------------------------------------------------------------------


@dataclass(frozen=True)
class Labeled:
    """`issues.labeled`; `permission` is the labeller's permission read through the API
    (None: no access). The only event that can create an item, so it names the issue."""

    repo: str
    issue: int
    by: str
    permission: Permission | None
    label: str


@dataclass(frozen=True)
class Unlabeled:
    by: str
    label: str


@dataclass(frozen=True)
class PlanApproved:
    """A human approved the plan (`/trunkline approve-plan`); the handler checked who."""

    by: str
    plan_id: str


@dataclass(frozen=True)
class HumanReview:
    """A human's pull-request review on `sha`; `comments` are its body and line comments."""

    sha: str
    state: HumanReviewState
    by: str
    comments: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrHeadChanged:
    pr: int
    sha: str


@dataclass(frozen=True)
class PrClosed:
    """The pull request was closed without merging."""

    pr: int
    by: str


@dataclass(frozen=True)
class TakeoverRequested:
    by: str


@dataclass(frozen=True)
class Resumed:
    by: str


@dataclass(frozen=True)
class CancelRequested:
    by: str


# --- the merge queue ----------------------------------------------------------------------


@dataclass(frozen=True)
class Merged:
    """The item's pull request merged (through the queue or not): a fact in any state."""

    pr: int
    sha: str


@dataclass(frozen=True)
class Ejected:
    pr: int
    reason: str


@dataclass(frozen=True)
class Dequeued:
    """The pull request left the merge queue neither merged nor ejected, while still open:
    `/trunkline dequeue`, or its base branch changed. `reason` is the queue's."""

    pr: int
    reason: str


# --- admission ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    """`machine.admit` gave the queued item a slot under `dispatch.max_active`. Bound to
    the run, so a late admission of an earlier run cannot start a later one unadmitted."""

    run: int


# --- results of commands ------------------------------------------------------------------


@dataclass(frozen=True)
class PlanReady:
    answers: str
    plan_id: str
    summary: str
    paths: tuple[str, ...]
    evaluation: RiskAssessment
    spend: Spend = field(default_factory=Spend)


@dataclass(frozen=True)
class PlanReviewed:
    answers: str
    plan_id: str
    verdict: Verdict
    summary: str = ""
    spend: Spend = field(default_factory=Spend)


@dataclass(frozen=True)
class LocksGranted:
    answers: str
    subsystems: tuple[str, ...]
    epochs: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class LocksWaiting:
    answers: str
    blocked_on: tuple[str, ...]


@dataclass(frozen=True)
class ExecutionDone:
    """The executor finished. `reason` is an `EscalationReason` value when escalated.
    `taken_over` only acknowledges a takeover: `TakeoverRequested` drives that transition."""

    answers: str
    kind: ExecutionKind
    reason: str = ""
    spend: Spend = field(default_factory=Spend)


@dataclass(frozen=True)
class SelfCheckDone:
    answers: str
    passed: bool
    summary: str = ""


@dataclass(frozen=True)
class PrOpened:
    """The branch was pushed and the PR opened (or updated) at `head_sha`."""

    answers: str
    pr: int
    head_sha: str


@dataclass(frozen=True)
class ReviewDone:
    """The reviewer's verdict on `sha`; `notes` are its findings that name a path and line."""

    answers: str
    sha: str
    verdict: Verdict
    findings: int = 0
    summary: str = ""
    spend: Spend = field(default_factory=Spend)
    notes: tuple[ReviewNote, ...] = ()


@dataclass(frozen=True)
class Enqueued:
    answers: str
    pr: int


@dataclass(frozen=True)
class StepFailed:
    """A command failed. Retryable failures are retried by the runner (this only notes
    them); a non-retryable one escalates the item with `code` (an agent run's failure such
    as `invalid_output` or `max_tokens_stop`, `lease_lost`; default `step_failed`) and the
    `spend` of the failed run (cumulative, like every spend in events)."""

    answers: str
    step: str
    reason: str
    retryable: bool
    code: str = ""
    spend: Spend = field(default_factory=Spend)


@dataclass(frozen=True)
class BudgetExhausted:
    """An agent run stopped before a call that could cross a cap; `detail` says which call
    and what it could have cost against the spend so far."""

    reason: str
    spend: Spend
    detail: str = ""


Event = (
    Labeled
    | Unlabeled
    | PlanApproved
    | HumanReview
    | PrHeadChanged
    | PrClosed
    | TakeoverRequested
    | Resumed
    | CancelRequested
    | Merged
    | Ejected
    | Dequeued
    | Admitted
    | PlanReady
    | PlanReviewed
    | LocksGranted
    | LocksWaiting
    | ExecutionDone
    | SelfCheckDone
    | PrOpened
    | ReviewDone
    | Enqueued
    | StepFailed
    | BudgetExhausted
)
