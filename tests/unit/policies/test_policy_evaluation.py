"""Evaluation: subsystems, default subsystem, owners with CODEOWNERS fallback, risk, approvals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.policies.codeowners import parse_codeowners
from trunkline.policies.evaluation import (
    Change,
    CompiledPolicy,
    Evaluation,
    OwnersSource,
    evaluate,
)
from trunkline.policies.loader import load_policy
from trunkline.policies.model import Policy

POLICY_TEXT = """\
version: 1
subsystems:
  api: {paths: ["src/api/**", "openapi.yaml"], owners: ["alice", "@acme/api"]}
  docs: {paths: ["docs/**", "*.md"], owners: ["bob"]}
  tests: {paths: ["tests/"]}
  generated: {paths: ["src/**", "!src/api/**", "!src/web/**"]}
default_subsystem: {name: rest}
risk:
  high:
    paths: [".github/workflows/**", "**/migrations/**"]
    deleted_files: true
    changed_lines_over: 800
  medium:
    paths: ["pyproject.toml", "src/api/**"]
    changed_lines_over: 200
    new_dependencies: true
approvals:
  high: {required: 2, from: owners, plan_approval: true}
  medium: {required: 1, from: ["carol", "@acme/leads"], allow_requester: true}
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    loaded = load_policy(POLICY_TEXT)
    assert isinstance(loaded, Policy), loaded
    return loaded


def _subsystems(policy: Policy, *paths: str) -> dict[str, tuple[str, ...]]:
    result = evaluate(policy, Change(modified=paths))
    return {route.path: route.subsystems for route in result.paths}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/api/users.py", ("api",)),
        ("openapi.yaml", ("api",)),
        ("docs/intro.md", ("docs",)),
        ("README.md", ("docs",)),
        ("src/api/README.md", ("api", "docs")),  # several subsystems at once
        ("tests/unit/test_x.py", ("tests",)),
        ("pkg/tests/test_y.py", ("tests",)),  # "tests/" matches at any depth
        ("src/core/x.py", ("generated",)),
        ("src/web/app.ts", ("rest",)),  # negated in "generated", matches nothing else
        ("Makefile", ("rest",)),
        ("SRC/API/x.py", ("rest",)),  # case-sensitive
    ],
)
def test_subsystems_of_a_path(policy: Policy, path: str, expected: tuple[str, ...]) -> None:
    assert _subsystems(policy, path)[path] == expected


def test_touched_paths_include_every_kind_of_change(policy: Policy) -> None:
    change = Change(
        added=("docs/new.md",),
        modified=("src/api/a.py",),
        deleted=("old.txt",),
        renamed=(("tests/a.py", "src/core/a.py"),),
    )
    result = evaluate(policy, change)
    assert [route.path for route in result.paths] == sorted(
        ["docs/new.md", "src/api/a.py", "old.txt", "tests/a.py", "src/core/a.py"]
    )
    assert result.subsystem_names == ("api", "docs", "generated", "rest", "tests")
    rest = next(touch for touch in result.subsystems if touch.name == "rest")
    assert rest.is_default
    assert rest.paths == ("old.txt",)


def test_owners_come_from_the_policy(policy: Policy) -> None:
    result = evaluate(policy, Change(modified=("src/api/a.py", "README.md")))
    assert result.owners == ("@acme/api", "alice", "bob")
    assert {t.name: t.owners_source for t in result.subsystems} == {
        "api": OwnersSource.POLICY,
        "docs": OwnersSource.POLICY,
    }


CODEOWNERS = """\
# comments and blank lines are ignored

*            @everyone
tests/       @qa-lead @acme/qa   # trailing comment
tests/perf/
/src/core/   dave@example.com
!tests/skip  @ignored
[z-a]        @bad-pattern-skipped
"""


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("tests/unit/a.py", ("@acme/qa", "qa-lead")),
        ("tests/perf/bench.py", ()),  # a later line without owners un-assigns
        ("Makefile", ("everyone",)),
        ("src/core/a.py", ("dave@example.com",)),
        ("tests/skip", ("@acme/qa", "qa-lead")),  # negation is not CODEOWNERS syntax
    ],
)
def test_codeowners_last_matching_line_wins(path: str, owners: tuple[str, ...]) -> None:
    assert tuple(sorted(parse_codeowners(CODEOWNERS).owners_of(path))) == owners


def test_codeowners_fallback_only_for_subsystems_without_owners(policy: Policy) -> None:
    codeowners = parse_codeowners(CODEOWNERS)
    change = Change(modified=("tests/unit/a.py", "tests/perf/p.py", "src/api/x.py", "Makefile"))
    result = evaluate(policy, change, codeowners)
    by_name = {touch.name: touch for touch in result.subsystems}
    assert by_name["tests"].owners == ("@acme/qa", "qa-lead")
    assert by_name["tests"].owners_source is OwnersSource.CODEOWNERS
    assert by_name["api"].owners == ("@acme/api", "alice")  # the policy wins over CODEOWNERS
    assert by_name["rest"].owners == ("everyone",)
    assert result.owners == ("@acme/api", "@acme/qa", "alice", "everyone", "qa-lead")


def test_without_codeowners_an_ownerless_subsystem_has_no_owners(policy: Policy) -> None:
    result = evaluate(policy, Change(modified=("tests/a.py",)))
    assert result.subsystems[0].owners == ()
    assert result.subsystems[0].owners_source is OwnersSource.NONE


