"""Escalation codes, spends and review notes through the state machine, and the escalation
comment's text (pure)."""

from __future__ import annotations

from decimal import Decimal

from test_pipeline_machine import CONFIG, driven_to

from trunkline.agents.budget import BudgetLimits
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.escalation_comment import escalation_comment, next_steps
from trunkline.pipeline.model import ReviewNote, Spend, Verdict
from trunkline.pipeline.states import WorkState

LIMITS = BudgetLimits(
    tokens=200_000, usd=Decimal("1.5"), wall_seconds=600, executor_turns=40, review_rounds=2
)


def test_pipeline_a_failed_agent_run_escalates_with_its_code_and_spend() -> None:
    d = driven_to(WorkState.EXECUTING)
    awaited = d.it.awaiting
    assert awaited is not None
    spent = Spend(tokens=1234, usd=Decimal("0.25"))

    d.send(
        ev.StepFailed(awaited, "RunExecutor", "invalid_output: bad", False, "invalid_output", spent)
    )

    assert d.at(WorkState.ESCALATED)
    assert d.it.escalation_reason == "invalid_output"
    assert d.it.spend == spent
    escalate = d.one(cmd.Escalate)
    assert (escalate.reason, escalate.spend) == ("invalid_output", spent)
    assert d.one(cmd.ApplyLabel).label == CONFIG.escalation_label
    assert escalate.notify == CONFIG.escalation_notify


def test_pipeline_a_step_failure_without_a_code_is_step_failed() -> None:
    d = driven_to(WorkState.PR_OPEN)
    awaited = d.it.awaiting
    assert awaited is not None
    d.send(ev.StepFailed(awaited, "PushAndOpenPr", "push refused", False))
    assert d.it.escalation_reason == "step_failed"
    assert d.one(cmd.Escalate).detail == "PushAndOpenPr: push refused"


def test_pipeline_budget_detail_reaches_the_escalation() -> None:
    d = driven_to(WorkState.EXECUTING)
    d.send(ev.BudgetExhausted("budget_usd", Spend(1000, Decimal("0.9")), "next call up to $0.2"))
    assert d.it.escalation_reason == "budget_usd"
    assert d.one(cmd.Escalate).detail == (
        "the budget is exhausted (budget_usd): next call up to $0.2"
    )
    assert d.it.spend == Spend(1000, Decimal("0.9"))


def test_pipeline_review_notes_become_the_posted_reviews_notes() -> None:
    d = driven_to(WorkState.REVIEWING)
    awaited, sha = d.it.awaiting, d.it.head_sha
    assert awaited is not None
    assert sha is not None
    notes = (ReviewNote("src/a.py", 3, "why?"),)

    d.send(ev.ReviewDone(awaited, sha, Verdict.REQUEST_CHANGES, 1, "fix", notes=notes))

    assert d.one(cmd.PostReview).notes == notes


def test_pipeline_escalation_comment_says_why_spend_and_next_steps() -> None:
    d = driven_to(WorkState.EXECUTING)
    d.send(ev.BudgetExhausted("budget_tokens", Spend(199_000, Decimal("0.6")), "next call"))
    text = escalation_comment(d.one(cmd.Escalate), d.it, LIMITS)

    assert text.startswith("### trunkline: escalated (budget_tokens): the token budget")
    assert "**Spend:** 199000 of 200000 tokens, $0.6000 of $1.5000 (this run)." in text
    assert "Raise `agents.budget.tokens`" in text
    assert f"plan `{d.it.plan_id}`" in text
    assert "executor runs: 1" in text


def test_pipeline_every_code_has_next_steps_naming_the_item() -> None:
    for code in ("budget_usd", "plan_rejected", "lease_lost", "step_failed", "unheard_of"):
        steps = next_steps(code, "acme/web#3")
        assert steps
        assert all(step.strip() for step in steps)
    assert "acme/web#3" in next_steps("step_failed", "acme/web#3")[0]
