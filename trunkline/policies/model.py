"""The policy file model, version 1: every section, type, limit and default.

Pure; performs no I/O. Every model forbids unknown keys (`extra="forbid"`) and is frozen.
Scalars are strict (a quoted "4" is not a number), except that enum choices and durations
are given as strings. An empty mapping is a valid policy: every field has a documented
default (see docs/policy.md). Cross-field rules (risk levels that exist, subsystem names
that do not collide, approver counts) live in `policy_problems`, which the model runs after
validation and which the loader runs itself to place each problem at its line and column.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

# The context key the loader sets so that it can report cross-field problems itself,
# each at its own position, instead of as one model-level error.
DEFER_CROSS_CHECKS = "trunkline.policies.defer_cross_checks"

_DURATION_PART = re.compile(r"(\d+)([smhd])")
_DURATION = re.compile(r"^(?:\d+[smhd])+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_DURATION_SECONDS = 366 * 86400


def parse_duration(value: object) -> timedelta:
    """A duration written as "90s", "60m", "2h", "1d" or "1h30m" (whole units, no spaces)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f'a duration is a string such as "90s", "60m", "2h" or "1h30m", not {value!r}'
        )
    text = value.strip()
    if not _DURATION.fullmatch(text):
        raise ValueError(
            f'bad duration {value!r}: write a number followed by s, m, h or d, e.g. "90s", '
            '"60m", "2h", "1h30m"'
        )
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds > _MAX_DURATION_SECONDS:
        raise ValueError(f"duration {value!r} is longer than the maximum of 366d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest policy-file spelling of `value` ("1h30m", "90s", "0s")."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _DURATION.pattern,
            "description": 'A duration: whole numbers with units s, m, h, d, e.g. "90s", "1h30m".',
        }
    ),
]


def _duration_field(default: str, description: str) -> Any:
    """A duration field whose default the JSON Schema shows as written ("60m")."""
    return Field(
        parse_duration(default), description=description, json_schema_extra={"default": default}
    )


def compile_pattern(text: str) -> GitIgnoreSpecPattern:
    """Compile one gitignore-style pattern; raises ValueError with a readable reason."""
    try:
        with warnings.catch_warnings():  # `re` warns about "[[" (a possible nested set)
            warnings.simplefilter("ignore")
            pattern = GitIgnoreSpecPattern(text)
    except Exception as error:  # pathspec raises several kinds for malformed patterns
        raise ValueError(f"bad path pattern {text!r}: {error}") from None
    if pattern.include is None or pattern.regex is None:
        if not text.strip() or text.lstrip().startswith("#"):
            raise ValueError(f"path pattern {text!r} is empty or a comment and matches nothing")
        raise ValueError(f"bad path pattern {text!r}: it can match no path (check its brackets)")
    return pattern


def _check_pattern(text: str) -> str:
    compile_pattern(text)
    return text


_USER = re.compile(r"^@?([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))$")
_TEAM = re.compile(r"^@([A-Za-z0-9][A-Za-z0-9-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def normalize_principal(text: str) -> str:
    """A user ("alice" or "@alice" -> "alice") or a team ("@org/team", kept as written)."""
    if _TEAM.fullmatch(text):
        return text
    user = _USER.fullmatch(text)
    if user:
        return user.group(1)
    raise ValueError(
        f'{text!r} is neither a GitHub user ("alice" or "@alice") nor a team ("@org/team")'
    )


def _check_name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise ValueError(
            f"bad name {text!r}: use letters, digits, '.', '_' and '-', starting with a "
            "letter or digit"
        )
    return text


PathPattern = Annotated[
    str,
    Field(strict=True, description="A gitignore-style path pattern (pathspec semantics)."),
    AfterValidator(_check_pattern),
]
Principal = Annotated[
    str,
    Field(strict=True, description='A GitHub user ("alice" or "@alice") or team ("@org/team").'),
    AfterValidator(normalize_principal),
]
Name = Annotated[str, Field(strict=True), AfterValidator(_check_name)]
Text = Annotated[str, Field(strict=True, min_length=1)]
Count = Annotated[int, Field(strict=True, ge=0)]
Positive = Annotated[int, Field(strict=True, ge=1)]
Flag = Annotated[bool, Field(strict=True)]


class Permission(StrEnum):
    """GitHub repository permission levels, weakest first."""

    READ = "read"
    TRIAGE = "triage"
    WRITE = "write"
    MAINTAIN = "maintain"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Permission).index(self)


class MergeMethod(StrEnum):
    MERGE = "merge"
    REBASE = "rebase"
    SQUASH = "squash"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, validate_default=True
    )


