"""The escalation outcome and its comment (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trunkline.agents.budget import BudgetLimits, Spend
from trunkline.agents.contracts import Plan
from trunkline.agents.messages import Usage
from trunkline.agents.outcome import EscalationReason, OutcomeKind, WorkOutcome

LIMITS = BudgetLimits(1000, Decimal("2.5"), 60, 10, 2)
SPEND = Spend(Usage(400, 200), Decimal("0.123456"), calls=3, executor_turns=2, review_rounds=1)
PLAN = Plan(summary="s", steps=["a"], paths=["src/**"], acceptance_criteria=["c"])


def outcome(kind: OutcomeKind, reason: EscalationReason | None) -> WorkOutcome:
    return WorkOutcome(
        work_item="acme/x#1",
        kind=kind,
        reason=reason,
        detail="why it stopped",
        spend=SPEND,
        limits=LIMITS,
        plan=PLAN,
        plan_reviews=(),
        reports=(),
        reviews=(),
        commits=("a" * 40,),
        head_sha="a" * 40,
        files_changed=("src/a.py",),
    )


@pytest.mark.parametrize("reason", list(EscalationReason))
def test_agents_every_escalation_reason_renders_reason_spend_and_next_steps(
    reason: EscalationReason,
) -> None:
    comment = outcome(OutcomeKind.ESCALATED, reason).comment
    assert f"escalated ({reason.value})" in comment
    assert "600 of 1000 tokens" in comment
    assert "$0.1235 of $2.5000" in comment
    assert "2 of 10 executor turns" in comment
    assert "why it stopped" in comment
    assert "**Next steps:**\n- " in comment
    assert f"commits: {'a' * 12}" in comment


def test_agents_taken_over_and_completed_comments() -> None:
    taken = outcome(OutcomeKind.TAKEN_OVER, None)
    assert "human takeover" in taken.comment
    assert "/trunkline resume" in taken.comment
    done = outcome(OutcomeKind.COMPLETED, None)
    assert "finished" in done.comment
    assert done.next_steps
