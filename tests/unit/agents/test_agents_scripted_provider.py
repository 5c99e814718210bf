"""The scripted provider: deterministic replay and clear errors (pure)."""

from __future__ import annotations

import pytest

from trunkline.agents.messages import (
    Message,
    ModelRequest,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    input_token_ceiling,
)
from trunkline.agents.scripted_provider import ScriptedProvider, ScriptError, parse_script
from trunkline.errors import ConfigurationError

TOOLS = (ToolSpec("read_file", "read", {"type": "object"}),)


def request(text: str = "hello", purpose: str = "planner") -> ModelRequest:
    return ModelRequest("m", "system", (Message("user", (TextBlock(text),)),), TOOLS, 100, purpose)


def test_agents_script_replays_in_order_with_ids_and_usage() -> None:
    provider = ScriptedProvider(
        parse_script(
            """
responses:
  - content:
      - {type: text, text: "looking"}
      - {type: tool_use, name: read_file, input: {path: a.py}}
  - content: [{type: text, text: "done"}]
    usage: {input_tokens: 7, output_tokens: 3}
"""
        )
    )
    first = provider.complete(request())
    assert first.stop_reason is StopReason.TOOL_USE
    assert first.tool_uses == (ToolUseBlock("toolu_script_1_1", "read_file", {"path": "a.py"}),)
    assert first.usage.input_tokens == input_token_ceiling(request()) // 4
    assert first.usage.output_tokens > 0
    second = provider.complete(request())
    assert second.stop_reason is StopReason.END_TURN
    assert second.text == "done"
    assert (second.usage.input_tokens, second.usage.output_tokens) == (7, 3)
    assert provider.remaining == 0


def test_agents_script_running_out_is_a_clear_error() -> None:
    provider = ScriptedProvider.of([{"content": [{"type": "text", "text": "x"}]}])
    provider.complete(request())
    with pytest.raises(ScriptError, match=r"ran out: call 2 \(planner\)"):
        provider.complete(request())


def test_agents_script_tool_not_offered_is_a_clear_error() -> None:
    provider = ScriptedProvider.of(
        [{"content": [{"type": "tool_use", "name": "run_command", "input": {"command": "ls"}}]}]
    )
    with pytest.raises(ScriptError, match="'run_command' is not among the tools offered"):
        provider.complete(request())
    assert provider.remaining == 1  # nothing consumed


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        ({"role": "executor"}, "expects role 'executor'"),
        ({"tools_include": ["write_file"]}, "expects tools"),
        ({"last_user_contains": ["goodbye"]}, "to contain 'goodbye'"),
    ],
)
def test_agents_script_expectations_catch_a_run_out_of_step(
    expect: dict[str, object], message: str
) -> None:
    provider = ScriptedProvider.of([{"expect": expect, "content": [{"type": "text", "text": "x"}]}])
    with pytest.raises(ScriptError, match=message):
        provider.complete(request())


def test_agents_script_binds_values_from_the_user_turns() -> None:
    provider = ScriptedProvider.of(
        [
            {
                "content": [
                    {
                        "type": "tool_use",
                        "name": "read_file",
                        "input": {"path": "{{match: open (\\S+) now}}", "n": [1]},
                    }
                ]
            },
            {
                "content": [
                    {"type": "tool_use", "name": "read_file", "input": {"p": "{{match: zz}}"}}
                ]
            },
        ]
    )
    tool_result = Message("user", (ToolResultBlock("t", "please open src/x.py now"),))
    req = ModelRequest("m", "s", (*request().messages, tool_result), TOOLS, 100)
    assert provider.complete(req).tool_uses[0].input == {"path": "src/x.py", "n": [1]}
    with pytest.raises(ScriptError, match="matches nothing"):
        provider.complete(request())


@pytest.mark.parametrize(
    "text",
    [
        "responses: [{content: []}]",
        "responses: [{content: [{type: image}]}]",
        "responses: [{content: [{type: text, text: x}], extra: 1}]",
        "not: a script",
        "responses: [",
    ],
)
def test_agents_bad_scripts_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid agent script"):
        parse_script(text)
