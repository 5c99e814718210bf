"""Test support that ships with the package: a realistic store for the dashboard.

Performs I/O (writes rows into the given, already migrated database). Used by the web tests,
the Chromium tests and anyone who wants to look at the dashboard before the dispatch pipeline
has produced real work: `seed_store` writes work items in several states with timeline events
(transitions, checks, gates, human actions, an escalation, a plan and a review), agent runs
and steps with tool calls, merge queue entries with gates, locks and waiters, deliveries and
jobs - the shapes documented in docs/observability.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from trunkline.store.tables import (
    AgentRun,
    AgentStep,
    Approval,
    Delivery,
    Job,
    Lock,
    LockWaiter,
    QueueEntry,
    TimelineEvent,
    WorkItem,
)

HOSTILE_TITLE = 'Fix <script>alert("owned")</script> & "quotes" [/red]'
PLAN = {
    "summary": "Add input validation to the /orders endpoint.",
    "steps": ["Add a pydantic model for the body", "Return 422 on bad input", "Add tests"],
    "paths": ["src/api/orders.py", "tests/test_orders.py"],
    "acceptance_criteria": ["Bad bodies get 422", "pytest -q passes"],
}
REVIEW = {
    "verdict": "approve",
    "sha": "3f5e1c2a9b7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f",
    "summary": "Validation is complete and tested.",
    "comments": [{"path": "src/api/orders.py", "line": 12, "severity": "nit", "body": "Rename"}],
}


@dataclass(frozen=True)
class Seeded:
    """Ids of the rows `seed_store` wrote."""

    item_ids: dict[str, int]
    now: datetime


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _item(
    conn: Any, repo: str, number: int, state: str, title: str, now: datetime, **extra: Any
) -> int:
    values = {
        "repo_full_name": repo,
        "issue_number": number,
        "state": state,
        "title": title,
        "priority": 0,
        "data": {},
        "version": 1,
        "created_at": now - timedelta(hours=1),
        "updated_at": now - timedelta(minutes=number),
    }
    values.update(extra)
    return _new_id(conn.execute(insert(WorkItem).values(**values)))


def add_work_item(
    engine: Engine, repo: str, number: int, state: str, title: str, now: datetime
) -> int:
    """Insert one work item row; returns its id."""
    with engine.begin() as conn:
        return _item(conn, repo, number, state, title, now)


def add_event(
    engine: Engine,
    *,
    work_item_id: int | None,
    repo: str,
    kind: str,
    at: datetime,
    message: str = "",
    from_state: str | None = None,
    to_state: str | None = None,
    data: dict[str, Any] | None = None,
) -> int:
    """Insert one timeline row (what the dispatch pipeline will do); returns its id."""
    with engine.begin() as conn:
        result = conn.execute(
            insert(TimelineEvent).values(
                work_item_id=work_item_id,
                repo_full_name=repo,
                kind=kind,
                from_state=from_state,
                to_state=to_state,
                message=message,
                data=data or {},
                created_at=at,
            )
        )
        return _new_id(result)


def add_agent_run(
    engine: Engine,
    *,
    work_item_id: int,
    role: str,
    model: str,
    at: datetime,
    steps: list[dict[str, Any]],
    verdict: str | None = None,
) -> int:
    """Insert an agent run with its steps (each a dict of AgentStep columns to override)."""
    with engine.begin() as conn:
        totals = {
            "input_tokens": sum(int(s.get("input_tokens", 0)) for s in steps),
            "output_tokens": sum(int(s.get("output_tokens", 0)) for s in steps),
            "cost_usd": sum(float(s.get("cost_usd", 0.0)) for s in steps),
        }
        run_id = _new_id(
            conn.execute(
                insert(AgentRun).values(
                    work_item_id=work_item_id,
                    role=role,
                    model=model,
                    state="succeeded",
                    verdict=verdict,
                    started_at=at,
                    finished_at=at + timedelta(seconds=len(steps) * 3),
                    **totals,
                )
            )
        )
        for seq, step in enumerate(steps, start=1):
            values: dict[str, Any] = {
                "run_id": run_id,
                "seq": seq,
                "role": role,
                "model": model,
                "prompt_digest": f"sha256:{seq:064x}",
                "tool_calls": [],
                "stop_reason": "tool_use",
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": 0.0,
                "duration_ms": 1500,
                "created_at": at + timedelta(seconds=seq * 3),
            }
            values.update(step)
            conn.execute(insert(AgentStep).values(**values))
    return run_id


def seed_store(engine: Engine, now: datetime) -> Seeded:
    """Write a realistic picture of two repositories into an empty, migrated store."""
    api, web = "acme/api", "acme/web"
    start = now - timedelta(minutes=50)
    with engine.begin() as conn:
        ids = {
            "reviewing": _item(
                conn,
                api,
                12,
                "reviewing",
                "Validate order bodies",
                now,
                branch="trunkline/12-validate-orders",
                pr_number=40,
                head_sha="3f5e1c2a9b7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f",
                data={"plan": PLAN, "review": REVIEW},
            ),
            "hostile": _item(conn, api, 13, "planning", HOSTILE_TITLE, now),
            "escalated": _item(conn, api, 14, "escalated", "Rewrite the billing module", now),
            "merged": _item(
                conn,
                web,
                3,
                "merged",
                "Dark mode toggle",
                now,
                pr_number=7,
                head_sha="aa11bb22cc33dd44ee55ff6677889900aabbccdd",
            ),
            "locks": _item(conn, web, 4, "waiting_for_locks", "Restyle the header", now),
        }
        for state, count in (("processed", 9), ("ignored", 2), ("rejected", 1)):
            for n in range(count):
                conn.execute(
                    insert(Delivery).values(
                        delivery_id=f"d-{state}-{n}",
                        event="issues" if n % 2 else "pull_request",
                        action="labeled",
                        repo_full_name=api,
                        received_at=now - timedelta(minutes=n),
                        state=state,
                        payload="{}",
                        processed_at=now,
                    )
                )
        for n, (state, attempts, seconds) in enumerate(
            [("done", 1, 0.4), ("done", 2, 3.0), ("dead", 8, 0.0), ("queued", 0, 0.0)]
        ):
            created = now - timedelta(minutes=10)
            conn.execute(
                insert(Job).values(
                    key=f"job-{n}",
                    kind="process_delivery",
                    payload={},
                    run_at=created,
                    attempts=attempts,
                    max_attempts=8,
                    state=state,
                    created_at=created,
                    updated_at=now,
                    finished_at=created + timedelta(seconds=seconds)
                    if state in ("done", "dead")
                    else None,
                    last_error="boom" if state == "dead" else None,
                )
            )
        for position, (pr, state, gates) in enumerate(
            [
                (40, "testing", {"scope": "passed", "review": "passed", "approval": "passed"}),
                (41, "waiting", {"scope": "passed", "review": "pending", "approval": "waiting"}),
            ]
        ):
            conn.execute(
                insert(QueueEntry).values(
                    repo_full_name=api,
                    base_branch="main",
                    pr_number=pr,
                    head_sha=f"{pr:040x}",
                    priority=0,
                    state=state,
                    data={"gates": gates},
                    enqueued_at=now - timedelta(minutes=20 - position),
                    updated_at=now,
                )
            )
        conn.execute(
            insert(QueueEntry).values(
                repo_full_name=web,
                base_branch="main",
                pr_number=7,
                head_sha="aa11bb22cc33dd44ee55ff6677889900aabbccdd",
                state="merged",
                data={},
                enqueued_at=now - timedelta(minutes=30),
                updated_at=now - timedelta(minutes=18),
            )
        )
        conn.execute(
            insert(Lock).values(
                repo_full_name=api,
                subsystem="api",
                slot=0,
                holder=f"{api}#12",
                epoch=3,
                acquired_at=now - timedelta(minutes=40),
                expires_at=now + timedelta(minutes=5),
            )
        )
        conn.execute(
            insert(Lock).values(
                repo_full_name=web,
                subsystem="ui",
                slot=0,
                holder=f"{web}#3",
                epoch=1,
                acquired_at=now - timedelta(minutes=40),
                expires_at=now + timedelta(minutes=5),
            )
        )
        conn.execute(
            insert(LockWaiter).values(
                repo_full_name=web,
                subsystem="ui",
                holder=f"{web}#4",
                requested_at=now - timedelta(seconds=90),
            )
        )
        conn.execute(
            insert(Approval).values(
                repo_full_name=api,
                pr_number=40,
                sha=REVIEW["sha"],
                user_login="alice",
                source="review",
                kind="merge",
                created_at=now - timedelta(minutes=2),
            )
        )
    item = ids["reviewing"]
    transitions = [
        ("queued", "planning"),
        ("planning", "plan_review"),
        ("plan_review", "waiting_for_locks"),
        ("waiting_for_locks", "executing"),
        ("executing", "self_check"),
        ("self_check", "pr_open"),
        ("pr_open", "reviewing"),
    ]
    for n, (before, after) in enumerate(transitions):
        add_event(
            engine,
            work_item_id=item,
            repo=api,
            kind="transition",
            from_state=before,
            to_state=after,
            at=start + timedelta(minutes=n * 5),
            message=f"now {after}",
        )
    add_event(
        engine,
        work_item_id=item,
        repo=api,
        kind="plan",
        at=start + timedelta(minutes=3),
        message="plan recorded",
        data={"plan": PLAN},
    )
    add_event(
        engine,
        work_item_id=item,
        repo=api,
        kind="check",
        at=start + timedelta(minutes=31),
        message="required check finished",
        data={"name": "ci", "conclusion": "success", "sha": REVIEW["sha"]},
    )
    add_event(
        engine,
        work_item_id=item,
        repo=api,
        kind="gate",
        at=start + timedelta(minutes=32),
        data={"gate": "approval", "state": "passed", "pr_number": 40},
    )
    add_event(
        engine,
        work_item_id=item,
        repo=api,
        kind="human",
        at=start + timedelta(minutes=33),
        message="/trunkline approve",
        data={"user": "alice", "action": "approve", "sha": REVIEW["sha"]},
    )
    add_event(
        engine,
        work_item_id=ids["escalated"],
        repo=api,
        kind="escalation",
        from_state="executing",
        to_state="escalated",
        at=start + timedelta(minutes=20),
        message="executor turn cap reached",
        data={"reason": "turn_cap"},
    )
    add_event(
        engine,
        work_item_id=ids["hostile"],
        repo=api,
        kind="transition",
        from_state="queued",
        to_state="planning",
        at=start,
        message='<img src=x onerror="alert(1)">',
    )
    add_agent_run(
        engine,
        work_item_id=item,
        role="planner",
        model="claude-sonnet-4-5",
        at=start + timedelta(minutes=1),
        verdict=None,
        steps=[
            {
                "tool_calls": [
                    {
                        "tool_use_id": "t1",
                        "name": "read_file",
                        "arguments": '{"path": "src/api/orders.py"}',
                        "result": "def create_order(body):\n    ...\n" * 200,
                        "is_error": False,
                        "refused": False,
                    },
                ],
                "input_tokens": 1200,
                "output_tokens": 300,
                "cost_usd": 0.0081,
            },
            {
                "tool_calls": [
                    {
                        "tool_use_id": "t2",
                        "name": "submit_plan",
                        "arguments": "{}",
                        "result": "accepted",
                        "is_error": False,
                        "refused": False,
                    },
                ],
                "stop_reason": "tool_use",
                "input_tokens": 1500,
                "output_tokens": 500,
                "cost_usd": 0.012,
                "verdict": "planned",
            },
        ],
    )
    add_agent_run(
        engine,
        work_item_id=item,
        role="reviewer",
        model="claude-opus-4-1",
        at=start + timedelta(minutes=35),
        verdict="approve",
        steps=[
            {
                "tool_calls": [
                    {
                        "tool_use_id": "t3",
                        "name": "run_command",
                        "arguments": '{"argv": ["curl", "example.com"]}',
                        "result": "",
                        "is_error": True,
                        "refused": True,
                        "refusal_reason": "curl is not an allowed command",
                    },
                ],
                "input_tokens": 4000,
                "output_tokens": 900,
                "cost_usd": 0.1275,
                "verdict": "approve",
                "stop_reason": "end_turn",
            },
        ],
    )
    return Seeded(item_ids=ids, now=now)


@contextlib.contextmanager
def serve_in_thread(app: Any, *, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` under a real uvicorn on 127.0.0.1 (a free port) in a thread; yields its URL.

    Stops the server (and its open event streams) on exit; never leaves the thread behind.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout)
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
