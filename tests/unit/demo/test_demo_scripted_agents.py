"""The demo's scripted agents: each answer is a function of the conversation alone."""

from __future__ import annotations

from typing import Any

import pytest

from trunkline.agents.contracts import Finding, Plan
from trunkline.agents.roles import (
    WorkItem,
    executor_message,
    plan_review_message,
    planner_message,
    review_message,
)
from trunkline.demo.agents import ScriptMismatchError, answer
from trunkline.demo.scenario import BY_NUMBER, REPO, REWORK_ISSUE, TEST_COMMAND

SYSTEMS = {
    "planner": "You are the planner of trunkline.",
    "plan_reviewer": "You are the plan reviewer of trunkline.",
    "executor": "You are the executor of trunkline.",
    "reviewer": "You are the code reviewer of trunkline, independent of the executor.",
}
SHA = "a" * 40


def _item(number: int) -> WorkItem:
    issue = BY_NUMBER[number]
    return WorkItem(key=f"{REPO}#{number}", title=issue.title, body=issue.body)


def _plan(number: int) -> Plan:
    script = BY_NUMBER[number].agents
    return Plan(
        summary=script.summary,
        steps=["do it"],
        paths=list(script.paths),
        acceptance_criteria=["works"],
        tests_to_run=[TEST_COMMAND],
        risk_notes=[],
    )


def _request(
    role: str, first: str, turns: list[tuple[dict[str, Any], str]] | None = None
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": first}]}
    ]
    for block, result in turns or []:
        messages.append({"role": "assistant", "content": [block]})
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": result}],
            }
        )
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": SYSTEMS[role]}],
        "messages": messages,
    }


def _tool(reply: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (block,) = reply["content"]
    assert block["type"] == "tool_use"
    return block["name"], block["input"]


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5, 6])
def test_demo_planner_declares_the_scenarios_paths(number: int) -> None:
    name, plan = _tool(answer(_request("planner", planner_message(_item(number)))))
    assert name == "submit_plan"
    assert plan["paths"] == list(BY_NUMBER[number].agents.paths)


def test_demo_plan_reviewer_approves_the_plan_it_was_given() -> None:
    plan = _plan(1)
    name, review = _tool(answer(_request("plan_reviewer", plan_review_message(_item(1), plan))))
    assert (name, review["subject"], review["verdict"]) == (
        "submit_review",
        plan.plan_id,
        "approve",
    )


def test_demo_executor_writes_tests_and_reports_the_real_exit_code() -> None:
    first = executor_message(_item(1), _plan(1), [TEST_COMMAND])
    writes = BY_NUMBER[1].agents.writes
    turns: list[tuple[dict[str, Any], str]] = []
    for path, content in writes:
        reply = answer(_request("executor", first, turns))
        assert _tool(reply) == ("write_file", {"path": path, "content": content})
        turns.append((reply["content"][0], "wrote"))
    reply = answer(_request("executor", first, turns))
    assert _tool(reply) == ("run_command", {"command": TEST_COMMAND})
    turns.append((reply["content"][0], "exit code 1\nFAILED"))
    name, report = _tool(answer(_request("executor", first, turns)))
    assert name == "submit_report"
    assert report["commands_run"] == [{"command": TEST_COMMAND, "exit_code": 1}]


def test_demo_reviewer_requests_the_missing_test_once() -> None:
    plan = _plan(REWORK_ISSUE)
    item = _item(REWORK_ISSUE)
    untested = review_message(item, plan, SHA, "+++ b/money/price.py\n+    sign = ...")
    name, review = _tool(answer(_request("reviewer", untested)))
    assert name == "submit_review"
    assert (review["subject"], review["verdict"]) == (SHA, "request_changes")
    assert review["findings"][0]["path"] == "money/price.py"
    tested = review_message(item, plan, SHA, "+++ b/money/test_price.py\n+    def test_negative")
    assert _tool(answer(_request("reviewer", tested)))[1]["verdict"] == "approve"


def test_demo_executor_reworks_after_findings() -> None:
    finding = Finding(path="money/price.py", line=5, severity="major", message="add a test")
    first = executor_message(_item(REWORK_ISSUE), _plan(REWORK_ISSUE), [TEST_COMMAND], [finding])
    written = []
    turns: list[tuple[dict[str, Any], str]] = []
    while True:
        reply = answer(_request("executor", first, turns))
        name, arguments = _tool(reply)
        if name != "write_file":
            break
        written.append(arguments["path"])
        turns.append((reply["content"][0], "wrote"))
    assert written == [path for path, _ in BY_NUMBER[REWORK_ISSUE].agents.rework]


def test_demo_budget_executor_reports_runaway_usage_and_never_submits() -> None:
    first = executor_message(_item(6), _plan(6), [TEST_COMMAND])
    turns: list[tuple[dict[str, Any], str]] = []
    for _ in range(5):
        reply = answer(_request("executor", first, turns))
        assert _tool(reply)[0] == "read_file"
        assert reply["usage"]["input_tokens"] == BY_NUMBER[6].agents.tokens_per_turn
        turns.append((reply["content"][0], "text"))


def test_demo_unknown_work_item_or_role_is_refused() -> None:
    with pytest.raises(ScriptMismatchError):
        answer(_request("planner", "Work item someone/else#99. Plan it."))
    odd = _request("planner", planner_message(_item(1)))
    odd["system"] = [{"type": "text", "text": "You are a poet."}]
    with pytest.raises(ScriptMismatchError):
        answer(odd)
