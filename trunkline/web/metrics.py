"""`GET /metrics` in the Prometheus text exposition format (version 0.0.4).

`collect(engine, now)` reads aggregates from the store at scrape time (bounded GROUP BY
queries; read-only), so every replica sharing one database reports the same figures;
`ProcessCounters` adds this process's own counters (scrapes, live-feed clients). `render` is
pure: families in, text out. `create_metrics_router` wires them into a FastAPI router.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine, Float, case, cast, func, literal, select

from trunkline.clock import Clock
from trunkline.settings import Settings
from trunkline.store.engine import read_only
from trunkline.store.tables import (
    AgentStep,
    Delivery,
    Job,
    LockWaiter,
    QueueEntry,
    TimelineEvent,
    UTCDateTime,
    WorkItem,
)
from trunkline.web.auth import token_guard
from trunkline.web.queries import FINISHED_QUEUE_STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
MERGE_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
GROUP_LIMIT = 1000

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float
    suffix: str = ""


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: tuple[Sample, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The exposition text of `families` (pure)."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
            braces = f"{{{labels}}}" if labels else ""
            lines.append(f"{family.name}{sample.suffix}{braces} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


def histogram_samples(
    labels: Labels, buckets: Sequence[float], cumulative: Sequence[int], count: int, total: float
) -> list[Sample]:
    samples = [
        Sample((*labels, ("le", _number(bound))), float(n), "_bucket")
        for bound, n in zip(buckets, cumulative, strict=True)
    ]
    samples.append(Sample((*labels, ("le", "+Inf")), float(count), "_bucket"))
    samples.append(Sample(labels, float(count), "_count"))
    samples.append(Sample(labels, total, "_sum"))
    return samples


@dataclass
class ProcessCounters:
    """Counters of this process (not shared between replicas); thread-safe."""

    scrapes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scraped(self) -> None:
        with self._lock:
            self.scrapes += 1

    def families(self) -> list[Family]:
        with self._lock:
            scrapes = self.scrapes
        return [
            Family(
                "trunkline_metrics_scrapes_total",
                "counter",
                "Scrapes of /metrics answered by this process.",
                (Sample((), float(scrapes)),),
            )
        ]


# SQLAlchemy column expressions of any type (typing them precisely adds nothing here).
Column = Any


def _seconds_between(conn: Connection, start: Column, end: Column) -> Column:
    if conn.dialect.name == "sqlite":
        return cast((func.julianday(end) - func.julianday(start)) * 86400.0, Float)
    return cast(func.extract("epoch", end - start), Float)


def _histogram(
    conn: Connection,
    name: str,
    help_text: str,
    group: Column,
    label: str,
    seconds: Column,
    where: Column,
    buckets: Sequence[float],
    table: type,
) -> Family:
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in buckets]
    rows = conn.execute(
        select(group, func.count(), func.coalesce(func.sum(seconds), 0.0), *columns)
        .select_from(table)
        .where(where)
        .group_by(group)
        .order_by(group)
        .limit(GROUP_LIMIT)
    ).all()
    samples: list[Sample] = []
    for row in rows:
        cumulative = [int(v or 0) for v in row[3:]]
        samples.extend(
            histogram_samples(
                ((label, str(row[0])),),
                buckets,
                cumulative,
                int(row[1]),
                round(float(row[2] or 0.0), 3),
            )
        )
    return Family(name, "histogram", help_text, tuple(samples))


def _grouped(
    conn: Connection,
    columns: Sequence[Column],
    value: Column,
    where: Column | None = None,
) -> list[tuple[tuple[str, ...], float]]:
    query = select(*columns, value).group_by(*columns).order_by(*columns).limit(GROUP_LIMIT)
    if where is not None:
        query = query.where(where)
    return [
        (tuple("" if v is None else str(v) for v in row[:-1]), float(row[-1] or 0))
        for row in conn.execute(query).all()
    ]


def _family(
    name: str,
    kind: str,
    help_text: str,
    label_names: Sequence[str],
    rows: list[tuple[tuple[str, ...], float]],
) -> Family:
    return Family(
        name,
        kind,
        help_text,
        tuple(Sample(tuple(zip(label_names, key, strict=True)), value) for key, value in rows),
    )


def collect(engine: Engine, now: datetime) -> list[Family]:
    """Every store-derived metric family, read in one transaction."""
    with read_only(engine.connect()) as conn, conn.begin():
        families = [
            _family(
                "trunkline_deliveries_total",
                "counter",
                "Webhook deliveries stored, by event and outcome (delivery state).",
                ("event", "outcome"),
                _grouped(conn, (Delivery.event, Delivery.state), func.count()),
            ),
            _family(
                "trunkline_jobs",
                "gauge",
                "Durable jobs by kind and state.",
                ("kind", "state"),
                _grouped(conn, (Job.kind, Job.state), func.count()),
            ),
            _family(
                "trunkline_job_failures_total",
                "counter",
                "Failed job attempts (attempts that did not finish the job), by kind.",
                ("kind",),
                _grouped(
                    conn,
                    (Job.kind,),
                    func.sum(
                        case(
                            (Job.state == "done", Job.attempts - 1),
                            (Job.state == "dead", Job.attempts),
                            else_=case((Job.attempts > 1, Job.attempts - 1), else_=0),
                        )
                    ),
                ),
            ),
            _family(
                "trunkline_jobs_dead",
                "gauge",
                "Jobs that exhausted their attempts, by kind.",
                ("kind",),
                _grouped(conn, (Job.kind,), func.count(), Job.state == "dead"),
            ),
            _histogram(
                conn,
                "trunkline_job_latency_seconds",
                "Seconds from a job's creation to its completion, by kind.",
                Job.kind,
                "kind",
                _seconds_between(conn, Job.created_at, Job.finished_at),
                Job.state == "done",
                LATENCY_BUCKETS,
                Job,
            ),
            _family(
                "trunkline_queue_depth",
                "gauge",
                "Pull requests in a merge queue, by repository, base branch and state.",
                ("repo", "base", "state"),
                _grouped(
                    conn,
                    (QueueEntry.repo_full_name, QueueEntry.base_branch, QueueEntry.state),
                    func.count(),
                    QueueEntry.state.not_in(FINISHED_QUEUE_STATES),
                ),
            ),
            _histogram(
                conn,
                "trunkline_time_to_merge_seconds",
                "Seconds from enqueue to merge of merged queue entries, by repository.",
                QueueEntry.repo_full_name,
                "repo",
                _seconds_between(conn, QueueEntry.enqueued_at, QueueEntry.updated_at),
                QueueEntry.state == "merged",
                MERGE_BUCKETS,
                QueueEntry,
            ),
            _family(
                "trunkline_lock_waiters",
                "gauge",
                "Holders waiting for a subsystem lock.",
                ("repo", "subsystem"),
                _grouped(conn, (LockWaiter.repo_full_name, LockWaiter.subsystem), func.count()),
            ),
            _family(
                "trunkline_lock_wait_seconds_max",
                "gauge",
                "The longest current wait for a subsystem lock, in seconds.",
                ("repo", "subsystem"),
                _grouped(
                    conn,
                    (LockWaiter.repo_full_name, LockWaiter.subsystem),
                    func.max(
                        _seconds_between(conn, LockWaiter.requested_at, literal(now, UTCDateTime()))
                    ),
                ),
            ),
            _family(
                "trunkline_work_items",
                "gauge",
                "Work items by repository and state.",
                ("repo", "state"),
                _grouped(conn, (WorkItem.repo_full_name, WorkItem.state), func.count()),
            ),
        ]
        tokens = _grouped(conn, (AgentStep.role, AgentStep.model), func.sum(AgentStep.input_tokens))
        output = _grouped(
            conn, (AgentStep.role, AgentStep.model), func.sum(AgentStep.output_tokens)
        )
        families.append(
            Family(
                "trunkline_agent_tokens_total",
                "counter",
                "Model tokens used by agents, by role, model and direction.",
                tuple(
                    Sample((("role", k[0]), ("model", k[1]), ("direction", d)), v)
                    for d, rows in (("input", tokens), ("output", output))
                    for k, v in rows
                ),
            )
        )
        families.append(
            _family(
                "trunkline_agent_cost_usd_total",
                "counter",
                "US dollars spent on model calls, by role and model.",
                ("role", "model"),
                _grouped(conn, (AgentStep.role, AgentStep.model), func.sum(AgentStep.cost_usd)),
            )
        )
        reason = func.coalesce(TimelineEvent.data["reason"].as_string(), TimelineEvent.kind)
        families.append(
            _family(
                "trunkline_escalations_total",
                "counter",
                "Work item escalations to a human, by reason.",
                ("reason",),
                _grouped(
                    conn,
                    (reason,),
                    func.count(),
                    (TimelineEvent.kind == "escalation") | (TimelineEvent.to_state == "escalated"),
                ),
            )
        )
    return families


def create_metrics_router(
    engine: Engine, settings: Settings, clock: Clock, counters: ProcessCounters | None = None
) -> APIRouter:
    """`GET /metrics` (behind the dashboard token when one is set)."""
    process = counters if counters is not None else ProcessCounters()
    router = APIRouter(dependencies=[Depends(token_guard(settings))])

    @router.get("/metrics", name="metrics")
    async def metrics(_: Request) -> Response:
        process.scraped()
        families = await asyncio.to_thread(collect, engine, clock.now())
        return Response(render([*families, *process.families()]), media_type=CONTENT_TYPE)

    return router
