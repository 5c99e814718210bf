"""Turns store records into the timeline a person reads: entries, links, plan and review.

Pure; performs no I/O. One entry per timeline event (transition, check result, gate, human
action, escalation, anything else) and per agent step (role, model, tool calls with capped
results, verdict, tokens, cost, duration), in time order. Links point at the forge's web UI
(`settings.github_web_url`). The same entries feed the HTML page, the live feed (as JSON) and
`trunkline timeline`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from trunkline.web.records import AgentStepRecord, TimelineEventRecord, WorkItemDetail

RESULT_CAP = 2000
ARGUMENTS_CAP = 1000
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_SHA_KEYS = ("sha", "head_sha", "integration_sha", "commit", "base_sha")


class Category(StrEnum):
    TRANSITION = "transition"
    AGENT_STEP = "agent_step"
    CHECK = "check"
    GATE = "gate"
    HUMAN = "human"
    ESCALATION = "escalation"
    PLAN = "plan"
    REVIEW = "review"
    EVENT = "event"


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class ToolCallView:
    name: str
    arguments: str
    result: str
    is_error: bool
    refused: bool
    truncated: bool


@dataclass(frozen=True)
class Entry:
    key: str
    at: datetime
    category: Category
    title: str
    message: str
    facts: tuple[tuple[str, str], ...]
    links: tuple[Link, ...] = ()
    tool_calls: tuple[ToolCallView, ...] = ()
    work_item_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "at": self.at.isoformat(),
            "category": self.category.value,
            "title": self.title,
            "message": self.message,
            "facts": [list(fact) for fact in self.facts],
            "links": [{"label": link.label, "url": link.url} for link in self.links],
            "tool_calls": [
                {
                    "name": call.name,
                    "arguments": call.arguments,
                    "result": call.result,
                    "is_error": call.is_error,
                    "refused": call.refused,
                    "truncated": call.truncated,
                }
                for call in self.tool_calls
            ],
            "work_item_id": self.work_item_id,
        }


@dataclass(frozen=True)
class Links:
    """GitHub-style web URLs of one repository."""

    web_base: str
    repo: str

    def _root(self) -> str:
        owner, _, name = self.repo.partition("/")
        return f"{self.web_base.rstrip('/')}/{quote(owner, safe='')}/{quote(name, safe='')}"

    def issue(self, number: int) -> str:
        return f"{self._root()}/issues/{int(number)}"

    def pull(self, number: int) -> str:
        return f"{self._root()}/pull/{int(number)}"

    def commit(self, sha: str) -> str:
        return f"{self._root()}/commit/{quote(sha, safe='')}"


def cap(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to `limit` characters (with a marker) and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return f"{text[:limit]}… [{len(text) - limit} more characters]", True


def categorize(event: TimelineEventRecord) -> Category:
    kind = event.kind.lower()
    if "escalat" in kind or event.to_state == "escalated":
        return Category.ESCALATION
    if kind.startswith("check"):
        return Category.CHECK
    if kind.startswith("gate"):
        return Category.GATE
    if kind.startswith(("human", "approval", "command", "takeover")):
        return Category.HUMAN
    if kind.startswith("agent_"):
        return Category.AGENT_STEP
    if kind.startswith("plan"):
        return Category.PLAN
    if kind.startswith("review"):
        return Category.REVIEW
    if kind == "transition" or event.to_state is not None:
        return Category.TRANSITION
    return Category.EVENT


def _scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def _event_title(event: TimelineEventRecord, category: Category) -> str:
    if category is Category.TRANSITION:
        return f"{event.from_state or '(new)'} → {event.to_state}"
    data = event.data
    if category is Category.CHECK:
        name = data.get("name", "check")
        outcome = data.get("conclusion") or data.get("status") or ""
        return f"check {name}: {outcome}".rstrip(": ")
    if category is Category.GATE:
        gate = data.get("gate", "gate")
        state = data.get("state") or ("passed" if data.get("passed") else "held")
        return f"gate {gate}: {state}"
    if category is Category.HUMAN:
        who = data.get("user") or data.get("actor") or "someone"
        return f"{who}: {data.get('action') or event.kind}"
    if category is Category.ESCALATION:
        return f"escalated: {data.get('reason') or event.message or 'needs a human'}"
    return event.kind.replace("_", " ")


def event_entry(event: TimelineEventRecord, links: Links | None) -> Entry:
    category = categorize(event)
    facts = tuple(
        (str(key), cap(_scalar(value), RESULT_CAP)[0])
        for key, value in sorted(event.data.items())
        if key not in ("plan", "review")
    )
    entry_links: list[Link] = []
    if links is not None:
        for key in _SHA_KEYS:
            value = event.data.get(key)
            if isinstance(value, str) and _SHA.match(value):
                entry_links.append(Link(f"{key} {value[:10]}", links.commit(value)))
        pr = event.data.get("pr_number") or event.data.get("pr")
        if isinstance(pr, int):
            entry_links.append(Link(f"PR #{pr}", links.pull(pr)))
    return Entry(
        key=f"e{event.id}",
        at=event.created_at,
        category=category,
        title=_event_title(event, category),
        message=event.message,
        facts=facts,
        links=tuple(entry_links),
        work_item_id=event.work_item_id,
    )


def _tool_call(raw: object) -> ToolCallView:
    if not isinstance(raw, dict):
        text, cut = cap(_scalar(raw), RESULT_CAP)
        return ToolCallView("?", "", text, False, False, cut)
    arguments = raw.get("arguments", raw.get("input", ""))
    arguments_text, _ = cap(_scalar(arguments), ARGUMENTS_CAP)
    result = raw.get("result", "")
    if raw.get("refused") and raw.get("refusal_reason"):
        result = f"refused: {raw['refusal_reason']}"
    result_text, cut = cap(_scalar(result), RESULT_CAP)
    return ToolCallView(
        name=str(raw.get("name", "?")),
        arguments=arguments_text,
        result=result_text,
        is_error=bool(raw.get("is_error")),
        refused=bool(raw.get("refused")),
        truncated=cut,
    )


def step_entry(step: AgentStepRecord) -> Entry:
    facts: list[tuple[str, str]] = [
        ("role", step.role),
        ("model", step.model),
        ("tokens", f"{step.input_tokens} in / {step.output_tokens} out"),
        ("cost", f"${step.cost_usd:.4f}"),
        ("duration", f"{step.duration_ms / 1000:.1f} s"),
    ]
    if step.stop_reason:
        facts.append(("stop", step.stop_reason))
    if step.verdict:
        facts.append(("verdict", step.verdict))
    title = f"{step.role} step {step.seq} ({step.model})"
    if step.verdict:
        title += f": {step.verdict}"
    return Entry(
        key=f"s{step.id}",
        at=step.created_at,
        category=Category.AGENT_STEP,
        title=title,
        message="",
        facts=tuple(facts),
        tool_calls=tuple(_tool_call(call) for call in step.tool_calls),
        work_item_id=step.work_item_id,
    )


def build_entries(
    events: tuple[TimelineEventRecord, ...],
    steps: tuple[AgentStepRecord, ...],
    links: Links | None,
) -> list[Entry]:
    """Every event and step as an entry, oldest first (ties: events before steps, by id)."""
    entries = [event_entry(e, links) for e in events] + [step_entry(s) for s in steps]
    return sorted(entries, key=lambda e: (e.at, e.key[0] == "s", int(e.key[1:])))


def latest_document(detail: WorkItemDetail, name: str) -> dict[str, Any] | None:
    """The work item's plan or latest review: `data[name]`, else the newest event carrying it."""
    stored = detail.item.data.get(name)
    if isinstance(stored, dict):
        return stored
    for event in reversed(detail.events):
        value = event.data.get(name)
        if isinstance(value, dict):
            return value
    return None


def item_links(detail: WorkItemDetail, web_base: str) -> tuple[Link, ...]:
    """Links to the issue, the pull request and the head commit of a work item."""
    links = Links(web_base, detail.item.repo)
    found = [Link(f"issue #{detail.item.issue_number}", links.issue(detail.item.issue_number))]
    if detail.item.pr_number is not None:
        found.append(Link(f"PR #{detail.item.pr_number}", links.pull(detail.item.pr_number)))
    if detail.item.head_sha:
        found.append(Link(f"head {detail.item.head_sha[:10]}", links.commit(detail.item.head_sha)))
    return tuple(found)


def spend_of(detail: WorkItemDetail) -> tuple[int, int, float]:
    """Input tokens, output tokens and USD of all of a work item's agent runs."""
    if detail.steps:
        return (
            sum(s.input_tokens for s in detail.steps),
            sum(s.output_tokens for s in detail.steps),
            sum(s.cost_usd for s in detail.steps),
        )
    return (
        sum(r.input_tokens for r in detail.runs),
        sum(r.output_tokens for r in detail.runs),
        sum(r.cost_usd for r in detail.runs),
    )
