"""The work item (one issue) as frozen data, its spend, risk, locks and bounded history.

Pure; performs no I/O. A `WorkItem` is replaced, never mutated: `machine.decide` returns a
new one with `version` one higher whenever anything changed. Risk level, reasons and
subsystems come from the policy engine (`PlanReady.evaluation`), never from an agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

# The lock holder names, re-exported for the pipeline (made and read in one place).
from trunkline.locks.holders import human_holder as human_holder
from trunkline.locks.holders import work_item_holder as work_item_holder
from trunkline.pipeline.states import WorkState

HISTORY_LIMIT = 50


@dataclass(frozen=True)
class Spend:
    """What a run of the item has spent so far. Events report cumulative totals, so merging
    keeps the larger of each figure and a duplicate or reordered report changes nothing."""

    tokens: int = 0
    usd: Decimal = Decimal(0)

    def merged_with(self, other: Spend) -> Spend:
        return Spend(max(self.tokens, other.tokens), max(self.usd, other.usd))

    def describe(self) -> str:
        return f"{self.tokens} tokens, ${self.usd.quantize(Decimal('0.0001'))}"


@dataclass(frozen=True)
class RiskAssessment:
    """The policy engine's verdict on a plan's paths (`trunkline.policies.evaluation`)."""

    level: str
    reasons: tuple[str, ...] = ()
    subsystems: tuple[str, ...] = ()
    plan_approval_required: bool = False


class LockStatus(StrEnum):
    NONE = "none"
    REQUESTED = "requested"  # AcquireLocks sent; the item may be in a lock's waiting line
    HELD = "held"  # granted to the item's agents
    TRANSFERRED = "transferred"  # handed to the human who took the item over


class Verdict(StrEnum):
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class ReviewNote:
    """A reviewer's finding at a line of the diff: a line comment of the App's review."""

    path: str
    line: int
    body: str


@dataclass(frozen=True)
class Transition:
    from_state: WorkState | None
    to_state: WorkState
    reason: str
    at: datetime


@dataclass(frozen=True)
class WorkItem:
    repo: str
    issue: int
    state: WorkState
    requester: str
    created_at: datetime
    updated_at: datetime
    #: When the current run was queued (admission is FIFO by this, then issue number).
    queued_at: datetime | None = None
    #: Runs: 1 for the first; a relabel after a restartable terminal state starts the next
    #: (0 for an item that was only ever refused).
    run: int = 0
    plan_id: str | None = None
    plan_summary: str = ""
    plan_paths: tuple[str, ...] = ()
    plan_rounds: int = 0  # planner runs in this run
    plan_accepted: bool = False  # reviewed and (when required) approved by a human
    risk: RiskAssessment | None = None
    plan_approval_required: bool = False
    plan_approved_by: str | None = None
    locks: LockStatus = LockStatus.NONE
    lock_subsystems: tuple[str, ...] = ()
    lock_epochs: tuple[tuple[str, int], ...] = ()
    waiting_on: tuple[str, ...] = ()
    exec_round: int = 0  # executor runs in this run
    pr: int | None = None
    head_sha: str | None = None
    review_rounds: int = 0  # change requests acted on (loops back to the executor)
    reviewed_sha: str | None = None
    review_verdict: Verdict | None = None
    spend: Spend = field(default_factory=Spend)
    merged_sha: str | None = None
    exit_reason: str | None = None
    escalation_reason: str | None = None
    takeover_holder: str | None = None
    label_removed: bool = False
    refused_users: tuple[str, ...] = ()
    #: The key of the command whose result the current state waits for; result events must
    #: carry it in `answers`, so late results of earlier commands are ignored.
    awaiting: str | None = None
    last_error: str | None = None
    version: int = 0
    history: tuple[Transition, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.repo}#{self.issue}"

    @property
    def holder(self) -> str:
        return work_item_holder(self.issue)
