"""The tool-use loop with the scripted provider: repair turns, takeover, hand-off rules."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from agents_testkit import MODEL, PLAN, PRICES, tool

from trunkline.agents.agent_loop import RoleResult, RunContext, RunStatus, run_role
from trunkline.agents.budget import BudgetLimits, CallEstimate, Spend
from trunkline.agents.contracts import Plan
from trunkline.agents.messages import TextBlock, ToolResultBlock
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import (
    EXECUTOR_TOOLS,
    READ_ONLY_TOOLS,
    WorkItem,
    executor_spec,
    planner_message,
    planner_spec,
)
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.timeline import InMemoryTimeline
from trunkline.agents.tools import Toolbox
from trunkline.clock import FakeClock

ITEM = WorkItem("acme/calc#4", "t", "b")
TEXT_ONLY = {"content": [{"type": "text", "text": "I think the plan is obvious."}]}


def run_planner(
    tmp_path: Path,
    script: list[dict[str, Any]],
    stop: bool = False,
    before_call: Callable[[Spend, CallEstimate], bool] | None = None,
    provider: ScriptedProvider | None = None,
) -> tuple[RoleResult[Plan], ScriptedProvider, InMemoryTimeline]:
    provider = provider or ScriptedProvider.of(script)
    timeline = InMemoryTimeline()
    ctx = RunContext(
        work_item=ITEM.key,
        model=MODEL,
        provider=provider,
        prices=PRICES,
        limits=BudgetLimits(10_000_000, Decimal(10), 3600, 10, 2),
        clock=FakeClock(),
        timeline=timeline,
        redactor=Redactor.of([]),
        should_stop=lambda: stop,
        before_call=before_call,
    )
    result = run_role(
        ctx, planner_spec(1000), Toolbox(tmp_path, READ_ONLY_TOOLS), planner_message(ITEM)
    )
    return result, provider, timeline


def test_agents_a_turn_without_tools_gets_one_repair(tmp_path: Path) -> None:
    result, provider, _ = run_planner(tmp_path, [TEXT_ONLY, tool("submit_plan", **PLAN)])
    assert result.status is RunStatus.SUCCEEDED
    nudge = provider.requests[1].messages[-1].content[-1]
    assert isinstance(nudge, TextBlock)
    assert "submit_plan" in nudge.text


def test_agents_two_turns_without_a_product_fail(tmp_path: Path) -> None:
    result, _, timeline = run_planner(tmp_path, [TEXT_ONLY, TEXT_ONLY, tool("submit_plan", **PLAN)])
    assert result.status is RunStatus.FAILED
    assert result.reason == "invalid_output"
    assert timeline.finished[-1].reason == "invalid_output"


def test_agents_takeover_before_the_first_call_sends_nothing(tmp_path: Path) -> None:
    result, provider, timeline = run_planner(tmp_path, [tool("submit_plan", **PLAN)], stop=True)
    assert result.status is RunStatus.TAKEN_OVER
    assert provider.requests == []
    assert timeline.finished[-1].status == "taken_over"


def test_agents_before_call_sees_the_spend_and_the_worst_case_of_every_call(
    tmp_path: Path,
) -> None:
    (tmp_path / "f.txt").write_text("data")
    scripted = ScriptedProvider.of([tool("read_file", path="f.txt"), tool("submit_plan", **PLAN)])
    seen: list[tuple[Spend, CallEstimate, int]] = []

    def before_call(spend: Spend, estimate: CallEstimate) -> bool:
        seen.append((spend, estimate, len(scripted.requests)))
        return True

    result, _, timeline = run_planner(tmp_path, [], before_call=before_call, provider=scripted)
    assert result.status is RunStatus.SUCCEEDED
    assert [sent for _, _, sent in seen] == [0, 1]  # each time before its call is sent
    assert seen[0][0].usd == 0
    assert seen[1][0].usd == timeline.steps[0].cost_usd  # the first call's real cost
    assert seen[1][0].usd < result.cost_usd
    for _, estimate, _ in seen:
        assert estimate.tokens >= 1000  # the input ceiling plus max_tokens
        assert estimate.usd > 0


def test_agents_a_run_whose_claim_is_lost_stops_before_the_call(tmp_path: Path) -> None:
    calls: list[Spend] = []

    def claim_lost(spend: Spend, estimate: CallEstimate) -> bool:
        calls.append(spend)
        return False

    result, provider, timeline = run_planner(
        tmp_path, [tool("submit_plan", **PLAN)], before_call=claim_lost
    )
    assert result.status is RunStatus.TAKEN_OVER
    assert result.reason == "claim_lost"
    assert provider.requests == []  # nothing was paid for
    assert len(calls) == 1
    assert timeline.finished[-1].status == "taken_over"


def test_agents_calls_after_a_valid_submission_are_not_executed(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("data")
    script = [
        {
            "content": [
                {"type": "tool_use", "name": "read_file", "input": {"path": "f.txt"}},
                {"type": "tool_use", "name": "submit_plan", "input": PLAN},
                {"type": "tool_use", "name": "read_file", "input": {"path": "f.txt"}},
            ]
        }
    ]
    result, _, timeline = run_planner(tmp_path, script)
    assert result.status is RunStatus.SUCCEEDED
    calls = timeline.steps[0].tool_calls
    assert [c.name for c in calls] == ["read_file", "submit_plan", "read_file"]
    assert "data" in calls[0].result
    assert calls[2].result.startswith("not executed")


def test_agents_executor_cannot_claim_commands_it_did_not_run(tmp_path: Path) -> None:
    claim = {"summary": "ok", "commands_run": [{"command": "pytest -q", "exit_code": 0}]}
    provider = ScriptedProvider.of(
        [tool("submit_report", **claim), tool("submit_report", summary="ok, ran nothing")]
    )
    toolbox = Toolbox(tmp_path, EXECUTOR_TOOLS, write_scope=("**",))
    ctx = RunContext(
        work_item=ITEM.key,
        model=MODEL,
        provider=provider,
        prices=PRICES,
        limits=BudgetLimits(10_000_000, Decimal(10), 3600, 10, 2),
        clock=FakeClock(),
        timeline=InMemoryTimeline(),
        redactor=Redactor.of([]),
    )
    result = run_role(ctx, executor_spec(1000, toolbox.commands), toolbox, "work")
    assert result.status is RunStatus.SUCCEEDED
    repair = provider.requests[1].messages[-1].content[0]
    assert isinstance(repair, ToolResultBlock)
    assert repair.is_error
    assert "was not run in this session" in repair.content
    assert ctx.spend.executor_turns == 2


def test_agents_recorded_results_are_redacted_and_capped(tmp_path: Path) -> None:
    token = "ghs_" + "Q" * 36
    (tmp_path / "leak.txt").write_text(f"token={token}\nconfigured=s3cr3t-value\n" + "y" * 9000)
    provider = ScriptedProvider.of(
        [tool("read_file", path="leak.txt"), tool("submit_plan", **PLAN)]
    )
    timeline = InMemoryTimeline()
    ctx = RunContext(
        work_item=ITEM.key,
        model=MODEL,
        provider=provider,
        prices=PRICES,
        limits=BudgetLimits(10_000_000, Decimal(10), 3600, 10, 2),
        clock=FakeClock(),
        timeline=timeline,
        redactor=Redactor.of(["s3cr3t-value"]),
        result_cap=1000,
    )
    result = run_role(
        ctx, planner_spec(1000), Toolbox(tmp_path, READ_ONLY_TOOLS), planner_message(ITEM)
    )
    assert result.status is RunStatus.SUCCEEDED
    recorded = timeline.steps[0].tool_calls[0].result
    assert token not in recorded
    assert "s3cr3t-value" not in recorded
    assert "[REDACTED]" in recorded
    assert len(recorded) < 1100
    assert "chars capped" in recorded
    sent = provider.requests[1].messages[-1].content[0]
    assert isinstance(sent, ToolResultBlock)
    assert token not in sent.content
    assert "s3cr3t-value" not in sent.content
