"""The pure half of escalation: the comment's key and text."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_agents_outcome import outcome

from trunkline.agents.escalation import (
    EscalationPolicy,
    EscalationReport,
    PushReport,
    comment_key,
    escalation_comment,
    failure_note,
    mention,
)
from trunkline.agents.outcome import EscalationReason, OutcomeKind
from trunkline.github.sticky import marker
from trunkline.policies.model import Escalation
from trunkline.workspace.errors import GitTransportError


def test_agents_comment_key_is_stable_per_outcome_and_valid() -> None:
    escalated = outcome(OutcomeKind.ESCALATED, EscalationReason.MAX_TURNS)
    assert comment_key(escalated) == f"agents.escalated.max_turns.{'a' * 12}"
    assert comment_key(escalated) == comment_key(replace(escalated, detail="other words"))
    moved = replace(escalated, head_sha="b" * 40)
    assert comment_key(moved) != comment_key(escalated)
    other = outcome(OutcomeKind.ESCALATED, EscalationReason.BUDGET_USD)
    assert comment_key(other) != comment_key(escalated)
    taken = replace(outcome(OutcomeKind.TAKEN_OVER, None), head_sha=None)
    assert comment_key(taken) == "agents.taken_over.none.nohead"
    for key in (comment_key(escalated), comment_key(taken)):
        marker(key)  # a valid sticky key


def test_agents_comment_key_of_a_report_with_an_occurrence_ignores_the_head() -> None:
    escalated = EscalationReport.of(outcome(OutcomeKind.ESCALATED, EscalationReason.MAX_TURNS))
    run1 = replace(escalated, occurrence="run1.v7")
    assert comment_key(run1) == "agents.escalated.max_turns.run1.v7"
    assert comment_key(replace(run1, head_sha=None)) == comment_key(run1)  # git not needed
    assert comment_key(replace(run1, occurrence="run2.v12")) != comment_key(run1)  # notifies
    marker(comment_key(run1))


def test_agents_escalation_comment_says_a_failed_push_is_tried_again() -> None:
    escalated = outcome(OutcomeKind.ESCALATED, EscalationReason.MAX_TURNS)
    error = GitTransportError("fetching acme/w failed: fatal: unreachable\nmore detail")
    failed = PushReport("trunkline/issue-1-x", None, failed=failure_note(error))
    text = escalation_comment(escalated, failed)
    assert (
        "could not be pushed to `trunkline/issue-1-x` yet (GitTransportError: fetching acme/w "
        "failed: fatal: unreachable); it is tried again" in text
    )
    assert "more detail" not in text


@pytest.mark.parametrize(
    ("push", "expected"),
    [
        (PushReport("trunkline/issue-1-x", "c" * 40), f"on `trunkline/issue-1-x` at `{'c' * 12}`"),
        (PushReport("trunkline/issue-1-x", None), "`trunkline/issue-1-x` was not pushed"),
        (PushReport("trunkline/issue-1-x", None, rejected=True), "was refused (the branch moved)"),
    ],
)
def test_agents_escalation_comment_says_where_the_work_is(push: PushReport, expected: str) -> None:
    body = escalation_comment(
        outcome(OutcomeKind.ESCALATED, EscalationReason.PROVIDER_ERROR), push, ("bob", "@org/t")
    )
    assert expected in body
    assert body.startswith("### trunkline: escalated (provider_error)")
    assert body.rstrip().endswith("cc @bob @org/t")


def test_agents_escalation_policy_from_the_policy_file() -> None:
    section = Escalation.model_validate({"label": "help", "notify": ["@alice", "@acme/core"]})
    assert EscalationPolicy.of(section) == EscalationPolicy("help", ("alice", "@acme/core"))
    assert [mention(p) for p in EscalationPolicy.of(section).notify] == ["@alice", "@acme/core"]
    assert "cc" not in escalation_comment(
        outcome(OutcomeKind.TAKEN_OVER, None), PushReport("b", None)
    )
