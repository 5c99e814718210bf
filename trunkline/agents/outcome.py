"""What an agent run of one work item ends with, and the comment that tells a human.

Pure; performs no I/O. `WorkOutcome` is data: completed, escalated (with a typed reason)
or taken over; the spend; what was done (plan, reviews, reports, commits, files); what a
human can do next; and the markdown comment. The GitHub side (push the branch, post the
comment, apply the escalation label, mention the notify list) is performed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from trunkline.agents.budget import BudgetLimits, Spend
from trunkline.agents.contracts import ExecutionReport, Plan, Review


class OutcomeKind(StrEnum):
    COMPLETED = "completed"
    ESCALATED = "escalated"
    TAKEN_OVER = "taken_over"


class EscalationReason(StrEnum):
    BUDGET_TOKENS = "budget_tokens"
    BUDGET_USD = "budget_usd"
    BUDGET_WALL = "budget_wall"
    MAX_TURNS = "max_turns"
    MAX_REVIEW_ROUNDS = "max_review_rounds"
    PLAN_REJECTED = "plan_rejected"
    REVIEWER_ESCALATED = "reviewer_escalated"
    INVALID_OUTPUT = "invalid_output"
    MAX_TOKENS_STOP = "max_tokens_stop"
    PROVIDER_ERROR = "provider_error"
    MODEL_REFUSAL = "model_refusal"
    NO_CHANGES = "no_changes"
    GIT_ERROR = "git_error"


_EXPLANATIONS: dict[EscalationReason, str] = {
    EscalationReason.BUDGET_TOKENS: "the token budget would have been exceeded by the next call",
    EscalationReason.BUDGET_USD: "the USD budget would have been exceeded by the next call",
    EscalationReason.BUDGET_WALL: "the wall-time budget would have been exceeded",
    EscalationReason.MAX_TURNS: "the executor reached its turn limit",
    EscalationReason.MAX_REVIEW_ROUNDS: "the reviewer still requested changes after the last round",
    EscalationReason.PLAN_REJECTED: "the plan reviewer did not approve the plan",
    EscalationReason.REVIEWER_ESCALATED: "the reviewer asked for a human decision",
    EscalationReason.INVALID_OUTPUT: "an agent's product was invalid after its repair turn",
    EscalationReason.MAX_TOKENS_STOP: "an agent's answer was cut off at max_tokens",
    EscalationReason.PROVIDER_ERROR: "the model API failed",
    EscalationReason.MODEL_REFUSAL: "the model refused the task",
    EscalationReason.NO_CHANGES: "the executor submitted a report without changing any file",
    EscalationReason.GIT_ERROR: "committing the work failed",
}

_NEXT_STEPS: dict[EscalationReason, tuple[str, ...]] = {
    EscalationReason.BUDGET_TOKENS: (
        "Raise `agents.budget.tokens` in the policy, then `/trunkline retry`.",
    ),
    EscalationReason.BUDGET_USD: (
        "Raise `agents.budget.usd` in the policy, then `/trunkline retry`.",
    ),
    EscalationReason.BUDGET_WALL: ("Raise `agents.budget.wall`, or split the issue, then retry.",),
    EscalationReason.MAX_TURNS: (
        "Finish the work by hand (`/trunkline takeover`) or split the issue.",
    ),
    EscalationReason.MAX_REVIEW_ROUNDS: (
        "Read the open findings and decide: fix by hand or `/trunkline approve`.",
    ),
}
_DEFAULT_NEXT = (
    "Read the timeline (`trunkline timeline`), then `/trunkline retry` or `/trunkline takeover`.",
)


@dataclass(frozen=True)
class WorkOutcome:
    work_item: str
    kind: OutcomeKind
    reason: EscalationReason | None
    detail: str
    spend: Spend
    limits: BudgetLimits
    plan: Plan | None
    plan_reviews: tuple[Review, ...]
    reports: tuple[ExecutionReport, ...]
    reviews: tuple[Review, ...]
    commits: tuple[str, ...]
    head_sha: str | None
    files_changed: tuple[str, ...]
    discarded_paths: tuple[str, ...] = ()

    @property
    def next_steps(self) -> tuple[str, ...]:
        if self.kind is OutcomeKind.COMPLETED:
            return ("Open the pull request; the merge queue takes it from there.",)
        if self.kind is OutcomeKind.TAKEN_OVER:
            return ("The branch is yours; `/trunkline resume` hands it back to the executor.",)
        assert self.reason is not None
        return _NEXT_STEPS.get(self.reason, _DEFAULT_NEXT)

    @property
    def done(self) -> tuple[str, ...]:
        lines = []
        if self.plan is not None:
            lines.append(f"planned ({self.plan.plan_id}: {len(self.plan.steps)} steps)")
        lines.extend(f"plan review: {r.verdict.value}" for r in self.plan_reviews)
        lines.extend(
            f"execution round {n}: {r.summary[:120]}" for n, r in enumerate(self.reports, 1)
        )
        lines.extend(f"review of `{r.subject[:12]}`: {r.verdict.value}" for r in self.reviews)
        if self.commits:
            lines.append(f"commits: {', '.join(c[:12] for c in self.commits)}")
        if self.discarded_paths:
            shown = ", ".join(f"`{p}`" for p in self.discarded_paths[:20])
            lines.append(f"discarded changes outside the approved plan: {shown}")
        return tuple(lines) or ("nothing yet",)

    @property
    def comment(self) -> str:
        return render_comment(self)


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.0001'))}"


def render_comment(outcome: WorkOutcome) -> str:
    """The markdown a human reads on the issue."""
    spend, limits = outcome.spend, outcome.limits
    if outcome.kind is OutcomeKind.COMPLETED:
        title = "trunkline: the agents finished this work item"
    elif outcome.kind is OutcomeKind.TAKEN_OVER:
        title = "trunkline: stopped for a human takeover"
    else:
        assert outcome.reason is not None
        title = f"trunkline: escalated ({outcome.reason.value}): {_EXPLANATIONS[outcome.reason]}"
    lines = [
        f"### {title}",
        "",
        outcome.detail,
        "",
        "**Spend:** "
        f"{spend.tokens} of {limits.tokens} tokens, {_usd(spend.usd)} of {_usd(limits.usd)}, "
        f"{spend.calls} model calls, {spend.executor_turns} of {limits.executor_turns} "
        f"executor turns, {spend.review_rounds} of {limits.review_rounds} review rounds.",
        "",
        "**Done so far:**",
        *[f"- {line}" for line in outcome.done],
        "",
        "**Next steps:**",
        *[f"- {line}" for line in outcome.next_steps],
    ]
    return "\n".join(lines) + "\n"
