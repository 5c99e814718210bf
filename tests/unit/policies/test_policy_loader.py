"""The loader: defaults, every error kind at its exact line:column, and fuzzing."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.policies.loader import PolicyError, load_policy, load_policy_bytes
from trunkline.policies.model import (
    MergeMethod,
    Permission,
    Policy,
    Priority,
    format_duration,
    parse_duration,
    policy_json_schema,
)

SKETCH = """\
version: 1
dispatch: {label: agent, min_permission: write, max_active: 4}
subsystems:
  api:  {paths: ["src/api/**", "openapi.yaml"], owners: ["alice", "@acme/api"], max_active: 1}
  docs: {paths: ["docs/**", "*.md"], owners: ["bob"], max_active: 3}
risk:
  high:   {paths: [".github/workflows/**", "**/migrations/**"], deleted_files: true,
           changed_lines_over: 800}
  medium: {paths: ["pyproject.toml"], changed_lines_over: 200}
approvals:
  high: {required: 1, from: owners, plan_approval: true}
queue: {base: main, required_checks: ["ci"], merge_method: merge, batch_size: 1,
        parallel_checks: 1, check_timeout: 60m}
agents:
  executor: {max_turns: 40}
  reviewer: {max_rounds: 2}
  budget: {usd: 5.0, tokens: 2000000, wall: 45m}
  commands: ["pytest -q"]
escalation: {label: needs-human, notify: ["alice"]}
"""


def _policy(text: str) -> Policy:
    loaded = load_policy(text)
    assert isinstance(loaded, Policy), loaded
    return loaded


def _well_handled(loaded: Policy | list[PolicyError]) -> bool:
    """A policy, or errors that did not come from the loader's last-resort catch-all."""
    if isinstance(loaded, Policy):
        return True
    return bool(loaded) and not any(
        error.message.startswith(("cannot read the policy:", "invalid policy:")) for error in loaded
    )


def _errors(text: str) -> list[tuple[int, int, str]]:
    loaded = load_policy(text, "p.yml")
    assert isinstance(loaded, list), f"expected errors, got a policy for {text!r}"
    assert loaded, "an invalid policy must come with at least one error"
    assert all(error.file == "p.yml" for error in loaded)
    return [(error.line, error.column, error.message) for error in loaded]


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file_is_the_default_policy(text: str) -> None:
    policy = _policy(text)
    assert policy == Policy()
    assert policy.version == 1
    assert policy.dispatch.label == "agent"
    assert policy.dispatch.min_permission is Permission.WRITE
    assert policy.dispatch.max_active == 4
    assert policy.subsystems == {}
    assert policy.default_subsystem.name == "default"
    assert policy.risk_levels == ["low", "medium", "high"]
    assert policy.approvals == {}
    queue = policy.queue
    assert (queue.batch_size, queue.parallel_checks, queue.flake_retries) == (1, 1, 0)
    assert queue.merge_method is MergeMethod.MERGE
    assert queue.default_priority is Priority.NORMAL
    assert queue.check_timeout == timedelta(minutes=60)
    assert queue.check_start_timeout == timedelta(minutes=10)
    assert queue.batch_wait == timedelta(0)
    assert policy.agents.network is False
    assert policy.agents.budget.wall == timedelta(minutes=45)
    assert policy.escalation.label == "needs-human"


def test_design_sketch_loads() -> None:
    policy = _policy(SKETCH)
    assert policy.subsystems["api"].owners == ["alice", "@acme/api"]
    assert policy.risk["high"].changed_lines_over == 800
    assert policy.approvals["high"].from_ == "owners"
    assert policy.approvals["high"].allow_requester is False
    assert policy.queue.required_checks == ["ci"]
    assert policy.agents.executor.max_turns == 40


def test_owners_are_normalized() -> None:
    policy = _policy("subsystems:\n  a: {paths: [x], owners: ['@alice', bob, '@org/team']}\n")
    assert policy.subsystems["a"].owners == ["alice", "bob", "@org/team"]


