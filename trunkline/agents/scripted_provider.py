"""The scripted provider: replays a deterministic script of responses (demo and tests).

Reading the script file is the only I/O, done once by `load_script`; replaying is pure.
A script is YAML or JSON: `responses: [...]`, each with `content` blocks (text / tool_use),
an optional `stop_reason` (default: tool_use when there are tool calls, else end_turn),
optional `usage` (default: computed from the request and response sizes, so budgets see
realistic numbers) and optional `expect` (role, tools that must be offered, text the last
user message must contain) that catches a script out of step with the run. A string input
value `{{match: REGEX}}` is replaced by what REGEX captures in the user turns (newest
first), so a static script can name run-time values such as the head SHA it reviews.
Running out of script, a tool call naming a tool the request does not offer, or a
`{{match}}` that finds nothing, is a clear `ScriptError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trunkline.agents.messages import (
    ContentBlock,
    ModelRequest,
    ModelResponse,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    block_to_wire,
    input_token_ceiling,
)
from trunkline.errors import ConfigurationError, TerminalError


class ScriptError(TerminalError):
    """The script does not fit the run: exhausted, out of step, or a malformed tool call."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScriptText(_Strict):
    type: Literal["text"]
    text: str


class ScriptToolUse(_Strict):
    type: Literal["tool_use"]
    name: str
    input: dict[str, Any]
    id: str | None = None


class ScriptUsage(_Strict):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)


class ScriptExpect(_Strict):
    role: str | None = None
    tools_include: list[str] = Field(default_factory=list)
    last_user_contains: list[str] = Field(default_factory=list)


class ScriptResponse(_Strict):
    content: list[ScriptText | ScriptToolUse] = Field(min_length=1)
    stop_reason: StopReason | None = None
    usage: ScriptUsage | None = None
    expect: ScriptExpect | None = None


class Script(_Strict):
    responses: list[ScriptResponse]


def parse_script(text: str, *, source: str = "<script>") -> Script:
    try:
        data = yaml.safe_load(text)
        return Script.model_validate(data)
    except (yaml.YAMLError, ValidationError) as error:
        raise ConfigurationError(f"invalid agent script {source}: {error}") from None


def load_script(path: Path) -> Script:
    return parse_script(path.read_text(encoding="utf-8"), source=str(path))


def _last_user_text(request: ModelRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return json.dumps([block_to_wire(b) for b in message.content], ensure_ascii=False)
    return ""


_MATCH = re.compile(r"^\{\{\s*match:\s*(.+?)\s*\}\}$", re.DOTALL)


def _user_texts(request: ModelRequest) -> list[str]:
    """The text of every user message, newest first."""
    texts = []
    for message in reversed(request.messages):
        if message.role == "user":
            for block in message.content:
                if isinstance(block, TextBlock):
                    texts.append(block.text)
                elif isinstance(block, ToolResultBlock):
                    texts.append(block.content)
    return texts


def _bind(value: Any, request: ModelRequest, where: str) -> Any:
    """Replace `{{match: REGEX}}` strings by the first group REGEX finds in the user turns.

    This lets a static script answer with values only known at run time (a commit SHA,
    a plan id) while staying deterministic.
    """
    if isinstance(value, dict):
        return {k: _bind(v, request, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, request, where) for v in value]
    if isinstance(value, str) and (template := _MATCH.match(value)):
        pattern = re.compile(template.group(1))
        for text in _user_texts(request):
            if found := pattern.search(text):
                return found.group(1) if pattern.groups else found.group(0)
        raise ScriptError(f"{where}: {template.group(1)!r} matches nothing in the user turns")
    return value


@dataclass
class ScriptedProvider:
    script: Script
    requests: list[ModelRequest] = field(default_factory=list)
    _position: int = 0

    @classmethod
    def of(cls, responses: list[dict[str, Any]]) -> ScriptedProvider:
        return cls(Script.model_validate({"responses": responses}))

    @property
    def remaining(self) -> int:
        return len(self.script.responses) - self._position

    def max_call_seconds(self) -> float:
        return 0.0

    def complete(self, request: ModelRequest) -> ModelResponse:
        index = self._position
        if index >= len(self.script.responses):
            raise ScriptError(
                f"the script ran out: call {index + 1} ({request.purpose or 'unknown role'}) "
                f"has no scripted response ({len(self.script.responses)} in the script)"
            )
        entry = self.script.responses[index]
        self._check_expectations(index, entry, request)
        offered = {tool.name for tool in request.tools}
        blocks: list[ContentBlock] = []
        for number, block in enumerate(entry.content):
            if isinstance(block, ScriptText):
                blocks.append(TextBlock(block.text))
                continue
            if block.name not in offered:
                raise ScriptError(
                    f"script response {index + 1}: tool_use {block.name!r} is not among the "
                    f"tools offered to {request.purpose or 'this call'}: {sorted(offered)}"
                )
            tool_input = _bind(block.input, request, f"script response {index + 1}")
            blocks.append(
                ToolUseBlock(
                    block.id or f"toolu_script_{index + 1}_{number}", block.name, tool_input
                )
            )
        self.requests.append(request)
        self._position += 1
        has_tools = any(isinstance(b, ToolUseBlock) for b in blocks)
        stop = entry.stop_reason or (StopReason.TOOL_USE if has_tools else StopReason.END_TURN)
        return ModelResponse(
            id=f"msg_script_{index + 1}",
            model=request.model,
            content=tuple(blocks),
            stop_reason=stop,
            usage=self._usage(entry, request, blocks),
        )

    def _check_expectations(self, index: int, entry: ScriptResponse, request: ModelRequest) -> None:
        expect = entry.expect
        if expect is None:
            return
        where = f"script response {index + 1}"
        if expect.role is not None and expect.role != request.purpose:
            raise ScriptError(f"{where} expects role {expect.role!r}, got {request.purpose!r}")
        offered = {tool.name for tool in request.tools}
        missing = [t for t in expect.tools_include if t not in offered]
        if missing:
            raise ScriptError(f"{where} expects tools {missing} to be offered")
        last = _last_user_text(request)
        for needle in expect.last_user_contains:
            if needle not in last:
                raise ScriptError(f"{where} expects the last user message to contain {needle!r}")

    @staticmethod
    def _usage(entry: ScriptResponse, request: ModelRequest, blocks: list[ContentBlock]) -> Usage:
        if entry.usage is not None:
            return Usage(**entry.usage.model_dump())
        output = json.dumps([block_to_wire(b) for b in blocks], ensure_ascii=False)
        return Usage(
            input_tokens=max(1, input_token_ceiling(request) // 4),
            output_tokens=max(1, len(output.encode("utf-8")) // 4),
        )
