"""Role products: strict validation and the effective verdict (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from trunkline.agents.contracts import (
    ExecutionReport,
    Finding,
    Plan,
    Review,
    Severity,
    Verdict,
    effective_verdict,
    tool_schema,
)

PLAN: dict[str, Any] = {
    "summary": "s",
    "steps": ["a"],
    "paths": ["src/**"],
    "acceptance_criteria": ["c"],
}


def review(verdict: Verdict, *severities: Severity) -> Review:
    findings = [Finding(severity=s, message="m") for s in severities]
    return Review(subject="abc", verdict=verdict, summary="s", findings=findings)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (review(Verdict.APPROVE), Verdict.APPROVE),
        (review(Verdict.APPROVE, Severity.NIT, Severity.MINOR), Verdict.APPROVE),
        (review(Verdict.APPROVE, Severity.MAJOR), Verdict.REQUEST_CHANGES),
        (review(Verdict.APPROVE, Severity.BLOCKER), Verdict.REQUEST_CHANGES),
        (review(Verdict.REQUEST_CHANGES), Verdict.APPROVE),
        (review(Verdict.REQUEST_CHANGES, Severity.NIT, Severity.NIT), Verdict.APPROVE),
        (review(Verdict.REQUEST_CHANGES, Severity.NIT, Severity.MINOR), Verdict.REQUEST_CHANGES),
        (review(Verdict.ESCALATE), Verdict.ESCALATE),
        (review(Verdict.ESCALATE, Severity.NIT), Verdict.ESCALATE),
    ],
)
def test_agents_effective_verdict(given: Review, expected: Verdict) -> None:
    assert effective_verdict(given) is expected


@pytest.mark.parametrize(
    "change",
    [
        {"risk_level": "low"},  # risk comes from the policy, never from the agent
        {"subsystems": ["api"]},
        {"paths": ["/etc/passwd"]},
        {"paths": ["src/../../x"]},
        {"paths": []},
        {"steps": []},
        {"summary": ""},
    ],
)
def test_agents_plan_rejects(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Plan.model_validate(PLAN | change)


def test_agents_plan_id_is_a_content_address() -> None:
    plan = Plan.model_validate(PLAN)
    assert plan.plan_id == Plan.model_validate(dict(PLAN)).plan_id
    assert plan.plan_id != Plan.model_validate(PLAN | {"summary": "t"}).plan_id
    assert plan.plan_id.startswith("plan-")


def test_agents_products_schemas_forbid_extra_keys() -> None:
    for model in (Plan, Review, ExecutionReport):
        assert tool_schema(model)["additionalProperties"] is False
    with pytest.raises(ValidationError):
        ExecutionReport.model_validate({"summary": "s", "merged": True})
    with pytest.raises(ValidationError):
        Review.model_validate({"subject": "a", "verdict": "lgtm", "summary": "s"})
    with pytest.raises(ValidationError):
        Finding.model_validate({"severity": "critical", "message": "m"})
