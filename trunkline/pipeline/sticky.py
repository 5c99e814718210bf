"""The text of an item's sticky status comment: current state, why, spend, next steps.

Pure; performs no I/O. One comment per item, edited in place at every transition; the
runner adds its own hidden marker to find it again.
"""

from __future__ import annotations

from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.states import WorkState

S = WorkState

NEXT_STEPS: dict[WorkState, str] = {
    S.QUEUED: "Nothing to do: the item starts when a slot is free (`dispatch.max_active`). "
    "`/trunkline cancel` or removing the label cancels it.",
    S.PLANNING: "Nothing to do: the planner is writing a plan. `/trunkline cancel` stops it.",
    S.PLAN_REVIEW: "Nothing to do: a second agent is reviewing the plan.",
    S.AWAITING_PLAN_APPROVAL: "A maintainer reads the plan and comments "
    "`/trunkline approve-plan`, or `/trunkline cancel`.",
    S.WAITING_FOR_LOCKS: "Nothing to do: the item waits for its subsystems' locks.",
    S.EXECUTING: "Nothing to do: the executor is working. `/trunkline takeover` to drive it "
    "yourself.",
    S.SELF_CHECK: "Nothing to do: the allowlisted tests are running.",
    S.PR_OPEN: "Nothing to do: the branch is being pushed and the pull request opened.",
    S.REVIEWING: "Review the pull request if you like: a 'request changes' review sends it "
    "back to the executor.",
    S.CHANGES_REQUESTED: "Nothing to do: the executor addresses the review.",
    S.READY: "Approve the pull request if the risk level needs a human approval.",
    S.QUEUED_FOR_MERGE: "Nothing to do: the merge queue tests and fast-forwards it.",
    S.MERGED: "Nothing: the change is merged and the issue closed.",
    S.ESCALATED: "A human decides: read the escalation comment, then finish the work by hand "
    "on the branch, or fix the cause (policy, budget, issue text) and remove and re-add the "
    "label to start a new run.",
    S.TAKEN_OVER: "The branch and the locks are yours; `/trunkline resume` hands the work "
    "back to the executor, `/trunkline cancel` ends it.",
    S.CANCELLED: "Nothing; re-add the label to start over.",
    S.FAILED: "The pull request was closed; re-add the label to start over.",
    S.REFUSED: "Someone with the required permission can add the label.",
}


def sticky_text(item: WorkItem, why: str, max_rounds: int) -> str:
    lines = [
        f"**trunkline** · `{item.state.value}`",
        "",
        f"**Why:** {why}",
        f"**Spend (this run):** {item.spend.describe()}",
    ]
    if item.risk is not None:
        lines.append(
            f"**Risk:** {item.risk.level}"
            + (f" ({'; '.join(item.risk.reasons)})" if item.risk.reasons else "")
        )
        if item.risk.subsystems:
            lines.append(f"**Subsystems:** {', '.join(item.risk.subsystems)}")
    if item.pr is not None:
        lines.append(
            f"**Pull request:** #{item.pr}"
            + (f" at `{item.head_sha[:12]}`" if item.head_sha else "")
        )
    lines.append(f"**Review rounds used:** {item.review_rounds} of {max_rounds}")
    lines.append(f"**Next:** {NEXT_STEPS[item.state]}")
    return "\n".join(lines) + "\n"
