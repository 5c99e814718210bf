"""Pure timeline building: categories, capped tool results, links, ordering, plan/review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.web.records import (
    AgentStepRecord,
    TimelineEventRecord,
    WorkItemDetail,
    WorkItemRecord,
)
from trunkline.web.timeline import (
    RESULT_CAP,
    Category,
    Links,
    build_entries,
    cap,
    categorize,
    event_entry,
    item_links,
    latest_document,
    spend_of,
    step_entry,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(
    id_: int = 1,
    kind: str = "transition",
    *,
    to_state: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime = T0,
    message: str = "",
) -> TimelineEventRecord:
    return TimelineEventRecord(
        id=id_,
        work_item_id=7,
        repo="acme/api",
        kind=kind,
        from_state=None,
        to_state=to_state,
        message=message,
        data=data or {},
        created_at=at,
    )


def step(
    id_: int = 1, *, at: datetime = T0, tool_calls: list[Any] | None = None
) -> AgentStepRecord:
    return AgentStepRecord(
        id=id_,
        run_id=1,
        work_item_id=7,
        seq=id_,
        role="executor",
        model="m",
        tool_calls=tool_calls or [],
        verdict=None,
        stop_reason="tool_use",
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.25,
        duration_ms=2500,
        created_at=at,
    )


def item(data: dict[str, Any] | None = None, **extra: Any) -> WorkItemRecord:
    values: dict[str, Any] = {
        "id": 7,
        "repo": "acme/api",
        "issue_number": 12,
        "title": "t",
        "state": "reviewing",
        "branch": None,
        "pr_number": None,
        "head_sha": None,
        "priority": 0,
        "data": data or {},
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(extra)
    return WorkItemRecord(**values)


@pytest.mark.parametrize(
    ("kind", "to_state", "expected"),
    [
        ("transition", "planning", Category.TRANSITION),
        ("state_changed", "executing", Category.TRANSITION),
        ("transition", "escalated", Category.ESCALATION),
        ("escalation", None, Category.ESCALATION),
        ("check_completed", None, Category.CHECK),
        ("gate", None, Category.GATE),
        ("human", None, Category.HUMAN),
        ("approval", None, Category.HUMAN),
        ("command", None, Category.HUMAN),
        ("plan", None, Category.PLAN),
        ("review_recorded", None, Category.REVIEW),
        ("agent_run_finished", None, Category.AGENT_STEP),
        ("lock_acquired", None, Category.EVENT),
    ],
)
def test_categories(kind: str, to_state: str | None, expected: Category) -> None:
    assert categorize(event(kind=kind, to_state=to_state)) is expected


def test_titles_say_what_happened() -> None:
    assert event_entry(event(to_state="planning"), None).title == "(new) → planning"
    check = event(kind="check", data={"name": "ci", "conclusion": "failure"})
    assert event_entry(check, None).title == "check ci: failure"
    gate = event(kind="gate", data={"gate": "approval", "passed": False})
    assert event_entry(gate, None).title == "gate approval: held"
    human = event(kind="human", data={"user": "alice", "action": "approve"})
    assert event_entry(human, None).title == "alice: approve"
    escalation = event(kind="escalation", data={"reason": "budget"})
    assert event_entry(escalation, None).title == "escalated: budget"


def test_event_links_to_commits_and_pull_requests() -> None:
    sha = "ab" * 20
    entry = event_entry(
        event(kind="check", data={"sha": sha, "pr_number": 4, "head_sha": "not a sha"}),
        Links("https://github.example/", "acme/api"),
    )
    urls = [link.url for link in entry.links]
    assert urls == [
        f"https://github.example/acme/api/commit/{sha}",
        "https://github.example/acme/api/pull/4",
    ]


def test_links_quote_path_segments() -> None:
    links = Links("https://github.com", "we ird/re?po")
    assert links.issue(3) == "https://github.com/we%20ird/re%3Fpo/issues/3"


def test_tool_results_are_capped_and_refusals_shown() -> None:
    long = "x" * (RESULT_CAP * 3)
    entry = step_entry(
        step(
            tool_calls=[
                {"name": "read_file", "arguments": '{"path": "a"}', "result": long},
                {
                    "name": "run_command",
                    "arguments": "{}",
                    "result": "",
                    "refused": True,
                    "refusal_reason": "not allowed",
                },
                "not a dict",
            ]
        )
    )
    read, refused, odd = entry.tool_calls
    assert read.truncated
    assert len(read.result) < RESULT_CAP + 100
    assert read.result.startswith("x" * RESULT_CAP)
    assert refused.refused
    assert refused.result == "refused: not allowed"
    assert odd.name == "?"
    facts = dict(entry.facts)
    assert facts["tokens"] == "10 in / 5 out"
    assert facts["cost"] == "$0.2500"
    assert facts["duration"] == "2.5 s"


@given(st.text(max_size=300), st.integers(min_value=1, max_value=200))
def test_cap_keeps_short_text_and_marks_cut_text(text: str, limit: int) -> None:
    shown, cut = cap(text, limit)
    assert cut == (len(text) > limit)
    if not cut:
        assert shown == text
    else:
        assert shown.startswith(text[:limit])
        assert "more characters" in shown


def test_entries_are_in_time_order_events_before_steps_on_ties() -> None:
    entries = build_entries(
        (event(2, at=T0 + timedelta(seconds=5)), event(1, at=T0)),
        (step(1, at=T0), step(2, at=T0 + timedelta(seconds=1))),
        None,
    )
    assert [e.key for e in entries] == ["e1", "s1", "s2", "e2"]


def test_plan_and_review_come_from_item_data_else_latest_event() -> None:
    plan = {"summary": "stored"}
    detail = WorkItemDetail(
        item=item({"plan": plan}),
        events=(
            event(1, kind="review", data={"review": {"verdict": "changes_requested"}}),
            event(2, kind="review", data={"review": {"verdict": "approve"}}),
        ),
        runs=(),
        steps=(),
    )
    assert latest_document(detail, "plan") == plan
    assert latest_document(detail, "review") == {"verdict": "approve"}
    empty = WorkItemDetail(item=item(), events=(), runs=(), steps=())
    assert latest_document(empty, "plan") is None


def test_item_links_and_spend() -> None:
    detail = WorkItemDetail(
        item=item(pr_number=40, head_sha="c" * 40),
        events=(),
        runs=(),
        steps=(step(1), step(2)),
    )
    assert [link.url for link in item_links(detail, "https://github.com")] == [
        "https://github.com/acme/api/issues/12",
        "https://github.com/acme/api/pull/40",
        "https://github.com/acme/api/commit/" + "c" * 40,
    ]
    assert spend_of(detail) == (20, 10, 0.5)
