"""A plan's write scope and the subsystems it locks (`trunkline.policies.plan_scope`):
every file the scope lets the executor write belongs only to subsystems the plan locks."""

from __future__ import annotations

import pytest

from trunkline.agents.tools import WriteScope
from trunkline.pipeline.agent_performers import risk_of
from trunkline.policies.evaluation import Change, evaluate
from trunkline.policies.loader import load_policy
from trunkline.policies.model import Policy
from trunkline.policies.plan_scope import plan_subsystems


def policy_of(text: str) -> Policy:
    policy = load_policy(text)
    assert isinstance(policy, Policy)
    return policy


DEMO = policy_of(
    """
version: 1
subsystems:
  calc: {paths: ["calc/"], owners: [maya]}
  text: {paths: ["text/"], owners: [maya]}
"""
)
ANCHORED = policy_of(
    """
version: 1
subsystems:
  api: {paths: ["/api/**"]}
  web: {paths: ["web/static/", "!web/static/vendor/"]}
  docs: {paths: ["docs/**", "/README.md"]}
  sql: {paths: ["db/*/migrations/"]}
"""
)

SAMPLE_PATHS = (
    "calc",
    "calc/arith.py",
    "calc/deep/x.py",
    "calc/text/x.py",
    "text/a.md",
    "arith.py",
    "README.md",
    "api/v1/h.py",
    "api.py",
    "web/static/app.js",
    "web/static/vendor/lib.js",
    "web/index.py",
    "docs/guide.md",
    "db/main/migrations/1.sql",
    "db/main/schema.sql",
    "src/calc/y.py",
)


@pytest.mark.parametrize(
    ("policy", "paths", "expected"),
    [
        (DEMO, ["calc/arith.py"], ("calc",)),
        (DEMO, ["calc/arith.py", "text/a.md"], ("calc", "text")),
        (DEMO, ["calc"], ("default",)),  # one file named calc: it may not write calc/*
        # a directory: `text/` matches at any depth, so calc/text/x.py is text's too
        (DEMO, ["calc/"], ("calc", "text")),
        (DEMO, ["calc/**"], ("calc", "text")),
        (DEMO, ["calc/*.py"], ("calc", "text")),
        (DEMO, ["*.py"], ("calc", "default", "text")),
        (DEMO, ["**/*.py"], ("calc", "default", "text")),
        (ANCHORED, ["api/"], ("api",)),  # anchored patterns elsewhere cannot reach it
        (ANCHORED, ["api/v1/h.py"], ("api",)),
        (ANCHORED, ["web/static/"], ("default", "web")),  # web has a negation
        (ANCHORED, ["db/main/"], ("default", "sql")),  # sql reaches in, covers not all
        (ANCHORED, ["src/"], ("default",)),
        (ANCHORED, ["README.md", "!docs/"], ("docs",)),
    ],
)
def test_plan_locks(policy: Policy, paths: list[str], expected: tuple[str, ...]) -> None:
    assert plan_subsystems(policy, paths) == expected
    assert risk_of(policy, paths).subsystems == expected


@pytest.mark.parametrize("policy", [DEMO, ANCHORED])
@pytest.mark.parametrize(
    "paths",
    [
        ["calc"],
        ["calc/"],
        ["calc/arith.py"],
        ["*.py"],
        ["**/*.py"],
        ["**/arith.py"],
        ["api/"],
        ["api/**", "!api/v1/"],
        ["web/"],
        ["db/*/migrations/"],
        ["src/", "README.md"],
    ],
)
def test_every_writable_file_is_within_the_locks(policy: Policy, paths: list[str]) -> None:
    locked = set(plan_subsystems(policy, paths))
    scope = WriteScope(paths)
    for path in SAMPLE_PATHS:
        if scope.allows(path):
            owners = evaluate(policy, Change(modified=(path,))).subsystem_names
            assert set(owners) <= locked, (path, owners, locked)


@pytest.mark.parametrize(
    ("paths", "path", "allowed"),
    [
        (["calc"], "calc", True),
        (["calc"], "calc/arith.py", False),
        (["calc/"], "calc/arith.py", True),
        (["calc/"], "src/calc/arith.py", False),  # anchored at the root
        (["arith.py"], "calc/arith.py", False),  # a file is one file
        (["*.py"], "arith.py", True),
        (["*.py"], "calc/arith.py", False),
        (["**/*.py"], "calc/arith.py", True),
        (["calc/", "!calc/gen/"], "calc/gen/x.py", False),
    ],
)
def test_write_scope(paths: list[str], path: str, allowed: bool) -> None:
    assert WriteScope(paths).allows(path) is allowed


def test_a_file_path_that_is_a_directory_is_explained() -> None:
    refusal = WriteScope(["calc"]).refusal("calc/arith.py")
    assert refusal is not None
    assert "a directory is declared as 'calc/'" in refusal