class Dispatch(_Section):
    """Which issues trunkline picks up, from whom, and how many at once."""

    label: Text = Field("agent", description="The label that hands an issue to trunkline.")
    min_permission: Permission = Field(
        Permission.WRITE, description="Weakest permission of a person whose label counts."
    )
    max_active: Count = Field(
        4, description="Work items in progress at once in the repository (0 pauses dispatch)."
    )


class Subsystem(_Section):
    """A named set of paths with owners and a lock capacity."""

    paths: list[PathPattern] = Field(min_length=1, description="Gitignore-style patterns.")
    owners: list[Principal] = Field(
        default_factory=list, description="Owners; empty means: CODEOWNERS, if any."
    )
    max_active: Count = Field(
        1, description="Work items that may hold this subsystem at once (0 freezes it)."
    )


class DefaultSubsystem(_Section):
    """The subsystem of every path that matches no named subsystem."""

    name: Name = Field("default", description="Its name; must differ from named subsystems.")
    owners: list[Principal] = Field(
        default_factory=list, description="Owners; empty means: CODEOWNERS, if any."
    )
    max_active: Count = Field(1, description="Work items that may hold it at once.")


class RiskRule(_Section):
    """Conditions that put a change at this risk level; any one of them suffices."""

    paths: list[PathPattern] = Field(
        default_factory=list, description="A touched path matching one of these."
    )
    deleted_files: Flag = Field(False, description="The change deletes at least one file.")
    changed_lines_over: Count | None = Field(
        None, description="Added plus removed lines exceed this number."
    )
    new_dependencies: Flag = Field(False, description="The change adds a dependency.")


class Approval(_Section):
    """Human approvals a risk level requires; approvals bind to the head SHA."""

    required: Count = Field(1, description="Number of distinct approving humans.")
    from_: Literal["owners"] | list[Principal] = Field(
        "owners",
        alias="from",
        description='"owners" (of the touched subsystems) or a list of users and teams.',
    )
    plan_approval: Flag = Field(False, description="A human must also approve the plan.")
    allow_requester: Flag = Field(
        False, description="The person who requested the work may count as an approver."
    )


class RequiredCheck(_Section):
    """A required check pinned to the App that must report it."""

    name: Text = Field(description="Check run name or commit status context.")
    app: Text = Field(description="Slug of the only App whose check run counts.")


class Queue(_Section):
    """The merge queue; throughput features are off by default."""

    base: Text = Field("main", description="The branch the queue fast-forwards.")
    required_checks: list[Text | RequiredCheck] = Field(
        default_factory=list,
        description=(
            "Checks that must pass on the tested commit: a check run name or commit status "
            "context, or {name, app} to count only that App's check run."
        ),
    )
    merge_method: MergeMethod = Field(MergeMethod.MERGE, description="How a PR is integrated.")
    batch_size: Positive = Field(1, description="Entries tested together (1 = no batching).")
    batch_wait: Duration = _duration_field("0s", "How long a partial batch waits for more entries.")
    parallel_checks: Positive = Field(1, description="Speculative check runs at once.")
    flake_retries: Count = Field(0, description="Re-runs of a failed check before ejection.")
    retry_on_timeout: Count = Field(
        0, description="Re-runs after a check timed out, never started or was cancelled."
    )
    pretest: Flag = Field(
        False, description="Test new PRs in isolation first; stack only those that passed."
    )
    speculation_floor: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.0, description="With pretest: stack new PRs directly while P(stack passes) >= this."
    )
    cleared_batch_size: Count = Field(
        0, description="Largest batch of pretested PRs stacked together (0: batch_size)."
    )
    merge_isolated: Flag = Field(
        False, description="Fast-forward a passed isolation build on the base (empty stack)."
    )
    isolation_slots: Count = Field(
        0, description="Isolation builds at once beside the stack (0: they share parallel_checks)."
    )
    parallel_bisection: Flag = Field(
        False, description="Test a failed build's prefixes and a rerun at once (not with pretest)."
    )
    bisection_holds_stack: Flag = Field(
        True, description="With parallel_bisection: stack nothing new until a round settles."
    )
    check_timeout: Duration = _duration_field("60m", "Longest wait for required checks to finish.")
    check_start_timeout: Duration = _duration_field(
        "10m", "Longest wait for a required check to start."
    )
    default_priority: Priority = Field(Priority.NORMAL, description="Priority of new entries.")


_DEFAULT_MODEL = "claude-sonnet-4-5"


class PlannerAgent(_Section):
    model: Text = Field(_DEFAULT_MODEL, description="Model of the planner.")


