"""The Messages API shape, as frozen dataclasses, and the `Provider` port.

Pure; performs no I/O. A provider turns a `ModelRequest` (system prompt, messages, tools,
max_tokens) into a `ModelResponse` (content blocks, stop_reason, usage including the prompt
cache counters). Adapters (`anthropic_provider`, `scripted_provider`) convert at the edge;
everything inside trunkline speaks these types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from trunkline.errors import RetryableError, TerminalError


class StopReason(StrEnum):
    END_TURN = "end_turn"
    TOOL_USE = "tool_use"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    PAUSE_TURN = "pause_turn"
    REFUSAL = "refusal"


@dataclass(frozen=True)
class TextBlock:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ToolUseBlock:
    id: str
    name: str
    input: Mapping[str, Any]
    type: Literal["tool_use"] = "tool_use"


@dataclass(frozen=True)
class ToolResultBlock:
    tool_use_id: str
    content: str
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"


ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    content: tuple[ContentBlock, ...]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: Mapping[str, Any]


@dataclass(frozen=True)
class ModelRequest:
    """One call. `purpose` names the role making it; it is never sent to the API."""

    model: str
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    max_tokens: int
    purpose: str = ""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


@dataclass(frozen=True)
class ModelResponse:
    id: str
    model: str
    content: tuple[ContentBlock, ...]
    stop_reason: StopReason
    usage: Usage = field(default_factory=Usage)

    @property
    def tool_uses(self) -> tuple[ToolUseBlock, ...]:
        return tuple(block for block in self.content if isinstance(block, ToolUseBlock))

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))


class ProviderUnavailableError(RetryableError):
    """The model API could not answer (after the client's own retries)."""


class ProviderRejectedError(TerminalError):
    """The model API refused the request (bad request, auth, permissions)."""


class Provider(Protocol):
    """A model behind the Messages API shape."""

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Make one call. Raises `ProviderUnavailableError` or `ProviderRejectedError`."""
        ...

    def max_call_seconds(self) -> float:
        """The longest one `complete` may take (timeouts x attempts), for the wall budget."""
        ...


def block_to_wire(block: ContentBlock) -> dict[str, Any]:
    """The JSON the Messages API expects for one block."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}
    return {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "content": block.content,
        "is_error": block.is_error,
    }


def request_to_wire(request: ModelRequest) -> dict[str, Any]:
    """The request as Messages API JSON (without cache markers), for digests and estimates."""
    return {
        "model": request.model,
        "system": request.system,
        "max_tokens": request.max_tokens,
        "tools": [
            {"name": t.name, "description": t.description, "input_schema": dict(t.input_schema)}
            for t in request.tools
        ],
        "messages": [
            {"role": m.role, "content": [block_to_wire(b) for b in m.content]}
            for m in request.messages
        ],
    }


# Per-block framing the API adds around content; generous on purpose.
_OVERHEAD_TOKENS = 64


def input_token_ceiling(request: ModelRequest) -> int:
    """An upper bound on the input tokens of `request`.

    A token is never shorter than one byte of UTF-8, so the byte length of the request's
    JSON (plus a fixed overhead per message and tool) bounds the count from above. It is
    deliberately pessimistic: budgets use it to make sure a call can never cross a cap.
    """
    body = json.dumps(request_to_wire(request), ensure_ascii=False, separators=(",", ":"))
    blocks = sum(len(m.content) for m in request.messages) + len(request.tools) + 1
    return len(body.encode("utf-8")) + _OVERHEAD_TOKENS * blocks


def prompt_digest(request: ModelRequest) -> str:
    """A stable SHA-256 of the request as sent (for the timeline)."""
    body = json.dumps(request_to_wire(request), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
