"""The demo's scripted agents, served over the Messages API on loopback.

`answer(body)` is pure: a Messages API request body in, the response body out. The answer is
a function of the conversation alone (the role from the system prompt, the work item from the
first user message, the turn from the number of assistant messages, the reviewer's verdict
from the diff it is shown, the exit code from the last tool result), so a bot killed in the
middle of a run and restarted gets the same answers again: the script survives restarts,
and several items can be worked on at once in any order.

`ScriptedMessagesServer` (stdlib `ThreadingHTTPServer` in a thread, 127.0.0.1) is the only
I/O. The bot runs its production anthropic provider against it (`TRUNKLINE_ANTHROPIC_BASE_URL`).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from trunkline.demo.scenario import BY_NUMBER, TEST_COMMAND, AgentScript, Issue

API_KEY = "demo-scripted-agents"

_ROLES = (
    ("You are the planner", "planner"),
    ("You are the plan reviewer", "plan_reviewer"),
    ("You are the executor", "executor"),
    ("You are the code reviewer", "reviewer"),
)
_ITEM = re.compile(r"Work item [^\s#]+#(\d+)\.")
_PLAN = re.compile(r"Review plan (plan-[0-9a-f]+)")
_COMMIT = re.compile(r"Review commit ([0-9a-f]{40})")
_EXIT = re.compile(r"exit code (-?\d+)")
_REWORK = "The reviewer requested changes"


class ScriptMismatchError(ValueError):
    """The request does not fit the demo's script (an unknown role or work item)."""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_text_of(block.get("content", "")))
    return "\n".join(parts)


def _system_text(body: dict[str, Any]) -> str:
    return _text_of(body.get("system", ""))


def role_of(body: dict[str, Any]) -> str:
    system = _system_text(body)
    for prefix, role in _ROLES:
        if system.startswith(prefix):
            return role
    raise ScriptMismatchError(f"unknown role: {system[:60]!r}")


def _first_user(body: dict[str, Any]) -> str:
    for message in body.get("messages", ()):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", ())):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def issue_of(body: dict[str, Any]) -> Issue:
    found = _ITEM.search(_first_user(body))
    if found is None or int(found.group(1)) not in BY_NUMBER:
        raise ScriptMismatchError("the first user message names no work item of the demo")
    return BY_NUMBER[int(found.group(1))]


def _turn(body: dict[str, Any]) -> int:
    return sum(1 for message in body.get("messages", ()) if message.get("role") == "assistant")


def _tool(name: str, arguments: dict[str, Any], turn: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_demo_{turn}_{name}", "name": name, "input": arguments}


def _must(pattern: re.Pattern[str], text: str, what: str) -> str:
    found = pattern.search(text)
    if found is None:
        raise ScriptMismatchError(f"no {what} in the request")
    return found.group(1)


def _planner(issue: Issue, turn: int) -> dict[str, Any]:
    script = issue.agents
    return _tool(
        "submit_plan",
        {
            "summary": script.summary,
            "steps": [f"Change {path}" for path in script.paths] + ["Run the unit tests"],
            "paths": list(script.paths),
            "acceptance_criteria": [issue.title],
            "tests_to_run": [TEST_COMMAND],
            "risk_notes": [],
        },
        turn,
    )


def _executor(body: dict[str, Any], issue: Issue, turn: int) -> dict[str, Any]:
    script: AgentScript = issue.agents
    if script.tokens_per_turn:  # the runaway: reads forever, never submits
        return _tool("read_file", {"path": script.paths[0]}, turn)
    rework = _REWORK in _first_user(body)
    writes = script.rework if rework and script.rework else script.writes
    if turn < len(writes):
        path, content = writes[turn]
        return _tool("write_file", {"path": path, "content": content}, turn)
    if turn == len(writes):
        return _tool("run_command", {"command": TEST_COMMAND}, turn)
    exit_code = int(_must(_EXIT, _last_user(body), "exit code"))
    return _tool(
        "submit_report",
        {
            "summary": script.summary,
            "files_changed": sorted({path for path, _ in writes}),
            "commands_run": [{"command": TEST_COMMAND, "exit_code": exit_code}],
            "open_questions": [],
        },
        turn,
    )


def _reviewer(body: dict[str, Any], issue: Issue, turn: int) -> dict[str, Any]:
    script = issue.agents
    first = _first_user(body)
    sha = _must(_COMMIT, first, "commit to review")
    if script.review_needs and script.review_needs not in first and script.review_finding:
        finding = script.review_finding
        return _tool(
            "submit_review",
            {
                "subject": sha,
                "verdict": "request_changes",
                "summary": "The fix is right but untested.",
                "findings": [
                    {
                        "path": finding.path,
                        "line": finding.line,
                        "severity": finding.severity,
                        "message": finding.message,
                    }
                ],
            },
            turn,
        )
    return _tool(
        "submit_review",
        {"subject": sha, "verdict": "approve", "summary": "Does what the issue asks; tested."},
        turn,
    )


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted assistant message for a Messages API request body."""
    role = role_of(body)
    issue = issue_of(body)
    turn = _turn(body)
    if role == "planner":
        block = _planner(issue, turn)
    elif role == "plan_reviewer":
        plan_id = _must(_PLAN, _first_user(body), "plan id")
        block = _tool(
            "submit_review",
            {"subject": plan_id, "verdict": "approve", "summary": "The plan is sound."},
            turn,
        )
    elif role == "executor":
        block = _executor(body, issue, turn)
    else:
        block = _reviewer(body, issue, turn)
    content = [block]
    if role == "executor" and issue.agents.tokens_per_turn:
        input_tokens = issue.agents.tokens_per_turn
    else:
        input_tokens = max(1, len(json.dumps(body)) // 4)
    return {
        "id": f"msg_demo_{issue.number}_{role}_{turn}",
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "")),
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": max(1, len(json.dumps(content)) // 4),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


class ScriptedMessagesServer:
    """`POST /v1/messages` answered by `answer`, on 127.0.0.1 in a background thread."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.calls = 0
        self.errors: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                keys = {self.headers.get("x-api-key"), self.headers.get("authorization")}
                if not keys & {api_key, f"Bearer {api_key}"}:
                    self._reply(401, _error("authentication_error", "invalid API key"))
                    return
                try:
                    reply = answer(json.loads(raw))
                except (ScriptMismatchError, ValueError, KeyError) as error:
                    outer.errors.append(str(error))
                    self._reply(400, _error("invalid_request_error", str(error)))
                    return
                outer.calls += 1
                self._reply(200, reply)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-agents", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ScriptedMessagesServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}
