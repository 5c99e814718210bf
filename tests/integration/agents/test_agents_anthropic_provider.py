"""The anthropic provider: the real SDK against the local Messages API server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trunkline.agents.agent_loop import RunContext, RunStatus, run_role
from trunkline.agents.anthropic_provider import AnthropicProvider
from trunkline.agents.budget import BudgetLimits, ModelPrice
from trunkline.agents.contracts import Plan
from trunkline.agents.messages_server import (
    MessagesServer,
    error_reply,
    message_reply,
    overloaded_reply,
    text_block,
    tool_use_block,
)
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import READ_ONLY_TOOLS, WorkItem, planner_message, planner_spec
from trunkline.agents.timeline import InMemoryTimeline
from trunkline.agents.tools import Toolbox
from trunkline.clock import FakeClock

MODEL = "claude-test"
PLAN: dict[str, Any] = {
    "summary": "Fix add().",
    "steps": ["edit src/calc.py"],
    "paths": ["src/calc.py"],
    "acceptance_criteria": ["add(2, 3) == 5"],
    "tests_to_run": ["pytest -q"],
    "risk_notes": [],
}
ITEM = WorkItem("acme/calc#7", "add() is wrong", "Please fix add().")


@pytest.fixture
def server() -> Iterator[MessagesServer]:
    with MessagesServer(api_key="test-key") as running:
        yield running


def provider(server: MessagesServer, max_retries: int = 2) -> AnthropicProvider:
    return AnthropicProvider.create(
        api_key="test-key", base_url=server.url, max_retries=max_retries, timeout=30
    )


def context(server: MessagesServer, max_retries: int = 2) -> tuple[RunContext, InMemoryTimeline]:
    timeline = InMemoryTimeline()
    ctx = RunContext(
        work_item=ITEM.key,
        model=MODEL,
        provider=provider(server, max_retries),
        prices={MODEL: ModelPrice(input=Decimal(3), output=Decimal(15))},
        limits=BudgetLimits(
            tokens=10_000_000,
            usd=Decimal(100),
            wall_seconds=100_000,
            executor_turns=10,
            review_rounds=2,
        ),
        clock=FakeClock(),
        timeline=timeline,
        redactor=Redactor.of(["test-key"]),
    )
    return ctx, timeline


def plan_run(ctx: RunContext, tmp_path: Path) -> Any:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return run_role(
        ctx, planner_spec(1024), Toolbox(tmp_path, READ_ONLY_TOOLS), planner_message(ITEM)
    )


def test_agents_anthropic_tool_use_turns_with_cache_markers_and_usage(
    server: MessagesServer, tmp_path: Path
) -> None:
    server.enqueue(
        message_reply(
            [text_block("Let me look."), tool_use_block("read_file", {"path": "src/calc.py"})],
            input_tokens=500,
            output_tokens=40,
            cache_creation_input_tokens=1200,
        ),
        message_reply(
            [tool_use_block("submit_plan", PLAN)],
            input_tokens=80,
            output_tokens=120,
            cache_read_input_tokens=1200,
        ),
    )
    ctx, timeline = context(server)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.SUCCEEDED
    assert result.product == Plan.model_validate(PLAN)
    first, second = server.requests
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert first["model"] == MODEL
    assert first["max_tokens"] == 1024
    assert {t["name"] for t in first["tools"]} == {
        "list_files",
        "read_file",
        "search",
        "submit_plan",
    }
    submit = next(t for t in first["tools"] if t["name"] == "submit_plan")
    assert submit["input_schema"]["additionalProperties"] is False
    # The second turn answers the tool call, with the file framed as untrusted data.
    answer = second["messages"][-1]["content"][0]
    assert answer["type"] == "tool_result"
    assert answer["tool_use_id"] == second["messages"][-2]["content"][1]["id"]
    assert "untrusted-data" in answer["content"]
    assert "return a - b" in answer["content"]
    assert answer["cache_control"] == {"type": "ephemeral"}
    # Usage, including the cache counters, is accounted and priced.
    assert ctx.spend.usage.cache_creation_input_tokens == 1200
    assert ctx.spend.usage.cache_read_input_tokens == 1200
    assert ctx.spend.tokens == 500 + 40 + 1200 + 80 + 120 + 1200
    # 580 input x $3 + 160 output x $15 + 1200 cache writes x $3.75 + 1200 cache reads x $0.30
    assert ctx.spend.usd == Decimal(1740 + 2400 + 4500 + 360) / Decimal(1_000_000)
    assert [s.stop_reason for s in timeline.steps] == ["tool_use", "tool_use"]


def test_agents_anthropic_overloaded_529_is_retried_by_the_sdk(
    server: MessagesServer, tmp_path: Path
) -> None:
    server.enqueue(
        overloaded_reply(retry_after_ms=10), message_reply([tool_use_block("submit_plan", PLAN)])
    )
    ctx, _ = context(server, max_retries=2)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.SUCCEEDED
    assert len(server.requests) == 2
    assert [h.get("x-stainless-retry-count") for h in server.headers] == ["0", "1"]
    assert ctx.spend.calls == 1


def test_agents_anthropic_overloaded_past_retries_fails_the_run(
    server: MessagesServer, tmp_path: Path
) -> None:
    server.enqueue(overloaded_reply(10), overloaded_reply(10))
    ctx, timeline = context(server, max_retries=1)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.FAILED
    assert result.reason == "provider_error"
    assert "529" in result.detail
    assert timeline.finished[-1].status == "failed"


def test_agents_anthropic_bad_request_is_terminal(server: MessagesServer, tmp_path: Path) -> None:
    server.enqueue(error_reply(400, "invalid_request_error", "prompt is too long"))
    ctx, _ = context(server)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.FAILED
    assert len(server.requests) == 1  # a 400 is never retried


def test_agents_anthropic_max_tokens_stop_is_a_failure(
    server: MessagesServer, tmp_path: Path
) -> None:
    truncated = dict(PLAN, summary="Fix a")
    server.enqueue(
        message_reply([tool_use_block("submit_plan", truncated)], stop_reason="max_tokens")
    )
    ctx, timeline = context(server)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.FAILED
    assert result.reason == "max_tokens_stop"
    assert result.product is None  # the (valid-looking) truncated hand-off is not accepted
    assert timeline.steps[-1].stop_reason == "max_tokens"
    assert len(server.requests) == 1


def test_agents_anthropic_malformed_tool_input_gets_one_repair_turn(
    server: MessagesServer, tmp_path: Path
) -> None:
    server.enqueue(
        message_reply([tool_use_block("submit_plan", {"summary": "x", "steps": "not a list"})]),
        message_reply([tool_use_block("submit_plan", PLAN)]),
    )
    ctx, timeline = context(server)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.SUCCEEDED
    repair = server.requests[1]["messages"][-1]["content"][0]
    assert repair["type"] == "tool_result"
    assert repair["is_error"] is True
    assert "steps" in repair["content"]
    assert "paths" in repair["content"]
    assert timeline.steps[0].note is not None
    assert "invalid product" in timeline.steps[0].note


def test_agents_anthropic_second_malformed_product_fails_the_step(
    server: MessagesServer, tmp_path: Path
) -> None:
    server.enqueue(
        message_reply([tool_use_block("submit_plan", "not even an object")]),
        message_reply([tool_use_block("submit_plan", dict(PLAN, surprise="extra key"))]),
    )
    ctx, _ = context(server)

    result = plan_run(ctx, tmp_path)

    assert result.status is RunStatus.FAILED
    assert result.reason == "invalid_output"
    assert len(server.requests) == 2