def test_anchors_and_aliases_are_allowed() -> None:
    text = (
        "subsystems:\n  a: {paths: [x], owners: &core [alice]}\n  b: {paths: [y], owners: *core}\n"
    )
    assert _policy(text).subsystems["b"].owners == ["alice"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90),
        ("60m", 3600),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("0s", 0),
    ],
)
def test_durations(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)
    assert parse_duration(format_duration(parse_duration(text))) == timedelta(seconds=expected)


ERROR_CASES = [
    pytest.param(
        "version: 1\ndispatch: {label: [}\n",
        [(2, 20, "YAML syntax error: expected the node content, but found '}'")],
        id="yaml-syntax",
    ),
    pytest.param(
        "version: 1\ndispatch:\n  lable: x\n",
        [(3, 3, "unknown key 'lable' in dispatch; did you mean 'label'?")],
        id="unknown-key",
    ),
    pytest.param(
        "version: 1\nqeue: {}\n",
        [(2, 1, "unknown key 'qeue'; did you mean 'queue'?")],
        id="unknown-top-level-key",
    ),
    pytest.param(
        "subsystems:\n  api:\n    paths: [a]\n    owner: [alice]\n",
        [(4, 5, "unknown key 'owner' in subsystems.api; did you mean 'owners'?")],
        id="unknown-key-in-subsystem",
    ),
    pytest.param(
        "version: 1\nqueue:\n  base: main\n  base: dev\n",
        [(4, 3, "duplicate key 'base' (first defined at line 3, column 3)")],
        id="duplicate-key",
    ),
    pytest.param(
        "subsystems:\n  a: {paths: [x]}\n  a: {paths: [y]}\n",
        [(3, 3, "duplicate key 'a' (first defined at line 2, column 3)")],
        id="duplicate-subsystem",
    ),
    pytest.param(
        "dispatch:\n  max_active: '4'\n",
        [(2, 15, "dispatch.max_active: Input should be a valid integer")],
        id="wrong-type-quoted-number",
    ),
    pytest.param(
        "agents:\n  network: 'no'\n",
        [(2, 12, "agents.network: Input should be a valid boolean")],
        id="wrong-type-bool",
    ),
    pytest.param(
        "subsystems:\n  api:\n    paths: src/**\n",
        [(3, 12, "subsystems.api.paths: Input should be a valid list")],
        id="wrong-type-list",
    ),
    pytest.param(
        "dispatch:\n  max_active: -1\n",
        [(2, 15, "dispatch.max_active: Input should be greater than or equal to 0")],
        id="negative-limit",
    ),
    pytest.param(
        "queue: {batch_size: 0}\n",
        [(1, 21, "queue.batch_size: Input should be greater than or equal to 1")],
        id="zero-batch",
    ),
    pytest.param(
        "agents:\n  budget: {usd: -1.5}\n",
        [(2, 17, "agents.budget.usd: Input should be greater than or equal to 0")],
        id="negative-budget",
    ),
    pytest.param(
        "subsystems:\n  api:\n    paths: ['ok/**', 'x[z-a]']\n",
        [(3, 22, "subsystems.api.paths[1]: bad path pattern 'x[z-a]'")],
        id="bad-pattern-range",
    ),
    pytest.param(
        "risk:\n  high:\n    paths: ['a\\']\n",
        [(3, 13, "risk.high.paths[0]: bad path pattern 'a\\\\'")],
        id="bad-pattern-trailing-backslash",
    ),
    pytest.param(
        "subsystems:\n  api: {paths: ['#comment']}\n",
        [(2, 17, "subsystems.api.paths[0]: path pattern '#comment' is empty or a comment")],
        id="comment-pattern",
    ),
    pytest.param(
        "subsystems:\n  api: {paths: []}\n",
        [(2, 16, "subsystems.api.paths: List should have at least 1 item")],
        id="no-patterns",
    ),
    pytest.param(
        "approvals:\n  critical: {required: 1}\nrisk:\n  hgh: {paths: [a]}\n",
        [
            (2, 3, "unknown risk level 'critical' (risk_levels are: low, medium, high)"),
            (4, 3, "unknown risk level 'hgh' (risk_levels are: low, medium, high)"),
        ],
        id="unknown-risk-level",
    ),
    pytest.param(
        "risk_levels: [low, high, low]\n",
        [(1, 26, "risk level 'low' is listed twice")],
        id="repeated-risk-level",
    ),
    pytest.param(
        "queue: {check_timeout: 60 minutes}\n",
        [(1, 24, "queue.check_timeout: bad duration '60 minutes'")],
        id="bad-duration",
    ),
    pytest.param(
        "queue:\n  check_start_timeout: 90\n",
        [(2, 24, "queue.check_start_timeout: a duration is a string")],
        id="duration-without-unit",
    ),
    pytest.param(
        "- a\n- b\n",
        [(1, 1, "a policy must be a mapping of keys such as `version: 1`, not a list")],
        id="top-level-list",
    ),
    pytest.param(
        "just text\n",
        [(1, 1, "a policy must be a mapping of keys such as `version: 1`, not a string")],
        id="top-level-scalar",
    ),
    pytest.param(
        "version: 2\n",
        [(1, 10, "unsupported policy version 2; this trunkline reads version 1")],
        id="version",
    ),
    pytest.param(
        "dispatch: {min_permission: owner}\n",
        [(1, 28, "dispatch.min_permission: Input should be 'read', 'triage', 'write'")],
        id="bad-enum",
    ),
    pytest.param(
        "approvals:\n  high: {from: 5}\n",
        [(2, 16, 'approvals.high.from: must be "owners" or a list of users and teams')],
        id="approvals-from-type",
    ),
    pytest.param(
        "approvals:\n  high: {from: [alice, 'not a user']}\n",
        [(2, 24, "approvals.high.from[1]: 'not a user' is neither a GitHub user")],
        id="approvals-from-bad-name",
    ),
    pytest.param(
        "approvals:\n  high: {from: [alice], required: 2}\n",
        [(2, 35, "approvals.high.required: 2 approvals required but only 1 approver(s)")],
        id="approvals-impossible",
    ),
    pytest.param(
        "subsystems:\n  api: {owners: [a]}\n",
        [(2, 3, "subsystems.api: missing required key 'paths'")],
        id="missing-key",
    ),
    pytest.param(
        "subsystems:\n  'a b': {paths: [x]}\n",
        [(2, 3, "subsystems.a b: bad name 'a b'")],
        id="bad-subsystem-name",
    ),
    pytest.param(
        "subsystems:\n  default: {paths: [x]}\n",
        [(2, 3, "subsystem name 'default' is taken by the default subsystem")],
        id="default-name-collision",
    ),
    pytest.param(
        "base: &b {label: x}\ndispatch:\n  <<: *b\n",
        [(1, 1, "unknown key 'base'"), (3, 3, "YAML merge keys (<<) are not supported")],
        id="merge-key",
    ),
    pytest.param(
        "dispatch: !custom {label: x}\n",
        [(1, 11, "unsupported YAML tag '!custom'")],
        id="custom-tag",
    ),
    pytest.param(
        "dispatch: {label: 2024-02-30}\n",
        [(1, 19, "cannot read this value: day is out of range for month")],
        id="unreadable-scalar",
    ),
    pytest.param(
        "version: 1\n---\nversion: 1\n",
        [(2, 1, "YAML syntax error: but found another document")],
        id="two-documents",
    ),
    pytest.param(
        "dispatch:\n  label: a\x00b\n",
        [(2, 11, "YAML: the character U+0000 is not allowed")],
        id="control-character",
    ),
    pytest.param(
        "subsystems:\n  a: &a {paths: [x], owners: *a}\n",
        [(2, 6, "an alias refers to a value that contains itself")],
        id="recursive-alias",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_errors_are_located(text: str, expected: list[tuple[int, int, str]]) -> None:
    found = _errors(text)
    assert [(line, column) for line, column, _ in found] == [
        (line, column) for line, column, _ in expected
    ]
    for (_, _, message), (_, _, start) in zip(found, expected, strict=True):
        assert message.startswith(start), message


def test_many_errors_are_reported_at_once_in_position_order() -> None:
    text = "queue:\n  batch_size: -1\n  base: [x]\ndispatch:\n  bogus: 1\nagents: {network: 3}\n"
    found = _errors(text)
    assert [(line, column) for line, column, _ in found] == [(2, 15), (3, 9), (5, 3), (6, 19)]


def test_error_formats_as_file_line_column() -> None:
    assert str(PolicyError("p.yml", 3, 7, "boom")) == "p.yml:3:7: boom"


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    found = _errors("\n".join(lines) + "\n")
    assert any("expands to more than" in message for _, _, message in found)


def test_too_many_aliases_are_refused() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * 500) + "]\n"
    found = _errors(text)
    assert found[0][2].startswith("YAML syntax error: more than 200 aliases")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    found = _errors("[" * 20000 + "]" * 20000)
    assert found[0][:2] == (1, 1)


def test_bytes_must_be_utf8() -> None:
    loaded = load_policy_bytes(b"version: 1\ndispatch: {label: \xff}\n", "p.yml")
    assert loaded == [PolicyError("p.yml", 2, 19, "the file is not valid UTF-8 text")]
    assert isinstance(load_policy_bytes(b"\xef\xbb\xbfversion: 1\n"), Policy)


def test_model_runs_cross_checks_outside_the_loader() -> None:
    with pytest.raises(ValueError, match="unknown risk level 'critical'"):
        Policy.model_validate({"approvals": {"critical": {}}})


def test_json_schema_accepts_the_examples_and_rejects_unknown_keys() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(yaml.safe_load(SKETCH))
    assert list(validator.iter_errors({"dispatch": {"lable": "x"}}))
    assert schema["$defs"]["Queue"]["properties"]["check_timeout"]["default"] == "60m"


VALID_LINES = SKETCH.splitlines(keepends=True)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200))
def test_loader_never_raises_on_random_text(text: str) -> None:
    loaded = load_policy(text)
    assert _well_handled(loaded), loaded


