"""Who may approve a plan: table-driven over the approval rule of the plan's risk level."""

from __future__ import annotations

from typing import Any

import pytest

from trunkline.bot.plan_approval import plan_approval_refusal
from trunkline.policies.evaluation import Change, evaluate
from trunkline.policies.model import Policy

TEAMS = {"@acme/security": frozenset({"sam"})}


def _refusal(rule: dict[str, Any], login: str, requester: str = "rita") -> str | None:
    policy = Policy.model_validate(
        {
            "version": 1,
            "subsystems": {"auth": {"paths": ["src/auth/"], "owners": ["@olga"]}},
            "risk": {"high": {"paths": ["src/auth/**"]}},
            "approvals": {"high": {"required": 1, "plan_approval": True, **rule}},
        }
    )
    evaluation = evaluate(policy, Change(modified=("src/auth/login.py",)))
    return plan_approval_refusal(
        login, requester=requester, evaluation=evaluation, team_members=TEAMS
    )


@pytest.mark.parametrize(
    ("rule", "login", "allowed", "says"),
    [
        ({"from": ["@ada", "@acme/security"]}, "ada", True, ""),
        ({"from": ["@ada", "@acme/security"]}, "ADA", True, ""),
        ({"from": ["@ada", "@acme/security"]}, "sam", True, ""),  # through the team
        ({"from": ["@ada", "@acme/security"]}, "wes", False, "@acme/security, @ada"),
        ({"from": "owners"}, "olga", True, ""),
        ({"from": "owners"}, "wes", False, "an owner of the subsystems it touches: @olga"),
        ({"from": ["@ada"]}, "rita", False, "you asked for this work"),  # the requester
        ({"from": ["@ada", "@rita"]}, "rita", False, "does not let the requester"),
        ({"from": ["@ada", "@rita"], "allow_requester": True}, "rita", True, ""),
    ],
)
def test_plan_approval_rule(rule: dict[str, Any], login: str, allowed: bool, says: str) -> None:
    refusal = _refusal(rule, login)
    assert (refusal is None) is allowed
    if not allowed:
        assert refusal is not None
        assert says in refusal


def test_a_rule_that_names_nobody_lets_any_writer_approve() -> None:
    policy = Policy.model_validate(
        {
            "version": 1,
            "risk": {"high": {"paths": ["src/auth/**"]}},
            "approvals": {"high": {"required": 1, "plan_approval": True}},
        }
    )
    evaluation = evaluate(policy, Change(modified=("src/auth/login.py",)))
    assert (
        plan_approval_refusal("wes", requester="rita", evaluation=evaluation, team_members={})
        is None
    )
