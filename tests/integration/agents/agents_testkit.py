"""Shared pieces of the agent integration tests: a real git repository with a worktree."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from trunkline.agents.budget import BudgetLimits, ModelPrice
from trunkline.agents.work_item_runner import AgentRunConfig
from trunkline.agents.worktree_git import Author

MODEL = "claude-test"
PRICES = {MODEL: ModelPrice(input=Decimal(3), output=Decimal(15))}
PYTEST = f"{sys.executable} -m pytest -q -p no:cacheprovider"
SANDBOX_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

CALC_BUGGY = "def add(a, b):\n    return a - b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from src.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
TEST_CALC_MORE = TEST_CALC + "\n\ndef test_add_negative():\n    assert add(-2, -3) == -5\n"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class Repo:
    origin: Path
    worktree: Path
    base_sha: str
    outside: Path  # a directory next to the worktree that must never be written


def make_repo(tmp: Path) -> Repo:
    """A small repository with a failing test, and a work-item worktree on its own branch."""
    origin = tmp / "origin"
    (origin / "src").mkdir(parents=True)
    (origin / "tests").mkdir()
    (origin / "src" / "__init__.py").write_text("")
    (origin / "src" / "calc.py").write_text(CALC_BUGGY)
    (origin / "tests" / "test_calc.py").write_text(TEST_CALC)
    (origin / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    (origin / "README.md").write_text("# calc\n")
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "initial")
    base = git(origin, "rev-parse", "HEAD")
    worktree = tmp / "worktrees" / "item-1"
    git(origin, "worktree", "add", "-q", "-b", "trunkline/item-1", str(worktree), base)
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the worktree\n")
    return Repo(origin, worktree, base, outside)


def config(
    *,
    tokens: int = 10_000_000,
    usd: str = "100",
    turns: int = 40,
    rounds: int = 2,
    wall: float = 3600.0,
    executor_max_tokens: int = 4096,
) -> AgentRunConfig:
    return AgentRunConfig(
        model=MODEL,
        limits=BudgetLimits(
            tokens=tokens,
            usd=Decimal(usd),
            wall_seconds=wall,
            executor_turns=turns,
            review_rounds=rounds,
        ),
        prices=PRICES,
        commands=(PYTEST,),
        author=Author("trunkline-test[bot]", "bot@trunkline.test"),
        planner_max_tokens=2048,
        reviewer_max_tokens=2048,
        executor_max_tokens=executor_max_tokens,
    )


def tool(name: str, **arguments: object) -> dict[str, object]:
    return {"content": [{"type": "tool_use", "name": name, "input": arguments}]}


PLAN = {
    "summary": "Fix add() so it adds, and cover it with tests.",
    "steps": ["Change the operator in src/calc.py", "Run the tests"],
    "paths": ["src/calc.py", "tests/test_calc.py"],
    "acceptance_criteria": ["add(2, 3) == 5"],
    "tests_to_run": ["pytest -q"],
    "risk_notes": [],
}

PLAN_ID = "{{match: (plan-[0-9a-f]{16})}}"
HEAD_SHA = "{{match: Review commit ([0-9a-f]{40})}}"


def submit_plan() -> dict[str, object]:
    return tool("submit_plan", **PLAN)


def approve_plan() -> dict[str, object]:
    return tool("submit_review", subject=PLAN_ID, verdict="approve", summary="The plan is sound.")


def submit_report(summary: str, files: list[str], exit_code: int = 0) -> dict[str, object]:
    return tool(
        "submit_report",
        summary=summary,
        files_changed=files,
        commands_run=[{"command": PYTEST, "exit_code": exit_code}],
        open_questions=[],
    )