def test_codeowners_parser_never_raises_on_garbage() -> None:
    codeowners = parse_codeowners("\\\n[\n@only-owner\n**/ @ok\n\x00 @x\n")
    assert codeowners.owners_of("a/b") == ("ok",)


@pytest.mark.parametrize(
    ("change", "risk", "reasons"),
    [
        (Change(modified=("src/core/a.py",)), "low", []),
        (
            Change(modified=("pyproject.toml",)),
            "medium",
            ["path pyproject.toml matches medium risk pattern pyproject.toml"],
        ),
        (
            Change(modified=("src/api/a.py", ".github/workflows/ci.yml"), lines_changed=900),
            "high",
            [
                "path .github/workflows/ci.yml matches high risk pattern .github/workflows/**",
                "900 changed lines exceed the high risk limit of 800",
                "path src/api/a.py matches medium risk pattern src/api/**",
                "900 changed lines exceed the medium risk limit of 200",
            ],
        ),
        (
            Change(deleted=("b.txt", "a.txt")),
            "high",
            ["file a.txt is deleted (high risk)", "file b.txt is deleted (high risk)"],
        ),
        (
            Change(renamed=(("a.txt", "b.txt"),)),  # a rename is not a deletion
            "low",
            [],
        ),
        (
            Change(lines_changed=200),  # "over" means strictly more
            "low",
            [],
        ),
        (
            Change(
                modified=("pyproject.toml",),
                dependency_files=("pyproject.toml",),
                new_dependencies=True,
            ),
            "medium",
            [
                "path pyproject.toml matches medium risk pattern pyproject.toml",
                "new dependencies in pyproject.toml (medium risk)",
            ],
        ),
        (
            Change(added=("app/db/migrations/0002.py",)),
            "high",
            ["path app/db/migrations/0002.py matches high risk pattern **/migrations/**"],
        ),
    ],
)
def test_risk_is_the_highest_matching_level_with_every_reason(
    policy: Policy, change: Change, risk: str, reasons: list[str]
) -> None:
    result = evaluate(policy, change)
    assert result.risk == risk
    assert [reason.message for reason in result.reasons] == reasons
    assert all(reason.level in policy.risk_levels for reason in result.reasons)


def test_custom_level_order_decides_precedence() -> None:
    loaded = load_policy(
        "risk_levels: [calm, spicy, critical]\n"
        "risk:\n  critical: {paths: [a]}\n  spicy: {paths: ['*']}\n"
    )
    assert isinstance(loaded, Policy)
    assert evaluate(loaded, Change(modified=("b",))).risk == "spicy"
    assert evaluate(loaded, Change(modified=("a",))).risk == "critical"
    assert evaluate(loaded, Change()).risk == "calm"


def test_approvals_from_owners(policy: Policy) -> None:
    result = evaluate(policy, Change(modified=(".github/workflows/ci.yml", "src/api/a.py")))
    approvals = result.approvals
    assert (approvals.level, approvals.required, approvals.from_owners) == ("high", 2, True)
    assert approvals.approvers == ("@acme/api", "alice")
    assert approvals.plan_approval is True
    assert approvals.allow_requester is False


def test_approvals_from_named_list(policy: Policy) -> None:
    approvals = evaluate(policy, Change(modified=("pyproject.toml",))).approvals
    assert (approvals.required, approvals.from_owners) == (1, False)
    assert approvals.approvers == ("@acme/leads", "carol")
    assert approvals.allow_requester is True


def test_levels_without_approvals_need_none(policy: Policy) -> None:
    approvals = evaluate(policy, Change(modified=("src/core/x.py",))).approvals
    assert (approvals.level, approvals.required, approvals.approvers) == ("low", 0, ())


def test_empty_policy_puts_everything_in_the_default_subsystem() -> None:
    result = evaluate(Policy(), Change(modified=("a", "b/c")))
    assert result.subsystem_names == ("default",)
    assert result.risk == "low"
    assert result.approvals.required == 0


_PATHS = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.lists(
            st.sampled_from(["src", "api", "docs", "tests", "a.md", "migrations", "x.py", ""]),
            max_size=5,
        ).map("/".join),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(
    modified=_PATHS,
    deleted=_PATHS,
    renamed=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=3),
    lines=st.integers(min_value=-10, max_value=10_000),
    deps=st.booleans(),
)
def test_evaluation_never_raises_is_deterministic_and_index_equals_naive(
    policy: Policy,
    modified: list[str],
    deleted: list[str],
    renamed: list[tuple[str, str]],
    lines: int,
    deps: bool,
) -> None:
    change = Change(
        modified=tuple(modified),
        deleted=tuple(deleted),
        renamed=tuple(renamed),
        lines_changed=lines,
        new_dependencies=deps,
    )
    codeowners = parse_codeowners(CODEOWNERS)
    first = CompiledPolicy(policy).evaluate(change, codeowners)
    again = CompiledPolicy(policy).evaluate(
        Change(
            modified=tuple(reversed(modified)),
            deleted=tuple(deleted),
            renamed=tuple(renamed),
            lines_changed=lines,
            new_dependencies=deps,
        ),
        codeowners,
    )
    naive = CompiledPolicy(policy, indexed=False).evaluate(change, codeowners)
    assert isinstance(first, Evaluation)
    assert first == again == naive
    assert first.risk in policy.risk_levels
    assert all(route.subsystems for route in first.paths)
