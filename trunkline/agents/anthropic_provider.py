"""The `anthropic` provider: the official SDK, talking to the Messages API.

Performs network I/O through `anthropic.Anthropic`. The SDK retries 408/409/429/5xx and
529 overloaded itself (`max_retries`, honouring `retry-after`) and applies `timeout` per
attempt; what still fails becomes `ProviderUnavailableError` (retryable) or
`ProviderRejectedError` (terminal). The stable prefix (tools + system prompt) is marked
with `cache_control` so repeated turns read it from the prompt cache, and the newest user
turn is marked too, so a growing conversation caches incrementally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic

from trunkline.agents.messages import (
    ContentBlock,
    ModelRequest,
    ModelResponse,
    ProviderRejectedError,
    ProviderUnavailableError,
    StopReason,
    TextBlock,
    ToolUseBlock,
    Usage,
    block_to_wire,
)

_EPHEMERAL = {"type": "ephemeral"}
_MAX_BACKOFF_SECONDS = 8.0  # the SDK's ceiling between attempts


def wire_request(request: ModelRequest) -> dict[str, Any]:
    """Keyword arguments for `messages.create`, with prompt-cache breakpoints."""
    tools = [
        {"name": t.name, "description": t.description, "input_schema": dict(t.input_schema)}
        for t in request.tools
    ]
    messages: list[dict[str, Any]] = [
        {"role": m.role, "content": [block_to_wire(b) for b in m.content]} for m in request.messages
    ]
    if messages and messages[-1]["role"] == "user" and messages[-1]["content"]:
        messages[-1]["content"][-1]["cache_control"] = _EPHEMERAL
    return {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "system": [{"type": "text", "text": request.system, "cache_control": _EPHEMERAL}],
        "tools": tools,
        "messages": messages,
    }


def _block(raw: Any) -> ContentBlock | None:
    kind = getattr(raw, "type", None)
    if kind == "text":
        return TextBlock(str(raw.text))
    if kind == "tool_use":
        data = raw.input if isinstance(raw.input, dict) else {"_malformed_input": raw.input}
        return ToolUseBlock(str(raw.id), str(raw.name), data)
    return None  # thinking and other block kinds are not part of the handoff


def _stop_reason(value: str | None) -> StopReason:
    try:
        return StopReason(value or "end_turn")
    except ValueError:
        return StopReason.REFUSAL


@dataclass
class AnthropicProvider:
    client: anthropic.Anthropic

    @classmethod
    def create(
        cls, *, api_key: str, base_url: str | None, max_retries: int, timeout: float
    ) -> AnthropicProvider:
        return cls(
            anthropic.Anthropic(
                api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
            )
        )

    def max_call_seconds(self) -> float:
        attempts = self.client.max_retries + 1
        timeout = self.client.timeout
        per_attempt = float(timeout) if isinstance(timeout, int | float) else 600.0
        return attempts * per_attempt + self.client.max_retries * _MAX_BACKOFF_SECONDS

    def complete(self, request: ModelRequest) -> ModelResponse:
        try:
            raw = self.client.messages.create(**wire_request(request))
        except (anthropic.APIConnectionError, anthropic.APITimeoutError) as error:
            raise ProviderUnavailableError(f"model API unreachable: {error}") from None
        except anthropic.APIStatusError as error:
            message = f"model API answered {error.status_code}: {error.message}"
            if error.status_code in (408, 409, 429) or error.status_code >= 500:
                raise ProviderUnavailableError(message) from None
            raise ProviderRejectedError(message) from None
        blocks = tuple(b for b in (_block(c) for c in raw.content) if b is not None)
        usage = raw.usage
        return ModelResponse(
            id=raw.id,
            model=raw.model,
            content=blocks,
            stop_reason=_stop_reason(raw.stop_reason),
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            ),
        )
