"""Budgets, bounded loops, escalation outcomes and takeover, on a real git worktree."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from agents_testkit import (
    CALC_FIXED,
    HEAD_SHA,
    MODEL,
    PLAN,
    PLAN_ID,
    PRICES,
    Repo,
    approve_plan,
    config,
    git,
    make_repo,
    submit_plan,
    submit_report,
    tool,
)

from trunkline.agents.budget import max_cost_of_call
from trunkline.agents.contracts import Plan
from trunkline.agents.messages import ModelRequest, ModelResponse, input_token_ceiling
from trunkline.agents.outcome import EscalationReason, OutcomeKind, WorkOutcome
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import WorkItem
from trunkline.agents.sandbox import RefusingSandbox
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.timeline import InMemoryTimeline
from trunkline.agents.work_item_runner import AgentRunConfig, WorkItemRunner
from trunkline.clock import FakeClock

ITEM = WorkItem("acme/calc#2", "add() subtracts", "Fix add().")
PLANNER_SCRIPT = [tool("list_files", path="."), tool("list_files", path="src"), submit_plan()]


@dataclass
class Harness:
    repo: Repo
    provider: ScriptedProvider
    timeline: InMemoryTimeline = field(default_factory=InMemoryTimeline)
    clock: FakeClock = field(default_factory=FakeClock)


def run(
    tmp: Path,
    script: list[dict[str, object]],
    cfg: AgentRunConfig,
    *,
    stop_after_calls: int | None = None,
) -> tuple[WorkOutcome, Harness]:
    harness = Harness(make_repo(tmp), ScriptedProvider.of(script))

    def should_stop() -> bool:
        return stop_after_calls is not None and len(harness.provider.requests) >= stop_after_calls

    runner = WorkItemRunner(
        item=ITEM,
        worktree=harness.repo.worktree,
        base_sha=harness.repo.base_sha,
        config=cfg,
        provider=harness.provider,
        sandbox=RefusingSandbox("no commands in this test"),
        timeline=harness.timeline,
        clock=harness.clock,
        redactor=Redactor.of([]),
        should_stop=should_stop,
    )
    return runner.run(), harness


def first_call_ceiling(tmp: Path) -> tuple[ModelRequest, int]:
    """The planner's first request (deterministic) and its token ceiling, from a free run."""
    _, harness = run(tmp, [*PLANNER_SCRIPT], config(rounds=1))
    request = harness.provider.requests[0]
    return request, input_token_ceiling(request) + request.max_tokens


def assert_escalated_with_spend(outcome: WorkOutcome, reason: EscalationReason) -> None:
    assert outcome.kind is OutcomeKind.ESCALATED
    assert outcome.reason is reason
    assert f"{outcome.spend.tokens} of {outcome.limits.tokens} tokens" in outcome.comment
    assert reason.value in outcome.comment
    assert "Next steps" in outcome.comment


def test_agents_token_cap_stops_before_the_call_that_could_cross_it(tmp_path: Path) -> None:
    _, ceiling = first_call_ceiling(tmp_path / "probe")
    script = [{**tool("list_files", path="."), "usage": {"input_tokens": 10, "output_tokens": 10}}]
    script += PLANNER_SCRIPT[1:]
    cap = ceiling + 19  # the first call fits; after spending 20, the second cannot

    outcome, harness = run(tmp_path / "run", script, config(tokens=cap))

    assert_escalated_with_spend(outcome, EscalationReason.BUDGET_TOKENS)
    assert len(harness.provider.requests) == 1  # the provider never received the second call
    assert outcome.spend.tokens == 20 <= cap
    assert harness.timeline.finished[-1].status == "exhausted"


def test_agents_usd_cap_stops_before_the_call_that_could_cross_it(tmp_path: Path) -> None:
    request, _ = first_call_ceiling(tmp_path / "probe")
    price = PRICES[MODEL]
    first_max = max_cost_of_call(input_token_ceiling(request), request.max_tokens, price)
    usage = {"input_tokens": 1000, "output_tokens": 1000}
    spent = (1000 * price.input + 1000 * price.output) / Decimal(1_000_000)
    cap = first_max + spent - Decimal("0.000001")
    script = [{**tool("list_files", path="."), "usage": usage}, *PLANNER_SCRIPT[1:]]

    outcome, harness = run(tmp_path / "run", script, config(usd=str(cap)))

    assert_escalated_with_spend(outcome, EscalationReason.BUDGET_USD)
    assert len(harness.provider.requests) == 1
    assert outcome.spend.usd == spent <= cap
    assert str(spent.quantize(Decimal("0.0001"))) in outcome.comment


def test_agents_looping_executor_stops_at_max_turns(tmp_path: Path) -> None:
    loop = [tool("read_file", path="src/calc.py") for _ in range(20)]
    outcome, harness = run(tmp_path, [submit_plan(), approve_plan(), *loop], config(turns=3))

    assert_escalated_with_spend(outcome, EscalationReason.MAX_TURNS)
    executor_calls = [r for r in harness.provider.requests if r.purpose == "executor"]
    assert len(executor_calls) == 3
    assert outcome.spend.executor_turns == 3
    assert "3 of 3 executor turns" in outcome.comment
    assert harness.provider.remaining == 17


