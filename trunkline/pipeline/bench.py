"""`trunkline bench dispatch`: label-to-executor-start latency of the real composition.

Performs I/O (a temporary directory, the local forge and the role-playing Messages API in
threads, a `trunkline serve` subprocess on SQLite configured through the environment).
For each issue, one at a time, `bob` adds the dispatch label through the forge's REST API;
the forge delivers the signed `issues.labeled` webhook to the bot. The latency of an item is
from the delivery's `received_at` (the bot accepted the webhook) to the `started_at` of the
item's first executor `agent_runs` row: intake, the delivery job, the labeller's permission
read through the API, admission, the planner and plan-reviewer runs (worktree, policy
evaluation of the plan), the sticky comments and the lock grant. Both timestamps are written
by the bot process. A first, unmeasured item warms the git mirror and the policy cache. Each
label waits until no job is running or due, so an item's figure is its own latency rather
than time queued behind the previous item's execution, review and merge.
"""

from __future__ import annotations

import math
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select

from trunkline.pipeline.dispatch_world import (
    BotProcess,
    DispatchWorld,
    WorldShape,
    dispatch_world,
    free_port,
    wait_ready,
)
from trunkline.store.tables import AgentRun, Delivery, Job, JobState
from trunkline.store.tables import WorkItem as WorkItemRow

TARGET_P50_MS = 500.0
ITEM_TIMEOUT_SECONDS = 60.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def executor_started(engine: Engine, repo: str, issue: int) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(
            select(AgentRun.started_at)
            .join(WorkItemRow, AgentRun.work_item_id == WorkItemRow.id)
            .where(
                WorkItemRow.repo_full_name == repo,
                WorkItemRow.issue_number == issue,
                AgentRun.role == "executor",
            )
            .order_by(AgentRun.started_at)
            .limit(1)
        ).scalar_one_or_none()


def label_received(engine: Engine, repo: str, issue: int) -> datetime | None:
    """When the bot accepted the `issues.labeled` delivery of `issue`."""
    import json

    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.received_at, Delivery.payload).where(
                Delivery.event == "issues",
                Delivery.action == "labeled",
                Delivery.repo_full_name == repo,
            )
        ).all()
    for received_at, payload in rows:
        if json.loads(payload).get("issue", {}).get("number") == issue:
            return received_at
    return None


def _wait_for_executor(
    engine: Engine, bot: BotProcess, repo: str, issue: int
) -> tuple[datetime, datetime]:
    deadline = time.monotonic() + ITEM_TIMEOUT_SECONDS
    while True:
        started = executor_started(engine, repo, issue)
        if started is not None:
            received = label_received(engine, repo, issue)
            if received is None:
                raise RuntimeError(f"no labeled delivery recorded for issue {issue}")
            return received, started
        if bot.process.poll() is not None:
            raise RuntimeError(f"the bot exited: {bot.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"issue {issue}: no executor run after {ITEM_TIMEOUT_SECONDS}s")
        time.sleep(0.01)


def wait_quiet(engine: Engine, seconds: float = 30.0) -> None:
    """Until no job is running or due (the previous item's work is done or waiting)."""
    deadline = time.monotonic() + seconds
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        now = datetime.now(UTC)
        with engine.connect() as conn:
            busy = conn.execute(
                select(func.count())
                .select_from(Job)
                .where(
                    (Job.state == JobState.RUNNING)
                    | ((Job.state == JobState.QUEUED) & (Job.run_at <= now))
                )
            ).scalar_one()
        quiet = quiet + 1 if busy == 0 else 0
        time.sleep(0.05)


def _measure(world: DispatchWorld, items: int, workers: int) -> dict[str, Any]:
    database = world.root / "bot.db"
    url = f"sqlite:///{database}"
    world.upgrade_database(url)
    port = free_port()
    env = world.environment(url, world.root / "bot-data", TRUNKLINE_GITHUB_MIN_WRITE_INTERVAL="0")
    bot = world.start_bot(
        "serve",
        ["serve", "--port", str(port), "--workers", str(workers)],
        env,
        url=f"http://127.0.0.1:{port}",
    )
    wait_ready(bot)
    world.hook_webhooks_to(bot.url or "")
    engine = create_engine(url)
    try:
        numbers = world.issue_numbers()
        ordered = [numbers[world.shape.target(index)] for index in range(items + 1)]
        latencies: list[float] = []
        warmup_ms = 0.0
        for position, issue in enumerate(ordered):
            wait_quiet(engine)
            world.label(issue)
            received, started = _wait_for_executor(engine, bot, "alice/demo", issue)
            elapsed = (started - received).total_seconds() * 1000
            if position == 0:
                warmup_ms = elapsed
            else:
                latencies.append(elapsed)
    finally:
        engine.dispose()
    return {
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "items": len(latencies),
        "min_ms": round(min(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "warmup_ms": round(warmup_ms, 1),
        "target_p50_ms": TARGET_P50_MS,
        "workers": workers,
        "database": "sqlite",
    }


def run_dispatch_bench(items: int = 10, workers: int = 2) -> dict[str, Any]:
    """Label `items` issues one at a time (after one warm-up) and measure each latency."""
    if not 1 <= items <= 90:
        raise ValueError("items must be between 1 and 90")
    shape = WorldShape(issues=items + 1, subsystems=items + 1, max_active=items + 1)
    with (
        tempfile.TemporaryDirectory(prefix="trunkline-bench-dispatch-") as tmp,
        dispatch_world(Path(tmp), shape) as world,
    ):
        return _measure(world, items, workers)


def format_report(results: dict[str, Any]) -> str:
    verdict = "meets" if results["p50_ms"] < results["target_p50_ms"] else "misses"
    return "\n".join(
        [
            "dispatch: issues.labeled accepted -> executor run started "
            f"(trunkline serve, SQLite, {results['workers']} workers, forge over HTTP, "
            "role-playing agents over the Messages API)",
            f"  items    {results['items']} (after one warm-up item: "
            f"{results['warmup_ms']:.0f} ms)",
            f"  p50      {results['p50_ms']:.0f} ms ({verdict} the "
            f"{results['target_p50_ms']:.0f} ms target)",
            f"  p99      {results['p99_ms']:.0f} ms",
            f"  min/max  {results['min_ms']:.0f} / {results['max_ms']:.0f} ms",
        ]
    )
