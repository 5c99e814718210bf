"""A scripted work item end to end in a real git worktree, with commands under bubblewrap."""

from __future__ import annotations

from pathlib import Path

from agents_testkit import (
    CALC_FIXED,
    HEAD_SHA,
    PYTEST,
    SANDBOX_PATH,
    TEST_CALC_MORE,
    approve_plan,
    config,
    git,
    make_repo,
    submit_plan,
    submit_report,
    tool,
)
from prerequisites import require_bwrap

from trunkline.agents.contracts import Verdict
from trunkline.agents.outcome import OutcomeKind
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import WorkItem
from trunkline.agents.sandbox import BubblewrapSandbox, SandboxMode, make_sandbox
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.timeline import InMemoryTimeline
from trunkline.agents.work_item_runner import WorkItemRunner
from trunkline.clock import FakeClock

ITEM = WorkItem("acme/calc#1", "add() subtracts", "add(2, 3) returns -1. Please fix it.")


def test_agents_scripted_run_plans_executes_reviews_twice_and_completes(tmp_path: Path) -> None:
    require_bwrap()
    repo = make_repo(tmp_path)
    sandbox = make_sandbox(SandboxMode.BUBBLEWRAP, repo.worktree, path=SANDBOX_PATH, time_limit=120)
    assert isinstance(sandbox, BubblewrapSandbox)
    provider = ScriptedProvider.of(
        [
            tool("list_files", path="."),
            submit_plan(),
            approve_plan(),
            # executor, round 1
            tool("read_file", path="src/calc.py"),
            tool("write_file", path="src/calc.py", content=CALC_FIXED),
            tool("run_command", command=PYTEST),
            submit_report("Fixed the operator in add().", ["src/calc.py"]),
            # reviewer, round 1: one real finding
            tool(
                "submit_review",
                subject=HEAD_SHA,
                verdict="request_changes",
                summary="Add a test for negative numbers.",
                findings=[
                    {
                        "path": "tests/test_calc.py",
                        "line": 5,
                        "severity": "minor",
                        "message": "cover negative numbers",
                    },
                    {"path": "src/calc.py", "line": 1, "severity": "nit", "message": "docstring"},
                ],
            ),
            # executor, round 2 (a fresh context that sees the findings)
            {
                "expect": {"role": "executor", "last_user_contains": ["cover negative numbers"]},
                **tool("write_file", path="tests/test_calc.py", content=TEST_CALC_MORE),
            },
            tool("run_command", command=PYTEST),
            submit_report("Added a test for negative numbers.", ["tests/test_calc.py"]),
            # reviewer, round 2
            tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Good."),
        ]
    )
    timeline = InMemoryTimeline()
    runner = WorkItemRunner(
        item=ITEM,
        worktree=repo.worktree,
        base_sha=repo.base_sha,
        config=config(),
        provider=provider,
        sandbox=sandbox,
        timeline=timeline,
        clock=FakeClock(),
        redactor=Redactor.of([]),
    )

    outcome = runner.run()

    assert outcome.kind is OutcomeKind.COMPLETED, outcome.comment
    assert provider.remaining == 0
    assert [r.verdict for r in outcome.reviews] == [Verdict.REQUEST_CHANGES, Verdict.APPROVE]
    assert len(outcome.reports) == 2
    assert outcome.reviews[-1].subject == outcome.head_sha
    assert outcome.reviews[0].subject == outcome.commits[0]
    assert outcome.spend.review_rounds == 2
    assert sorted(outcome.files_changed) == ["src/calc.py", "tests/test_calc.py"]
    # Real commits by the configured author, with the tests passing in the sandbox.
    assert git(repo.worktree, "log", "-1", "--format=%an <%ae>") == (
        "trunkline-test[bot] <bot@trunkline.test>"
    )
    assert git(repo.worktree, "rev-list", "--count", f"{repo.base_sha}..HEAD") == "2"
    message = git(repo.worktree, "log", "-1", "--format=%B")
    assert message.startswith("acme/calc#1: Added a test for negative numbers.")
    assert (repo.worktree / "src" / "calc.py").read_text() == CALC_FIXED
    command_results = [c.result for c in timeline.tool_calls() if c.name == "run_command"]
    assert len(command_results) == 2
    assert all(r.startswith("exit code 0") for r in command_results), command_results
    assert "2 passed" in command_results[-1]
    # The timeline is complete: every run started and finished, every step recorded.
    roles = [s.role for s in timeline.started]
    assert roles == [
        "planner",
        "plan_reviewer",
        "executor",
        "reviewer",
        "executor",
        "reviewer",
    ]
    assert [f.status for f in timeline.finished] == ["succeeded"] * 6
    assert len(timeline.steps) == 12
    assert all(len(s.prompt_digest) == 64 and s.usage.total_tokens > 0 for s in timeline.steps)
    assert [s.verdict for s in timeline.steps if s.verdict] == [
        "approve",
        "request_changes",
        "approve",
    ]
    assert sum(s.cost_usd for s in timeline.steps) == outcome.spend.usd
    assert outcome.spend.calls == 12


def test_agents_changes_made_by_commands_outside_the_plan_are_not_committed(
    tmp_path: Path,
) -> None:
    require_bwrap()
    repo = make_repo(tmp_path)
    sneaky = (
        "\n\nimport pathlib\n\n\ndef test_sneak():\n"
        "    pathlib.Path('.github/workflows').mkdir(parents=True, exist_ok=True)\n"
        "    pathlib.Path('.github/workflows/evil.yml').write_text('on: push')\n"
        "    pathlib.Path('README.md').write_text('defaced')\n"
    )
    provider = ScriptedProvider.of(
        [
            submit_plan(),
            approve_plan(),
            tool("write_file", path="src/calc.py", content=CALC_FIXED),
            tool("write_file", path="tests/test_calc.py", content=TEST_CALC_MORE + sneaky),
            tool("run_command", command=PYTEST),
            submit_report("Fixed add().", ["src/calc.py", "tests/test_calc.py"]),
            tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="ok"),
        ]
    )
    timeline = InMemoryTimeline()
    runner = WorkItemRunner(
        item=ITEM,
        worktree=repo.worktree,
        base_sha=repo.base_sha,
        config=config(),
        provider=provider,
        sandbox=make_sandbox(SandboxMode.BUBBLEWRAP, repo.worktree, path=SANDBOX_PATH),
        timeline=timeline,
        clock=FakeClock(),
        redactor=Redactor.of([]),
    )

    outcome = runner.run()

    assert outcome.kind is OutcomeKind.COMPLETED, [
        c.result for c in timeline.tool_calls() if c.name == "run_command"
    ]
    assert sorted(outcome.discarded_paths) == [".github/workflows/evil.yml", "README.md"]
    assert sorted(outcome.files_changed) == ["src/calc.py", "tests/test_calc.py"]
    assert (repo.worktree / "README.md").read_text() == "# calc\n"
    assert not (repo.worktree / ".github" / "workflows" / "evil.yml").exists()
    assert git(repo.worktree, "status", "--porcelain", "--untracked-files=all") == ""
    assert "discarded changes outside the approved plan" in outcome.comment
