"""The escalation comment of a work item the pipeline escalated: why, what was spent against
which caps, what was done, and what a human can do next.

Pure; performs no I/O. `escalation_comment(command, item, limits)` renders the markdown the
escalation performer hands to `trunkline.agents.escalation.perform_escalation` (which adds
where the work is — the branch and SHA — and the `cc` line for the policy's notify list).
Reason codes are the machine's (`plan_rejected`, `max_review_rounds`, `reviewer_escalated`,
`plan_review_escalated`, `step_failed`, `lease_lost`, `job_dead`, ...) and the agents'
(`budget_tokens`, `budget_usd`, `budget_wall`, `max_turns`, `invalid_output`,
`max_tokens_stop`, `provider_error`, `model_refusal`, `no_changes`); an unknown code still
gets a comment.
"""

from __future__ import annotations

from decimal import Decimal

from trunkline.agents.budget import BudgetLimits
from trunkline.pipeline.commands import Escalate
from trunkline.pipeline.model import WorkItem

_EXPLANATIONS: dict[str, str] = {
    "budget_tokens": "the token budget would have been exceeded by the next model call",
    "budget_usd": "the USD budget would have been exceeded by the next model call",
    "budget_wall": "the wall-time budget would have been exceeded",
    "max_turns": "the executor reached its turn limit",
    "max_review_rounds": "changes were still requested after the last review round",
    "plan_rejected": "the plan reviewer did not approve any plan",
    "plan_review_escalated": "the plan reviewer asked for a human decision",
    "reviewer_escalated": "the reviewer asked for a human decision",
    "invalid_output": "an agent's product was invalid after its repair turn",
    "max_tokens_stop": "an agent's answer was cut off at max_tokens",
    "provider_error": "the model API failed",
    "model_refusal": "the model refused the task",
    "no_changes": "the executor submitted a report without changing any file",
    "lease_lost": "the item lost its subsystem leases while working (nothing was written "
    "after the loss)",
    "step_failed": "a step failed in a way retrying cannot fix",
    "job_dead": "the job performing a step died on its last attempt (a crash or a killed "
    "worker) without reporting",
    "dequeued": "the pull request was taken out of the merge queue (not by trunkline), so it "
    "cannot merge without a human",
}

_RESTART = "Label the issue again (or comment `/trunkline retry`) to start a new run."
_NEXT_STEPS: dict[str, tuple[str, ...]] = {
    "budget_tokens": ("Raise `agents.budget.tokens` in the policy, then label the issue again.",),
    "budget_usd": ("Raise `agents.budget.usd` in the policy, then label the issue again.",),
    "budget_wall": ("Raise `agents.budget.wall` or split the issue, then label the issue again.",),
    "max_turns": (
        "Finish the work by hand on the branch, or raise `agents.executor.max_turns` "
        "and label the issue again.",
    ),
    "max_review_rounds": (
        "Read the open findings on the pull request and finish the work by hand, or "
        "clarify the issue and label it again.",
    ),
    "plan_rejected": ("Clarify the issue (what to change, where, how to test it). " + _RESTART,),
    "plan_review_escalated": ("Decide on the plan's open question in the issue. " + _RESTART,),
    "reviewer_escalated": (
        "Read the reviewer's comment on the pull request and decide: finish or merge the "
        "change by hand, or close it.",
    ),
    "no_changes": ("Check whether the issue still needs a change. " + _RESTART,),
    "lease_lost": ("Check `trunkline locks` for who holds the subsystems now. " + _RESTART,),
    "job_dead": (
        "Read the job's last error (`trunkline jobs --dead`) and the timeline "
        "(`trunkline timeline {item}`). " + _RESTART,
    ),
    "dequeued": (
        "Comment `/trunkline queue` on the pull request to put it back in the queue (it "
        "merges as it is), or close it. " + _RESTART,
    ),
}
_DEFAULT_NEXT = (
    "Read the timeline (`trunkline timeline {item}`), then label the issue again to start "
    "a new run, or finish the work by hand on the branch.",
)


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.0001'))}"


def explanation(code: str) -> str:
    return _EXPLANATIONS.get(code, "a human needs to decide how to continue")


def next_steps(code: str, item_key: str) -> tuple[str, ...]:
    return tuple(step.format(item=item_key) for step in _NEXT_STEPS.get(code, _DEFAULT_NEXT))


def escalation_comment(command: Escalate, item: WorkItem, limits: BudgetLimits) -> str:
    """The markdown of the escalation comment (before the branch and cc lines)."""
    spend = command.spend
    done: list[str] = []
    if item.plan_id:
        done.append(f"plan `{item.plan_id}`: {item.plan_summary[:200]}")
    if item.exec_round:
        done.append(f"executor runs: {item.exec_round}")
    if item.pr is not None:
        done.append(
            f"pull request #{item.pr}" + (f" at `{item.head_sha[:12]}`" if item.head_sha else "")
        )
    done.append(f"review rounds used: {item.review_rounds} of {limits.review_rounds}")
    lines = [
        f"### trunkline: escalated ({command.reason}): {explanation(command.reason)}",
        "",
        command.detail or "A human needs to decide how to continue.",
        "",
        f"**Spend:** {spend.tokens} of {limits.tokens} tokens, {_usd(spend.usd)} of "
        f"{_usd(limits.usd)} (this run).",
        "",
        "**Done so far:**",
        *[f"- {line}" for line in done],
        "",
        "**Next steps:**",
        *[f"- {line}" for line in next_steps(command.reason, item.key)],
    ]
    return "\n".join(lines) + "\n"
