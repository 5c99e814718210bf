"""Scripted agents for many concurrent work items: a Messages API that plays every role.

Performs network I/O (a loopback uvicorn server in a thread, through `MessagesServer`).
The scripted provider replays one linear script, so it cannot serve several items at once
or several bot processes; this server instead answers each request from the request alone
(the role's system prompt, the turn number, the work item's text), so any number of
`trunkline serve` / `trunkline worker` processes can use it at once through the real
anthropic provider (`TRUNKLINE_ANTHROPIC_BASE_URL`, `TRUNKLINE_ANTHROPIC_API_KEY`).

The roles it plays, for an issue whose body names its file as `trunkline-target: PATH`:
- planner: `submit_plan` touching exactly PATH;
- plan reviewer: approves the plan id it is asked about;
- executor: writes PATH (first turn), then `submit_report`;
- reviewer: approves the commit SHA it is asked about.
Used by `trunkline bench dispatch` and the multi-replica tests.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import Counter
from typing import Any

from trunkline.agents.messages_server import (
    CannedReply,
    MessagesServer,
    error_reply,
    message_reply,
    tool_use_block,
    validate_request,
)

TARGET = re.compile(r"trunkline-target: ([A-Za-z0-9_./-]+)")
ITEM = re.compile(r"Work item ([^\s#]+#\d+)\.")
PLAN_ID = re.compile(r"Review plan (plan-[0-9a-f]{16})")
HEAD_SHA = re.compile(r"Review commit ([0-9a-f]{40})")
ROLES = (
    ("plan_reviewer", "You are the plan reviewer"),
    ("reviewer", "You are the code reviewer"),
    ("planner", "You are the planner"),
    ("executor", "You are the executor"),
)
DEFAULT_API_KEY = "test-key"

_ids = itertools.count(1)


def issue_body(target: str, text: str = "Add the file for this issue.") -> str:
    """An issue body the role-playing agents work on: they create `target`."""
    return f"{text}\n\ntrunkline-target: {target}\n"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_text_of(block.get("content")))
    return "\n".join(parts)


def role_of(body: dict[str, Any]) -> str | None:
    system = _text_of(body.get("system"))
    for role, opening in ROLES:
        if opening in system:
            return role
    return None


def _find(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1) if found else None


def play(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | str:
    """The role and the content blocks of the next assistant turn, or what is wrong."""
    role = role_of(body)
    messages = body.get("messages") or []
    user_text = "\n".join(_text_of(m.get("content")) for m in messages if m.get("role") == "user")
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    item = _find(ITEM, user_text) or "the work item"
    target = _find(TARGET, user_text)
    if role is None:
        return "no trunkline role in the system prompt"
    if role == "planner":
        if target is None:
            return "the issue names no trunkline-target"
        plan = {
            "summary": f"Create {target} for {item}.",
            "steps": [f"Write {target}"],
            "paths": [target],
            "acceptance_criteria": [f"{target} exists"],
            "tests_to_run": [],
            "risk_notes": [],
        }
        return role, [tool_use_block("submit_plan", plan, _tool_id())]
    if role == "plan_reviewer":
        plan_id = _find(PLAN_ID, user_text)
        if plan_id is None:
            return "no plan id to review"
        review = {"subject": plan_id, "verdict": "approve", "summary": "The plan is sound."}
        return role, [tool_use_block("submit_review", review, _tool_id())]
    if role == "executor":
        if target is None:
            return "the plan names no trunkline-target"
        if turn == 0:
            content = f"Work done for {item}.\n"
            return role, [
                tool_use_block("write_file", {"path": target, "content": content}, _tool_id())
            ]
        report = {
            "summary": f"Created {target}.",
            "files_changed": [target],
            "commands_run": [],
            "open_questions": [],
        }
        return role, [tool_use_block("submit_report", report, _tool_id())]
    sha = _find(HEAD_SHA, user_text)
    if sha is None:
        return "no commit SHA to review"
    review = {"subject": sha, "verdict": "approve", "summary": "Correct and in scope."}
    return role, [tool_use_block("submit_review", review, _tool_id())]


def _tool_id() -> str:
    return f"toolu_role_play_{next(_ids)}"


class RolePlayingMessagesServer(MessagesServer):
    """`MessagesServer` (auth and request validation as the real API) answering by role.

    `calls` counts the answered requests per role.
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__(api_key)
        self.calls: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _answer(self, headers: dict[str, str], body: Any) -> CannedReply:
        presented = {headers.get("x-api-key"), headers.get("authorization")}
        if not presented & {self.api_key, f"Bearer {self.api_key}"}:
            return error_reply(401, "authentication_error", "invalid API key")
        problem = validate_request(body)
        if problem is not None:
            return error_reply(400, "invalid_request_error", problem)
        played = play(body)
        if isinstance(played, str):
            return error_reply(400, "invalid_request_error", f"role play: {played}")
        role, content = played
        offered = {tool.get("name") for tool in body.get("tools") or []}
        for block in content:
            if block["name"] not in offered:
                message = f"role play: {block['name']} is not offered to the {role}"
                return error_reply(400, "invalid_request_error", message)
        with self._count_lock:
            self.calls[role] += 1
        return message_reply(content, model=str(body.get("model")), input_tokens=200)
