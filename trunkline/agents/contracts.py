"""The typed products of the three agent roles, validated at the trust boundary.

Pure; performs no I/O. Every product is a pydantic model with `extra="forbid"`: the model
submits it through a tool whose `input_schema` is the model's JSON Schema, and anything
that does not validate is rejected (one repair turn, then the step fails). Subsystems and
risk level are deliberately absent from `Plan`: the policy engine decides them from the
declared paths, never the agent.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8000)]
RepoPath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=400)]


class _Product(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_relative(path: str) -> str:
    if path.startswith("/") or "\\" in path:
        raise ValueError(f"{path!r}: paths are relative to the repository root, with '/'")
    if ".." in path.split("/"):
        raise ValueError(f"{path!r}: '..' is not allowed in a path")
    return path


class Plan(_Product):
    """What the planner intends to do. `paths`: a path without wildcards or a trailing `/` is
    exactly that file; anything else is a gitignore pattern anchored at the repository root
    (`calc/` a directory, `**/*.py` every Python file; `trunkline.policies.plan_scope`)."""

    summary: LongText
    steps: list[ShortText] = Field(min_length=1, max_length=50)
    paths: list[RepoPath] = Field(
        min_length=1,
        max_length=100,
        description=(
            "Files it will touch (exact paths), or root-anchored gitignore patterns: "
            "'dir/' for a directory, '**/*.py' for Python files anywhere."
        ),
    )
    acceptance_criteria: list[ShortText] = Field(min_length=1, max_length=30)
    tests_to_run: list[ShortText] = Field(default_factory=list, max_length=20)
    risk_notes: list[ShortText] = Field(default_factory=list, max_length=20)

    @field_validator("paths")
    @classmethod
    def _relative_paths(cls, paths: list[str]) -> list[str]:
        return [_check_relative(p) for p in paths]

    @property
    def plan_id(self) -> str:
        """A content address: the reviewer names the plan it read by this id."""
        return plan_id_of(self)


def plan_id_of(plan: Plan) -> str:
    body = json.dumps(plan.model_dump(mode="json"), sort_keys=True)
    return "plan-" + hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


class Verdict(StrEnum):
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    ESCALATE = "escalate"


class Severity(StrEnum):
    BLOCKER = "blocker"
    MAJOR = "major"
    MINOR = "minor"
    NIT = "nit"


class Finding(_Product):
    path: RepoPath | None = Field(default=None, description="File the finding is about.")
    line: int | None = Field(default=None, ge=1)
    severity: Severity
    message: ShortText


class Review(_Product):
    """A reviewer's verdict on exactly one subject: a commit SHA or a plan id."""

    subject: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    verdict: Verdict
    summary: LongText
    findings: list[Finding] = Field(default_factory=list, max_length=100)


def effective_verdict(review: Review) -> Verdict:
    """The verdict that counts: nits never block.

    `request_changes` whose findings are all nits (or none) counts as `approve`; an
    `approve` that lists a blocker or major finding counts as `request_changes`;
    `escalate` is always honoured.
    """
    if review.verdict is Verdict.ESCALATE:
        return Verdict.ESCALATE
    blocking = [f for f in review.findings if f.severity in (Severity.BLOCKER, Severity.MAJOR)]
    if review.verdict is Verdict.APPROVE:
        return Verdict.REQUEST_CHANGES if blocking else Verdict.APPROVE
    non_nits = [f for f in review.findings if f.severity is not Severity.NIT]
    return Verdict.REQUEST_CHANGES if non_nits else Verdict.APPROVE


class CommandRun(_Product):
    command: ShortText
    exit_code: int


class ExecutionReport(_Product):
    summary: LongText
    files_changed: list[RepoPath] = Field(default_factory=list, max_length=500)
    commands_run: list[CommandRun] = Field(default_factory=list, max_length=200)
    open_questions: list[ShortText] = Field(default_factory=list, max_length=30)

    @field_validator("files_changed")
    @classmethod
    def _relative_paths(cls, paths: list[str]) -> list[str]:
        return [_check_relative(p) for p in paths]


def tool_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of `model`, as a tool's `input_schema`."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema
