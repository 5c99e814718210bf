"""The `queue_entries` read model: one row per PR per stay in a queue, for people to read.

The queue's truth is the engine's `QueueState` (one JSON document per queue in
`queue_states`). The dashboard, `/metrics` and `trunkline status` read `queue_entries`
instead: rows they can filter, sort and aggregate with SQL. `QueueService` keeps those rows in
step with the state in the same transaction as every change, so they are never ahead of or
behind the queue.

`entry_rows` and `departures` are pure; `write_projection` performs the upserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from trunkline.queue.model import (
    ALL_GATES,
    GateVerdict,
    OutcomeKind,
    Priority,
    QueueState,
    derive_entry_state,
)
from trunkline.store.tables import QueueEntry

# Rows in these states have left the queue; any other state is a live entry.
LEFT_STATES = tuple(kind.value for kind in OutcomeKind)

# `queue_entries.priority` sorts descending (higher first), the engine's rank ascending.
_PRIORITY_VALUE = {Priority.HIGH: 2, Priority.NORMAL: 1, Priority.LOW: 0}


@dataclass(frozen=True)
class EntryRow:
    pr: int
    head_sha: str
    priority: int
    state: str
    integration_sha: str | None
    gates: tuple[tuple[str, str], ...]  # (gate, passed | failed | pending)
    position: int | None
    enqueued_at: datetime


@dataclass(frozen=True)
class Departure:
    pr: int
    head_sha: str
    state: str
    reason: str
    merged_sha: str | None
    at: datetime


def entry_rows(state: QueueState) -> tuple[EntryRow, ...]:
    """The live entries of `state` as rows, with each gate's verdict on the current head."""
    rows = []
    for entry in state.entries:
        build = state.build_of(entry.pr)
        gates = tuple((gate.value, _gate_state(entry.verdict(gate))) for gate in ALL_GATES)
        rows.append(
            EntryRow(
                pr=entry.pr,
                head_sha=entry.head_sha,
                priority=_PRIORITY_VALUE[entry.priority],
                state=derive_entry_state(entry, build).value,
                integration_sha=None if build is None else build.integration_sha,
                gates=gates,
                position=state.position(entry.pr),
                enqueued_at=entry.enqueued_at,
            )
        )
    return tuple(rows)


def departures(before: QueueState, after: QueueState) -> tuple[Departure, ...]:
    """Outcomes recorded by the step from `before` to `after` (merged, ejected, dequeued)."""
    seen = set(before.recent)
    return tuple(
        Departure(
            pr=outcome.pr,
            head_sha=outcome.head_sha,
            state=outcome.kind.value,
            reason=outcome.reason,
            merged_sha=outcome.merged_sha,
            at=outcome.at,
        )
        for outcome in after.recent
        if outcome not in seen
    )


def write_projection(
    conn: Connection, before: QueueState, after: QueueState, now: datetime
) -> None:
    """Bring the `queue_entries` rows of this queue in step with `after`."""
    repo, base = after.repo, after.config.base
    for departure in departures(before, after):
        row_id = _live_row(conn, repo, base, departure.pr)
        if row_id is None:
            continue
        values: dict[str, Any] = {
            "state": departure.state,
            "reason": departure.reason,
            "updated_at": departure.at,
        }
        if departure.merged_sha is not None:
            values["integration_sha"] = departure.merged_sha
        conn.execute(update(QueueEntry).where(QueueEntry.id == row_id).values(**values))
    unchanged = set(entry_rows(before))
    for row in entry_rows(after):
        if row in unchanged:
            continue  # every step re-projects the queue; write only what it changed
        values = {
            "head_sha": row.head_sha,
            "priority": row.priority,
            "state": row.state,
            "integration_sha": row.integration_sha,
            "data": {"gates": dict(row.gates), "position": row.position},
            "updated_at": now,
        }
        row_id = _live_row(conn, repo, base, row.pr)
        if row_id is None:
            conn.execute(
                insert(QueueEntry).values(
                    repo_full_name=repo,
                    base_branch=base,
                    pr_number=row.pr,
                    enqueued_at=row.enqueued_at,
                    **values,
                )
            )
        else:
            conn.execute(update(QueueEntry).where(QueueEntry.id == row_id).values(**values))


def _live_row(conn: Connection, repo: str, base: str, pr: int) -> int | None:
    found = conn.execute(
        select(QueueEntry.id)
        .where(
            QueueEntry.repo_full_name == repo,
            QueueEntry.base_branch == base,
            QueueEntry.pr_number == pr,
            QueueEntry.state.not_in(LEFT_STATES),
        )
        .order_by(QueueEntry.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def _gate_state(verdict: GateVerdict | None) -> str:
    if verdict is None:
        return "pending"
    return "passed" if verdict.ok else "failed"
