"""The local Messages server's request validation, and the request ceiling (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.agents.messages import Message, ModelRequest, TextBlock, input_token_ceiling
from trunkline.agents.messages_server import validate_request

USER = {"role": "user", "content": "hi"}
CALL = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}],
}
ANSWER = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
}


def body(**change: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [USER]} | change


@pytest.mark.parametrize(
    ("request_body", "problem"),
    [
        (body(), None),
        (body(messages=[USER, CALL, ANSWER]), None),
        (body(model=""), "model"),
        (body(max_tokens=0), "max_tokens"),
        (body(messages=[]), "at least one message"),
        (body(messages=[CALL]), "alternate"),
        (body(messages=[USER, USER]), "alternate"),
        (body(messages=[USER, CALL, USER]), "without tool_result"),
        (body(tools=[{"name": "x"}]), "input_schema"),
        ([1, 2], "JSON object"),
    ],
)
def test_agents_messages_server_validation(request_body: Any, problem: str | None) -> None:
    found = validate_request(request_body)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@given(st.text(max_size=2000))
def test_agents_input_ceiling_is_at_least_the_utf8_length(text: str) -> None:
    request = ModelRequest("m", "s", (Message("user", (TextBlock(text),)),), (), 10)
    assert input_token_ceiling(request) >= len(text.encode("utf-8"))
