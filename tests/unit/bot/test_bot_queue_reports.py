"""Pure rendering of gate check runs, merge-group summaries, explain text and bot verdicts."""

from __future__ import annotations

import pytest

from trunkline.bot.check_reports import (
    GATE_CHECK_NAMES,
    GROUP_CHECK_NAME,
    SUMMARY_LIMIT,
    GroupMember,
    render_gate_check,
    render_group_check,
)
from trunkline.bot.gate_runner import verdict_body, verdict_of, verdict_summary
from trunkline.bot.queue_commands import render_evaluation
from trunkline.github.model import Actor, CheckConclusion, Review, ReviewState
from trunkline.policies.evaluation import Change, CompiledPolicy
from trunkline.policies.model import Policy
from trunkline.queue.events import GateReport
from trunkline.queue.gates import ReviewerVerdict
from trunkline.queue.model import Gate

SHA = "c0ffee" + "0" * 34


@pytest.mark.parametrize(
    ("gate", "ok", "conclusion", "title"),
    [
        (Gate.SCOPE, True, CheckConclusion.SUCCESS, "Within the held locks"),
        (Gate.SCOPE, False, CheckConclusion.FAILURE, "Outside the held locks"),
        (Gate.REVIEW, True, CheckConclusion.SUCCESS, "Reviewer approved this commit"),
        (Gate.REVIEW, False, CheckConclusion.FAILURE, "No approving review of this commit"),
        (Gate.APPROVAL, True, CheckConclusion.SUCCESS, "Approvals satisfied"),
        (Gate.APPROVAL, False, CheckConclusion.FAILURE, "Approvals missing"),
    ],
)
def test_gate_check_run_content(
    gate: Gate, ok: bool, conclusion: CheckConclusion, title: str
) -> None:
    content = render_gate_check(GateReport(gate, ok, "because of reasons"), SHA)
    assert content.name == GATE_CHECK_NAMES[gate]
    assert (content.conclusion, content.title) == (conclusion, title)
    assert f"**{gate}** on `c0ffee0`: because of reasons" in content.summary


def test_gate_summary_is_clipped_to_githubs_limit() -> None:
    content = render_gate_check(GateReport(Gate.SCOPE, False, "x" * 100_000), SHA)
    assert len(content.summary) == SUMMARY_LIMIT


def member(pr: int, *oks: bool) -> GroupMember:
    gates = (Gate.SCOPE, Gate.REVIEW, Gate.APPROVAL)
    return GroupMember(
        pr, SHA, tuple(GateReport(g, ok, f"{g} detail") for g, ok in zip(gates, oks, strict=True))
    )


@pytest.mark.parametrize(
    ("members", "problem", "conclusion", "title"),
    [
        ((member(1, True, True, True),), None, CheckConclusion.SUCCESS, "All 1 pull request(s)"),
        (
            (member(1, True, True, True), member(2, True, False, True)),
            None,
            CheckConclusion.FAILURE,
            "1 of 2 pull request(s) fail a gate",
        ),
        ((), "no PRs", CheckConclusion.FAILURE, "Cannot check this merge group"),
        ((GroupMember(3, SHA, ()),), None, CheckConclusion.FAILURE, "1 of 1"),
    ],
)
def test_group_check_content(
    members: tuple[GroupMember, ...], problem: str | None, conclusion: CheckConclusion, title: str
) -> None:
    content = render_group_check(members, problem)
    assert content.name == GROUP_CHECK_NAME
    assert content.conclusion is conclusion
    assert content.title.startswith(title)
    for item in members:
        assert f"### #{item.pr} at `c0ffee0`" in content.summary
    if len(members) == 2:
        assert "- ❌ review: review detail" in content.summary


def review(state: ReviewState, body: str = "") -> Review:
    return Review(1, Actor("trunkline[bot]", is_bot=True), state, SHA, body)


@pytest.mark.parametrize(
    ("state", "body", "expected"),
    [
        (ReviewState.COMMENTED, verdict_body(ReviewerVerdict.APPROVE, "fine"), "approve"),
        (ReviewState.COMMENTED, verdict_body(ReviewerVerdict.ESCALATE, "hm"), "escalate"),
        (
            ReviewState.COMMENTED,
            verdict_body(ReviewerVerdict.REQUEST_CHANGES, "no"),
            "request_changes",
        ),
        (ReviewState.APPROVED, "", "approve"),
        (ReviewState.CHANGES_REQUESTED, "", "request_changes"),
        (ReviewState.APPROVED, "trunkline:verdict=escalate", "escalate"),  # the marker wins
        (ReviewState.COMMENTED, "just a comment", None),
        (ReviewState.COMMENTED, "trunkline:verdict=bogus", None),
    ],
)
def test_bot_review_verdicts(state: ReviewState, body: str, expected: str | None) -> None:
    verdict = verdict_of(review(state, body))
    assert (verdict.value if verdict else None) == expected


def test_verdict_summary_hides_the_marker() -> None:
    assert verdict_summary(verdict_body(ReviewerVerdict.APPROVE, "Looks right.")) == "Looks right."


def test_render_evaluation_lists_subsystems_risk_and_approvals() -> None:
    policy = Policy.model_validate(
        {
            "subsystems": {"api": {"paths": ["api/**"], "owners": ["alice"]}},
            "risk": {"high": {"paths": ["api/auth/**"]}},
            "approvals": {"high": {"required": 2, "from": ["alice", "bob"]}},
        }
    )
    text = render_evaluation(
        CompiledPolicy(policy).evaluate(Change(modified=("api/auth/a.py", "README.md")))
    )
    assert "api (owners: alice)" in text
    assert "default (owners: none)" in text
    assert "- risk: high" in text
    assert "path api/auth/a.py matches high risk pattern api/auth/**" in text
    assert "2 from the listed approvers (alice, bob); the requester may not count" in text
    low = render_evaluation(CompiledPolicy(policy).evaluate(Change(modified=("api/x.py",))))
    assert "- approvals: none required" in low