def test_agents_wall_time_is_checked_before_each_call(tmp_path: Path) -> None:
    class SlowProvider(ScriptedProvider):
        clock: FakeClock

        def complete(self, request: ModelRequest) -> ModelResponse:
            self.clock.advance(40)
            return super().complete(request)

    harness = Harness(make_repo(tmp_path), SlowProvider.of([*PLANNER_SCRIPT]))
    harness.provider.clock = harness.clock  # type: ignore[attr-defined]
    runner = WorkItemRunner(
        item=ITEM,
        worktree=harness.repo.worktree,
        base_sha=harness.repo.base_sha,
        config=config(wall=100),
        provider=harness.provider,
        sandbox=RefusingSandbox("none"),
        timeline=harness.timeline,
        clock=harness.clock,
        redactor=Redactor.of([]),
    )
    outcome = runner.run()
    assert_escalated_with_spend(outcome, EscalationReason.BUDGET_WALL)
    assert len(harness.provider.requests) == 3  # 0s, 40s, 80s; a 4th call would start at 120s


def test_agents_review_rounds_are_bounded(tmp_path: Path) -> None:
    changes = tool(
        "submit_review",
        subject=HEAD_SHA,
        verdict="request_changes",
        summary="Not yet.",
        findings=[{"path": "src/calc.py", "line": 1, "severity": "major", "message": "wrong"}],
    )
    script: list[dict[str, object]] = [
        submit_plan(),
        approve_plan(),
        tool("write_file", path="src/calc.py", content=CALC_FIXED),
        {
            "content": [
                {"type": "tool_use", "name": "submit_report", "input": {"summary": "Fixed."}}
            ]
        },
        changes,
    ]
    outcome, harness = run(tmp_path, script, config(rounds=1))

    assert_escalated_with_spend(outcome, EscalationReason.MAX_REVIEW_ROUNDS)
    assert outcome.spend.review_rounds == 1
    assert len(outcome.commits) == 1
    assert harness.provider.remaining == 0


def test_agents_reviewer_escalation_and_plan_rejection(tmp_path: Path) -> None:
    escalate = tool(
        "submit_review", subject=PLAN_ID, verdict="escalate", summary="Needs a product decision."
    )
    outcome, _ = run(tmp_path / "a", [submit_plan(), escalate], config())
    assert outcome.reason is EscalationReason.REVIEWER_ESCALATED
    assert "Needs a product decision." in outcome.comment

    reject = tool(
        "submit_review",
        subject=PLAN_ID,
        verdict="request_changes",
        summary="Missing tests.",
        findings=[{"severity": "blocker", "message": "no tests planned"}],
    )
    script = [
        submit_plan(),
        reject,
        {
            "expect": {"role": "planner", "last_user_contains": ["no tests planned"]},
            **submit_plan(),
        },
        reject,
    ]
    outcome, harness = run(tmp_path / "b", script, config(rounds=2))
    assert outcome.reason is EscalationReason.PLAN_REJECTED
    assert len(outcome.plan_reviews) == 2
    assert harness.provider.remaining == 0


def test_agents_nits_never_block(tmp_path: Path) -> None:
    nit_only = tool(
        "submit_review",
        subject=HEAD_SHA,
        verdict="request_changes",
        summary="Only style.",
        findings=[{"path": "src/calc.py", "line": 1, "severity": "nit", "message": "spacing"}],
    )
    script: list[dict[str, object]] = [
        submit_plan(),
        approve_plan(),
        tool("write_file", path="src/calc.py", content=CALC_FIXED),
        {
            "content": [
                {"type": "tool_use", "name": "submit_report", "input": {"summary": "Fixed."}}
            ]
        },
        nit_only,
    ]
    outcome, _ = run(tmp_path, script, config(rounds=1))
    assert outcome.kind is OutcomeKind.COMPLETED


def test_agents_takeover_stops_at_a_turn_boundary_and_keeps_the_work(tmp_path: Path) -> None:
    script: list[dict[str, object]] = [
        submit_plan(),
        approve_plan(),
        tool("write_file", path="src/calc.py", content=CALC_FIXED),
        tool("read_file", path="src/calc.py"),
        submit_report("never reached", ["src/calc.py"]),
    ]
    outcome, harness = run(tmp_path, script, config(), stop_after_calls=3)

    assert outcome.kind is OutcomeKind.TAKEN_OVER
    assert outcome.reason is None
    assert len(harness.provider.requests) == 3
    assert harness.timeline.finished[-1].status == "taken_over"
    assert "/trunkline resume" in outcome.comment
    # The executor's write is committed as work in progress for the human.
    assert outcome.commits
    assert outcome.head_sha == outcome.commits[-1]
    assert "work in progress (taken over)" in git(harness.repo.worktree, "log", "-1", "--format=%s")
    assert outcome.files_changed == ("src/calc.py",)


def test_agents_resume_runs_the_executor_with_the_humans_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo.worktree / "src" / "calc.py").write_text(CALC_FIXED)
    git(repo.worktree, "commit", "-qam", "human: fix the operator")
    provider = ScriptedProvider.of(
        [
            {
                "expect": {"role": "executor"},
                **tool("read_file", path="src/calc.py"),
            },
            tool("submit_report", summary="Verified the human's fix."),
            tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Fine."),
        ]
    )
    runner = WorkItemRunner(
        item=ITEM,
        worktree=repo.worktree,
        base_sha=repo.base_sha,
        config=config(),
        provider=provider,
        sandbox=RefusingSandbox("none"),
        timeline=InMemoryTimeline(),
        clock=FakeClock(),
        redactor=Redactor.of([]),
    )
    outcome = runner.resume(Plan.model_validate(PLAN))

    assert outcome.kind is OutcomeKind.COMPLETED
    first_executor_prompt = provider.requests[0].messages[0].content[0]
    assert "human: fix the operator" in str(first_executor_prompt)
