"""The few `work_items` reads and writes the agent runtime needs (find-or-create, data JSON).

Performs database I/O on the engine it is given, one short transaction per call. The work
item state machine belongs to the dispatch pipeline: this module creates a row only when
none exists (`INSERT ... ON CONFLICT DO NOTHING` on (repo, issue)), never rewrites another
writer's state except through `set_state`, and changes `data` by read-modify-write under the
row's `version` (optimistic concurrency, retried), so concurrent writers of other keys of
`data` are not lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, select, update

from trunkline.errors import TerminalError
from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.tables import WorkItem

_ITEM_KEY = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>[1-9][0-9]*)$")
NEW_ITEM_STATE = "queued"


class WorkItemKeyError(TerminalError):
    """A work item key that is not `OWNER/REPO#N`."""


@dataclass(frozen=True)
class ItemRef:
    repo: str
    number: int

    @property
    def key(self) -> str:
        return f"{self.repo}#{self.number}"

    @classmethod
    def parse(cls, key: str) -> ItemRef:
        match = _ITEM_KEY.match(key)
        if match is None:
            raise WorkItemKeyError(f"work item key must look like OWNER/REPO#N, got {key!r}")
        return cls(match["repo"], int(match["number"]))


def ensure_work_item(engine: Engine, ref: ItemRef, *, title: str = "") -> int:
    """The id of the item's row, creating it (state `queued`) when there is none."""
    with engine.begin() as conn:
        now = database_now(conn)
        insert_ignoring_conflicts(
            conn,
            WorkItem.__table__,  # type: ignore[arg-type]
            {
                "repo_full_name": ref.repo,
                "issue_number": ref.number,
                "state": NEW_ITEM_STATE,
                "title": title,
                "priority": 0,
                "data": {},
                "version": 0,
                "created_at": now,
                "updated_at": now,
            },
            ("repo_full_name", "issue_number"),
        )
        return int(
            conn.execute(
                select(WorkItem.id).where(
                    and_(WorkItem.repo_full_name == ref.repo, WorkItem.issue_number == ref.number)
                )
            ).scalar_one()
        )


def read_data(engine: Engine, ref: ItemRef) -> dict[str, Any]:
    """The item's `data` JSON (empty when the item has no row)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(WorkItem.data).where(
                and_(WorkItem.repo_full_name == ref.repo, WorkItem.issue_number == ref.number)
            )
        ).first()
    return dict(row[0] or {}) if row is not None else {}


def item_of_pull(engine: Engine, repo: str, pr: int) -> ItemRef | None:
    """The work item whose pull request is `pr` in `repo` (None: no item has that PR)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(WorkItem.issue_number)
            .where(and_(WorkItem.repo_full_name == repo, WorkItem.pr_number == pr))
            .order_by(WorkItem.id.desc())
            .limit(1)
        ).first()
    return None if row is None else ItemRef(repo, int(row[0]))


def read_state(engine: Engine, ref: ItemRef) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(WorkItem.state).where(
                and_(WorkItem.repo_full_name == ref.repo, WorkItem.issue_number == ref.number)
            )
        ).first()
    return None if row is None else str(row[0])


def change_data(
    engine: Engine,
    ref: ItemRef,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    state: str | None = None,
    attempts: int = 20,
) -> dict[str, Any]:
    """Apply `change` to the item's `data` (creating the row if needed); the new data.

    Optimistic: the write matches the `version` that was read and bumps it; a concurrent
    change makes it re-read and re-apply. `state`, when given, is written in the same row.
    """
    ensure_work_item(engine, ref)
    for _ in range(attempts):
        with engine.begin() as conn:
            row = conn.execute(
                select(WorkItem.id, WorkItem.data, WorkItem.version).where(
                    and_(WorkItem.repo_full_name == ref.repo, WorkItem.issue_number == ref.number)
                )
            ).one()
            new = change(dict(row.data or {}))
            values: dict[str, Any] = {
                "data": new,
                "version": row.version + 1,
                "updated_at": database_now(conn),
            }
            if state is not None:
                values["state"] = state
            done = conn.execute(
                update(WorkItem)
                .where(and_(WorkItem.id == row.id, WorkItem.version == row.version))
                .values(**values)
            )
            if done.rowcount == 1:
                return new
    raise TerminalError(f"work item {ref.key}: data kept changing under {attempts} attempts")
