"""Who may approve a work item's plan (`/trunkline approve-plan`).

Pure; performs no I/O. The plan is held to the approval rule of its risk level, as the pull
request will be (`trunkline.queue.gates`): when the rule names approvers (a list, or the
owners of the subsystems the plan touches) only they may approve the plan, teams resolved
through the configured team members; when it names none, anyone with write access may. The
person who asked for the work may approve their own plan only when the rule allows the
requester. Bots never approve. Write access itself is checked by the handler
(`slash_commands.permission_refusal`), before this.
"""

from __future__ import annotations

from collections.abc import Mapping

from trunkline.policies.evaluation import Evaluation
from trunkline.queue.gates import approval_groups, eligible_logins


def plan_approval_refusal(
    login: str,
    *,
    requester: str | None,
    evaluation: Evaluation,
    team_members: Mapping[str, frozenset[str]],
) -> str | None:
    """None when `login` may approve the plan `evaluation` describes; else why not."""
    requirement = evaluation.approvals
    key = login.lower()
    if requester is not None and key == requester.lower() and not requirement.allow_requester:
        return (
            f"Sorry @{login}, you asked for this work, and the policy's `{requirement.level}` "
            "approval rule does not let the requester approve it. Ask another approver."
        )
    approvers = tuple(a for group in approval_groups(evaluation) for a in group.approvers)
    if not approvers:
        return None  # the rule names nobody: write access is enough
    if key in eligible_logins(approvers, team_members):
        return None
    names = ", ".join(f"@{a.lstrip('@')}" for a in sorted(set(approvers), key=str.lower))
    who = (
        "an owner of the subsystems it touches"
        if requirement.from_owners
        else "one of the approvers the policy names"
    )
    return f"Sorry @{login}, this plan needs {who}: {names}."