class ExecutorAgent(_Section):
    model: Text = Field(_DEFAULT_MODEL, description="Model of the executor.")
    max_turns: Positive = Field(40, description="Tool-use turns before the executor stops.")


class ReviewerAgent(_Section):
    model: Text = Field(_DEFAULT_MODEL, description="Model of the reviewer.")
    max_rounds: Positive = Field(2, description="Review rounds before escalating.")


class Budget(_Section):
    """Caps per work item; a cap is never exceeded."""

    usd: float = Field(5.0, strict=True, ge=0, allow_inf_nan=False, description="US dollars.")
    tokens: Count = Field(2_000_000, description="Input plus output tokens.")
    wall: Duration = _duration_field("45m", "Wall-clock time.")


class Agents(_Section):
    planner: PlannerAgent = Field(default_factory=PlannerAgent)
    executor: ExecutorAgent = Field(default_factory=ExecutorAgent)
    reviewer: ReviewerAgent = Field(default_factory=ReviewerAgent)
    budget: Budget = Field(default_factory=Budget)
    commands: list[Text] = Field(
        default_factory=list,
        description="The only commands the executor may run (inside the sandbox).",
    )
    network: Flag = Field(False, description="Whether sandboxed commands get network access.")


class Escalation(_Section):
    label: Text = Field("needs-human", description="Label put on items that need a human.")
    notify: list[Principal] = Field(
        default_factory=list, description="Users and teams mentioned on escalation."
    )


DEFAULT_RISK_LEVELS = ("low", "medium", "high")


class Policy(_Section):
    """A repository's `.github/trunkline.yml`, version 1."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
        title="trunkline policy (version 1)",
    )

    version: Literal[1] = Field(1, description="The policy format version; must be 1.")
    dispatch: Dispatch = Field(default_factory=Dispatch)
    subsystems: dict[Name, Subsystem] = Field(default_factory=dict)
    default_subsystem: DefaultSubsystem = Field(default_factory=DefaultSubsystem)
    risk_levels: list[Name] = Field(
        default_factory=lambda: list(DEFAULT_RISK_LEVELS),
        min_length=1,
        description="Risk level names, lowest first; the first is the level of a change "
        "that matches no rule.",
    )
    risk: dict[Name, RiskRule] = Field(
        default_factory=dict, description="Rules per risk level (a name from risk_levels)."
    )
    approvals: dict[Name, Approval] = Field(
        default_factory=dict, description="Human approvals per risk level; none if absent."
    )
    queue: Queue = Field(default_factory=Queue)
    agents: Agents = Field(default_factory=Agents)
    escalation: Escalation = Field(default_factory=Escalation)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Policy:
        if isinstance(info.context, dict) and info.context.get(DEFER_CROSS_CHECKS):
            return self
        problems = list(policy_problems(self))
        if problems:
            raise ValueError("; ".join(f"{p.where}: {p.message}" for p in problems))
        return self

    def rank(self, level: str) -> int:
        """The position of a risk level, lowest first."""
        return self.risk_levels.index(level)


@dataclass(frozen=True)
class Problem:
    """A cross-field problem: `loc` is the path of keys to it; `at_key` points at the key."""

    loc: tuple[str | int, ...]
    message: str
    at_key: bool = False

    @property
    def where(self) -> str:
        return ".".join(str(part) for part in self.loc) or "policy"


def policy_problems(policy: Policy) -> Iterator[Problem]:
    """Rules that span fields; each problem is located by its key path."""
    levels = policy.risk_levels
    seen: set[str] = set()
    for index, level in enumerate(levels):
        if level in seen:
            yield Problem(("risk_levels", index), f"risk level {level!r} is listed twice")
        seen.add(level)
    known = ", ".join(levels)
    for section in ("risk", "approvals"):
        for level in getattr(policy, section):
            if level not in seen:
                yield Problem(
                    (section, level),
                    f"unknown risk level {level!r} (risk_levels are: {known})",
                    at_key=True,
                )
    if policy.default_subsystem.name in policy.subsystems:
        yield Problem(
            ("subsystems", policy.default_subsystem.name),
            f"subsystem name {policy.default_subsystem.name!r} is taken by the default "
            "subsystem; rename one of them (default_subsystem.name)",
            at_key=True,
        )
    for level, approval in policy.approvals.items():
        named = approval.from_
        if isinstance(named, list) and approval.required > len(set(named)):
            yield Problem(
                ("approvals", level, "required"),
                f"approvals.{level}.required: {approval.required} approvals required but "
                f"only {len(set(named))} approver(s) listed in 'from'",
            )


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, for editors and validators."""
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://trunkline.dev/schemas/policy-v1.json"
    return schema
