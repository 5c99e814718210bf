"""A local server that speaks the Messages API, for tests and offline demos.

Performs network I/O (uvicorn on 127.0.0.1, in a background thread). It answers
`POST /v1/messages` from a queue of canned replies (messages, errors such as 529
overloaded, `max_tokens` stops, malformed tool input), validates each request the way the
real API does (API key, model, max_tokens, alternating roles, every tool_use answered by a
tool_result in the next user turn) and records every request, so tests can run the real
`anthropic` SDK against it without patching anything.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass(frozen=True)
class CannedReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


_ids = itertools.count(1)


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(name: str, tool_input: Any, tool_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": tool_id or f"toolu_local_{next(_ids)}",
        "name": name,
        "input": tool_input,
    }


def message_reply(
    content: list[dict[str, Any]],
    *,
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    model: str = "claude-test",
) -> CannedReply:
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return CannedReply(
        200,
        {
            "id": f"msg_local_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": cache_creation_input_tokens,
                "cache_read_input_tokens": cache_read_input_tokens,
            },
        },
    )


def error_reply(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> CannedReply:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return CannedReply(status, body, headers or {})


def overloaded_reply(retry_after_ms: int = 20) -> CannedReply:
    """HTTP 529, as the API sends when overloaded; `retry-after-ms` keeps tests fast."""
    return error_reply(
        529, "overloaded_error", "Overloaded", {"retry-after-ms": str(retry_after_ms)}
    )


def _invalid(message: str) -> CannedReply:
    return error_reply(400, "invalid_request_error", message)


def validate_request(body: Any) -> str | None:
    """What the real API would reject in `body`, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    expected = "user"
    pending: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != expected:
            return f"messages.{index}: roles must alternate, starting with user"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{index}.content: must be a non-empty list"
        answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if expected == "user" and pending - answered:
            return (
                f"messages.{index}: tool_use ids were found without tool_result blocks "
                f"immediately after: {sorted(pending - answered)}"
            )
        pending = {str(b.get("id")) for b in blocks if b.get("type") == "tool_use"}
        expected = "assistant" if expected == "user" else "user"
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or "name" not in tool or "input_schema" not in tool:
            return "tools: every tool needs a name and an input_schema"
    return None


class MessagesServer:
    """The Messages API on loopback. Use as a context manager; `url` is the base_url."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.replies: deque[CannedReply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def enqueue(self, *replies: CannedReply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/messages")
        async def messages(request: Request) -> JSONResponse:
            reply = self._answer(dict(request.headers), await request.json())
            return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

        return app

    def _answer(self, headers: dict[str, str], body: Any) -> CannedReply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            presented = {headers.get("x-api-key"), headers.get("authorization")}
            if not presented & {self.api_key, f"Bearer {self.api_key}"}:
                return error_reply(401, "authentication_error", "invalid API key")
            problem = validate_request(body)
            if problem is not None:
                return _invalid(problem)
            if not self.replies:
                return _invalid("the local Messages server has no reply queued for this call")
            return self.replies.popleft()

    def __enter__(self) -> MessagesServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("the local Messages server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
