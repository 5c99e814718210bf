"""Read-only, bounded queries of the store for the dashboard, the terminal and /metrics.

Performs I/O (reads the database; never writes). Every query has a LIMIT, and on SQLite runs
in a deferred transaction (`read_only`) so it never takes the write lock. Results are the
frozen records of `trunkline.web.records`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from trunkline.store.engine import read_only
from trunkline.store.tables import (
    AgentRun,
    AgentStep,
    Approval,
    Lock,
    LockWaiter,
    QueueEntry,
    TimelineEvent,
    WorkItem,
)
from trunkline.web.records import (
    AgentRunRecord,
    AgentStepRecord,
    LockRecord,
    Overview,
    QueueEntryRecord,
    RepoStateCount,
    SpendRecord,
    TimelineEventRecord,
    WaiterRecord,
    WorkItemDetail,
    WorkItemRecord,
)

ITEMS_LIMIT = 200
QUEUE_LIMIT = 500
LOCKS_LIMIT = 500
RECENT_LIMIT = 20
EVENTS_LIMIT = 1000
RUNS_LIMIT = 200
STEPS_LIMIT = 2000
FEED_LIMIT = 100
# Queue entries in these states have left the queue (the queue engine's outcomes).
FINISHED_QUEUE_STATES = ("merged", "ejected", "dequeued", "removed", "cancelled")


def _item(row: Any) -> WorkItemRecord:
    return WorkItemRecord(
        id=row.id,
        repo=row.repo_full_name,
        issue_number=row.issue_number,
        title=row.title or "",
        state=row.state,
        branch=row.branch,
        pr_number=row.pr_number,
        head_sha=row.head_sha,
        priority=row.priority or 0,
        data=dict(row.data or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event(row: Any) -> TimelineEventRecord:
    return TimelineEventRecord(
        id=row.id,
        work_item_id=row.work_item_id,
        repo=row.repo_full_name,
        kind=row.kind,
        from_state=row.from_state,
        to_state=row.to_state,
        message=row.message or "",
        data=dict(row.data or {}),
        created_at=row.created_at,
    )


def _step(row: Any, work_item_id: int | None) -> AgentStepRecord:
    return AgentStepRecord(
        id=row.id,
        run_id=row.run_id,
        work_item_id=work_item_id,
        seq=row.seq,
        role=row.role,
        model=row.model,
        tool_calls=list(row.tool_calls or []),
        verdict=row.verdict,
        stop_reason=row.stop_reason,
        input_tokens=int(row.input_tokens or 0),
        output_tokens=int(row.output_tokens or 0),
        cost_usd=float(row.cost_usd or 0.0),
        duration_ms=int(row.duration_ms or 0),
        created_at=row.created_at,
    )


def _start_of_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _read(engine: Engine) -> Connection:
    return read_only(engine.connect())


def load_overview(engine: Engine, now: datetime, budget_usd: float | None = None) -> Overview:
    """Everything the overview page shows, in one read transaction."""
    with _read(engine) as conn, conn.begin():
        counts = conn.execute(
            select(WorkItem.repo_full_name, WorkItem.state, func.count())
            .group_by(WorkItem.repo_full_name, WorkItem.state)
            .order_by(WorkItem.repo_full_name, WorkItem.state)
            .limit(ITEMS_LIMIT)
        ).all()
        items = conn.execute(
            select(WorkItem).order_by(WorkItem.updated_at.desc(), WorkItem.id).limit(ITEMS_LIMIT)
        ).all()
        queue = _queue(conn)
        locks = conn.execute(
            select(Lock)
            .where(Lock.holder.is_not(None))
            .where(or_(Lock.expires_at.is_(None), Lock.expires_at > now))
            .order_by(Lock.repo_full_name, Lock.subsystem, Lock.slot)
            .limit(LOCKS_LIMIT)
        ).all()
        waiters = conn.execute(
            select(LockWaiter).order_by(LockWaiter.requested_at, LockWaiter.id).limit(LOCKS_LIMIT)
        ).all()
        spend = _spend_since(conn, _start_of_day(now))
        recent = conn.execute(
            select(TimelineEvent).order_by(TimelineEvent.id.desc()).limit(RECENT_LIMIT)
        ).all()
    return Overview(
        generated_at=now,
        state_counts=tuple(RepoStateCount(r[0], r[1], int(r[2])) for r in counts),
        items=tuple(_item(r) for r in items),
        queue=queue,
        locks=tuple(
            LockRecord(
                repo=r.repo_full_name,
                subsystem=r.subsystem,
                slot=r.slot,
                holder=r.holder or "",
                epoch=int(r.epoch),
                acquired_at=r.acquired_at,
                expires_at=r.expires_at,
            )
            for r in locks
        ),
        waiters=tuple(
            WaiterRecord(
                repo=r.repo_full_name,
                subsystem=r.subsystem,
                holder=r.holder,
                requested_at=r.requested_at,
                waited_seconds=max(0.0, (now - r.requested_at).total_seconds()),
            )
            for r in waiters
        ),
        spend=spend,
        budget_usd=budget_usd,
        recent=tuple(_event(r) for r in recent),
    )


def _queue(conn: Connection) -> tuple[QueueEntryRecord, ...]:
    rows = conn.execute(
        select(QueueEntry)
        .where(QueueEntry.state.not_in(FINISHED_QUEUE_STATES))
        .order_by(
            QueueEntry.repo_full_name,
            QueueEntry.base_branch,
            QueueEntry.priority.desc(),
            QueueEntry.enqueued_at,
            QueueEntry.id,
        )
        .limit(QUEUE_LIMIT)
    ).all()
    entries: list[QueueEntryRecord] = []
    positions: dict[tuple[str, str], int] = {}
    for row in rows:
        entry = row
        key = (entry.repo_full_name, entry.base_branch)
        positions[key] = positions.get(key, 0) + 1
        data = dict(entry.data or {})
        raw_gates = data.get("gates")
        gates = (
            {str(k): str(v) for k, v in raw_gates.items()} if isinstance(raw_gates, dict) else {}
        )
        entries.append(
            QueueEntryRecord(
                repo=entry.repo_full_name,
                base_branch=entry.base_branch,
                position=positions[key],
                pr_number=entry.pr_number,
                head_sha=entry.head_sha,
                priority=entry.priority or 0,
                state=entry.state,
                gates=gates,
                integration_sha=entry.integration_sha,
                reason=entry.reason,
                enqueued_at=entry.enqueued_at,
            )
        )
    return tuple(entries)


def _spend_since(conn: Connection, since: datetime) -> tuple[SpendRecord, ...]:
    rows = conn.execute(
        select(
            AgentStep.role,
            AgentStep.model,
            func.coalesce(func.sum(AgentStep.input_tokens), 0),
            func.coalesce(func.sum(AgentStep.output_tokens), 0),
            func.coalesce(func.sum(AgentStep.cost_usd), 0.0),
            func.count(),
        )
        .where(AgentStep.created_at >= since)
        .group_by(AgentStep.role, AgentStep.model)
        .order_by(AgentStep.role, AgentStep.model)
        .limit(LOCKS_LIMIT)
    ).all()
    return tuple(
        SpendRecord(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), int(r[5])) for r in rows
    )


def find_work_item(engine: Engine, repo: str, issue_number: int) -> WorkItemRecord | None:
    with _read(engine) as conn, conn.begin():
        row = conn.execute(
            select(WorkItem).where(
                and_(WorkItem.repo_full_name == repo, WorkItem.issue_number == issue_number)
            )
        ).first()
    return None if row is None else _item(row)


def load_work_item(engine: Engine, repo: str, issue_number: int) -> WorkItemDetail | None:
    """One work item with its timeline events, agent runs and steps (oldest first)."""
    with _read(engine) as conn, conn.begin():
        row = conn.execute(
            select(WorkItem).where(
                and_(WorkItem.repo_full_name == repo, WorkItem.issue_number == issue_number)
            )
        ).first()
        if row is None:
            return None
        item = _item(row)
        events = conn.execute(
            select(TimelineEvent)
            .where(TimelineEvent.work_item_id == item.id)
            .order_by(TimelineEvent.id)
            .limit(EVENTS_LIMIT)
        ).all()
        runs = conn.execute(
            select(AgentRun)
            .where(AgentRun.work_item_id == item.id)
            .order_by(AgentRun.id)
            .limit(RUNS_LIMIT)
        ).all()
        steps = conn.execute(
            select(AgentStep, AgentRun.work_item_id)
            .join(AgentRun, AgentRun.id == AgentStep.run_id)
            .where(AgentRun.work_item_id == item.id)
            .order_by(AgentStep.id)
            .limit(STEPS_LIMIT)
        ).all()
        approvals = (
            conn.execute(
                select(Approval)
                .where(and_(Approval.repo_full_name == repo, Approval.pr_number == item.pr_number))
                .order_by(Approval.id)
                .limit(RUNS_LIMIT)
            ).all()
            if item.pr_number is not None
            else []
        )
    return WorkItemDetail(
        item=item,
        events=tuple(_event(r) for r in events),
        runs=tuple(
            AgentRunRecord(
                id=r.id,
                work_item_id=r.work_item_id,
                role=r.role,
                model=r.model,
                state=r.state,
                verdict=r.verdict,
                input_tokens=int(r.input_tokens or 0),
                output_tokens=int(r.output_tokens or 0),
                cost_usd=float(r.cost_usd or 0.0),
                error=r.error,
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
            for r in runs
        ),
        steps=tuple(_step_with_item(r) for r in steps),
        approvals=tuple(
            {
                "user": r.user_login,
                "sha": r.sha,
                "kind": r.kind,
                "source": r.source,
                "created_at": r.created_at,
            }
            for r in approvals
        ),
    )


def _step_with_item(row: Any) -> AgentStepRecord:
    return _step(row, row.work_item_id)


def latest_cursor(engine: Engine, item_id: int | None) -> tuple[int, int]:
    """The newest timeline event id and agent step id (of one work item, or all)."""
    with _read(engine) as conn, conn.begin():
        events = select(func.coalesce(func.max(TimelineEvent.id), 0))
        steps = select(func.coalesce(func.max(AgentStep.id), 0))
        if item_id is not None:
            events = events.where(TimelineEvent.work_item_id == item_id)
            steps = steps.join(AgentRun, AgentRun.id == AgentStep.run_id).where(
                AgentRun.work_item_id == item_id
            )
        return int(conn.execute(events).scalar_one()), int(conn.execute(steps).scalar_one())


def new_since(
    engine: Engine, item_id: int | None, after_event: int, after_step: int
) -> tuple[tuple[TimelineEventRecord, ...], tuple[AgentStepRecord, ...]]:
    """Timeline events and agent steps newer than the cursors (at most FEED_LIMIT each)."""
    with _read(engine) as conn, conn.begin():
        events = select(TimelineEvent).where(TimelineEvent.id > after_event)
        steps = (
            select(AgentStep, AgentRun.work_item_id)
            .join(AgentRun, AgentRun.id == AgentStep.run_id)
            .where(AgentStep.id > after_step)
        )
        if item_id is not None:
            events = events.where(TimelineEvent.work_item_id == item_id)
            steps = steps.where(AgentRun.work_item_id == item_id)
        event_rows = conn.execute(events.order_by(TimelineEvent.id).limit(FEED_LIMIT)).all()
        step_rows = conn.execute(steps.order_by(AgentStep.id).limit(FEED_LIMIT)).all()
    return (
        tuple(_event(r) for r in event_rows),
        tuple(_step_with_item(r) for r in step_rows),
    )


def item_refs(engine: Engine, ids: set[int]) -> dict[int, tuple[str, int]]:
    """(repo, issue number) of the given work item ids (for links in feeds)."""
    if not ids:
        return {}
    with _read(engine) as conn, conn.begin():
        rows = conn.execute(
            select(WorkItem.id, WorkItem.repo_full_name, WorkItem.issue_number)
            .where(WorkItem.id.in_(sorted(ids)[:FEED_LIMIT]))
            .limit(FEED_LIMIT)
        ).all()
    return {int(r[0]): (r[1], int(r[2])) for r in rows}


def day_window(now: datetime) -> tuple[datetime, datetime]:
    start = _start_of_day(now)
    return start, start + timedelta(days=1)