@settings(max_examples=1000, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(SKETCH)),
            st.integers(min_value=0, max_value=8),
            st.text(alphabet=" \n\t:-[]{},'\"&*!#|>?%@`aZ019.~", max_size=6),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_loader_never_raises_on_mutated_yaml(edits: list[tuple[int, int, str]]) -> None:
    text = SKETCH
    for position, cut, insert in edits:
        position = min(position, len(text))
        text = text[:position] + insert + text[position + cut :]
    loaded = load_policy(text)
    assert _well_handled(loaded), loaded
    if isinstance(loaded, list):
        lines = text.count("\n") + 2
        assert all(1 <= error.line <= lines and error.column >= 1 for error in loaded)


_KEYS = st.sampled_from(
    [
        "version", "dispatch", "subsystems", "api", "paths", "owners", "max_active", "risk",
        "high", "low", "approvals", "from", "required", "queue", "check_timeout", "agents",
        "budget", "usd", "risk_levels", "default_subsystem", "name", "escalation", "bogus",
    ]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=True),
    st.sampled_from(["owners", "60m", "src/**", "alice", "@a/b", "[z-a]", "", "high", "x y"]),
)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_KEYS, _DATA, max_size=5))
def test_loader_never_raises_on_random_structures(data: dict[str, object]) -> None:
    text = yaml.safe_dump(data, default_flow_style=False)
    loaded = load_policy(text)
    assert _well_handled(loaded), loaded
