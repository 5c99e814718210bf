"""`trunkline bench dashboard`: what a page view, a scrape and a live-feed poll cost.

Performs I/O (a temporary SQLite file and, when reachable, a scratch PostgreSQL database;
in-process HTTP through the ASGI app). Fills the store with `items` work items spread over
ten repositories (each with ten timeline events and an agent run of three steps), a merge
queue, locks and waiters, then times the overview page, a work item page, `/metrics` and the
live feed's poll query (what each connected browser costs every 0.75 s).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from trunkline.store.tables import (
    AgentRun,
    AgentStep,
    Lock,
    LockWaiter,
    QueueEntry,
    TimelineEvent,
    WorkItem,
)

REPOS = 10
EVENTS_PER_ITEM = 10
STEPS_PER_ITEM = 3


def fill(engine: Engine, items: int, now: datetime) -> None:
    """Bulk-insert a store of `items` work items and their history."""
    with engine.begin() as conn:
        conn.execute(
            insert(WorkItem),
            [
                {
                    "repo_full_name": f"org/repo{n % REPOS}",
                    "issue_number": n,
                    "state": ("executing", "reviewing", "merged", "queued")[n % 4],
                    "title": f"Work item {n}",
                    "priority": 0,
                    "data": {"plan": {"summary": "s", "steps": ["a", "b"]}},
                    "version": 1,
                    "created_at": now - timedelta(hours=2),
                    "updated_at": now - timedelta(seconds=n),
                }
                for n in range(1, items + 1)
            ],
        )
        ids = conn.execute(select(WorkItem.id, WorkItem.repo_full_name)).all()
        conn.execute(
            insert(TimelineEvent),
            [
                {
                    "work_item_id": item_id,
                    "repo_full_name": repo,
                    "kind": "transition",
                    "from_state": "a",
                    "to_state": "b",
                    "message": "moved",
                    "data": {"sha": "ab" * 20},
                    "created_at": now - timedelta(minutes=60 - k),
                }
                for item_id, repo in ids
                for k in range(EVENTS_PER_ITEM)
            ],
        )
        conn.execute(
            insert(AgentRun),
            [
                {
                    "work_item_id": item_id,
                    "role": "executor",
                    "model": "claude-sonnet-4-5",
                    "state": "succeeded",
                    "input_tokens": 3000,
                    "output_tokens": 900,
                    "cost_usd": 0.02,
                    "started_at": now - timedelta(minutes=30),
                }
                for item_id, _ in ids
            ],
        )
        runs = conn.execute(select(AgentRun.id)).scalars().all()
        conn.execute(
            insert(AgentStep),
            [
                {
                    "run_id": run_id,
                    "seq": seq,
                    "role": "executor",
                    "model": "claude-sonnet-4-5",
                    "prompt_digest": "sha256:0",
                    "tool_calls": [{"name": "read_file", "arguments": "{}", "result": "x" * 500}],
                    "input_tokens": 1000,
                    "output_tokens": 300,
                    "cost_usd": 0.007,
                    "duration_ms": 1200,
                    "created_at": now - timedelta(minutes=20 - seq),
                }
                for run_id in runs
                for seq in range(1, STEPS_PER_ITEM + 1)
            ],
        )
        conn.execute(
            insert(QueueEntry),
            [
                {
                    "repo_full_name": f"org/repo{n % REPOS}",
                    "base_branch": "main",
                    "pr_number": n,
                    "head_sha": f"{n:040x}",
                    "priority": 0,
                    "state": ("waiting", "testing", "merged")[n % 3],
                    "data": {"gates": {"scope": "passed", "review": "pending"}},
                    "enqueued_at": now - timedelta(minutes=n % 120),
                    "updated_at": now,
                }
                for n in range(1, max(2, items // 5))
            ],
        )
        conn.execute(
            insert(Lock),
            [
                {
                    "repo_full_name": f"org/repo{n % REPOS}",
                    "subsystem": f"sub{n}",
                    "slot": 0,
                    "holder": f"org/repo{n % REPOS}#{n}",
                    "epoch": n,
                    "acquired_at": now,
                    "expires_at": now + timedelta(minutes=5),
                }
                for n in range(50)
            ],
        )
        conn.execute(
            insert(LockWaiter),
            [
                {
                    "repo_full_name": f"org/repo{n % REPOS}",
                    "subsystem": f"sub{n}",
                    "holder": f"org/repo{n % REPOS}#{n + 1000}",
                    "requested_at": now - timedelta(seconds=n),
                }
                for n in range(50)
            ],
        )


def _timed(function: Callable[[], object], repeat: int) -> dict[str, float]:
    function()  # warm caches, compile templates
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 2),
    }


def measure(engine: Engine, items: int, repeat: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from trunkline.clock import SystemClock
    from trunkline.settings import load_settings
    from trunkline.web.app import create_dashboard_app
    from trunkline.web.queries import latest_cursor, new_since

    now = datetime.now(UTC)
    started = time.perf_counter()
    fill(engine, items, now)
    fill_seconds = time.perf_counter() - started
    app = create_dashboard_app(engine, load_settings(daily_budget_usd=50.0), SystemClock())
    with TestClient(app) as http:
        size = len(http.get("/").content)

        def get(path: str) -> Callable[[], object]:
            def call() -> object:
                response = http.get(path)
                response.raise_for_status()
                return response

            return call

        after_event, after_step = latest_cursor(engine, None)
        figures: dict[str, Any] = {
            "items": items,
            "timeline_rows": items * EVENTS_PER_ITEM,
            "agent_steps": items * STEPS_PER_ITEM,
            "fill_seconds": round(fill_seconds, 2),
            "overview_bytes": size,
            "overview": _timed(get("/"), repeat),
            "work_item": _timed(get(f"/items/org/repo{items % REPOS}/{items}"), repeat),
            "metrics": _timed(get("/metrics"), repeat),
            "live_poll_item": _timed(
                lambda: new_since(engine, 1, after_event, after_step), repeat * 5
            ),
            "live_poll_all": _timed(
                lambda: new_since(engine, None, after_event, after_step), repeat * 5
            ),
        }
    return figures


@contextlib.contextmanager
def _sqlite() -> Iterator[Engine]:
    from trunkline.store.testing import migrated_engine

    with tempfile.TemporaryDirectory(prefix="trunkline-bench-web-") as name:
        engine = migrated_engine(f"sqlite:///{Path(name) / 'bench.db'}")
        try:
            yield engine
        finally:
            engine.dispose()


@contextlib.contextmanager
def _postgres(admin_url: str) -> Iterator[Engine]:
    from trunkline.store.testing import migrated_engine, temporary_postgres

    with temporary_postgres(admin_url, durable_commits=False) as url:
        engine = migrated_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def run_dashboard_bench(items: int, repeat: int, postgres_admin_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with _sqlite() as engine:
        results["sqlite"] = measure(engine, items, repeat)
    if postgres_admin_url is None:
        results["postgres"] = "not measured (no --postgres-admin-url)"
        return results
    try:
        with _postgres(postgres_admin_url) as engine:
            results["postgres"] = measure(engine, items, repeat)
    except OSError as error:
        results["postgres"] = f"unavailable: {error}"
    return results


def format_report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    for target, figures in results.items():
        if not isinstance(figures, dict):
            lines.append(f"{target}: {figures}")
            continue
        lines.append(
            f"{target}: {figures['items']} items, {figures['timeline_rows']} timeline rows, "
            f"{figures['agent_steps']} agent steps (filled in {figures['fill_seconds']} s)"
        )
        for name in ("overview", "work_item", "metrics", "live_poll_item", "live_poll_all"):
            timing = figures[name]
            lines.append(
                f"  {name:16} median {timing['median_ms']:8.2f} ms   p95 {timing['p95_ms']:8.2f} ms"
            )
    return "\n".join(lines)
