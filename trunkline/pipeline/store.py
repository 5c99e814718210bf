"""Work items in the store: the `work_items` row of one (repository, issue) and its timeline.

Performs database I/O inside the caller's transaction (every function takes a `Connection`),
so the pipeline runner can load, decide, save and enqueue atomically. Layout:

- one `work_items` row per (repo, issue) — the same row the agents runtime uses
  (`trunkline.agents.work_item_rows`), which keeps its own keys in `data` (`takeover`,
  `plan`); this module owns only `data["pipeline"]` (the whole `WorkItem` as JSON,
  `trunkline.pipeline.serialization`) and `data["installation_id"]`, and preserves every
  other key;
- the `state`, `pr_number` and `head_sha` columns mirror the item for the dashboard;
- optimistic concurrency on the row's `version` column (not the item's own version: the
  agents runtime bumps the row too): `save_item` writes only when the row still has the
  version `load_item` read, else `PipelineConflictError` (retryable: re-read, re-decide);
- one `timeline_events` row (kind `transition`, from/to state, reason) per transition the
  decision added to the item's history; the reason passes the caller's `Redactor` first (it
  may quote an exception or a check's output, and the dashboard and CLI show it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from trunkline.agents.redaction import Redactor
from trunkline.errors import RetryableError
from trunkline.pipeline.model import Transition, WorkItem
from trunkline.pipeline.serialization import decode_item, encode_item
from trunkline.store.dialect import insert_ignoring_conflicts
from trunkline.store.tables import TimelineEvent
from trunkline.store.tables import WorkItem as WorkItemRow

PIPELINE_KEY = "pipeline"
INSTALLATION_KEY = "installation_id"
TRANSITION_KIND = "transition"
_ROWS = WorkItemRow.__table__


class PipelineConflictError(RetryableError):
    """The item's row changed between read and write; decide again on a fresh read."""


@dataclass(frozen=True)
class StoredItem:
    """What `load_item` read: the row id and version (for the conditional write), the
    pipeline's item (None: the row exists only for the agents runtime, or not at all) and
    the rest of `data`."""

    row_id: int | None
    row_version: int
    item: WorkItem | None
    data: dict[str, Any]

    @property
    def installation_id(self) -> int | None:
        value = self.data.get(INSTALLATION_KEY)
        return int(value) if value is not None else None


def load_item(conn: Connection, repo: str, issue: int, *, for_update: bool = True) -> StoredItem:
    """The item of (repo, issue); the row is locked (`FOR UPDATE`) unless `for_update=False`."""
    query = select(WorkItemRow.id, WorkItemRow.version, WorkItemRow.data).where(
        and_(WorkItemRow.repo_full_name == repo, WorkItemRow.issue_number == issue)
    )
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        return StoredItem(None, 0, None, {})
    data = dict(row.data or {})
    document = data.get(PIPELINE_KEY)
    item = decode_item(document) if document is not None else None
    return StoredItem(int(row.id), int(row.version), item, data)


def save_item(
    conn: Connection,
    stored: StoredItem,
    item: WorkItem,
    now: datetime,
    *,
    installation_id: int | None = None,
    title: str | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Write `item` over what `stored` read (conditional on the row version); returns the
    row id. Appends a timeline row per transition that is new in `item.history`, its reason
    redacted by `redactor` (default: token shapes only). `title`, when given, replaces the
    row's issue title (the dashboard shows it)."""
    data = dict(stored.data)
    data[PIPELINE_KEY] = encode_item(item)
    if installation_id is not None:
        data[INSTALLATION_KEY] = installation_id
    columns: dict[str, Any] = {
        "state": item.state.value,
        "pr_number": item.pr,
        "head_sha": item.head_sha,
        "data": data,
        "updated_at": now,
    }
    if title is not None:
        columns["title"] = title[:500]
    if stored.row_id is None:
        inserted = insert_ignoring_conflicts(
            conn,
            _ROWS,  # type: ignore[arg-type]
            {
                "repo_full_name": item.repo,
                "issue_number": item.issue,
                "title": "",
                "priority": 0,
                "version": 1,
                "created_at": now,
                **columns,
            },
            ("repo_full_name", "issue_number"),
        )
        if not inserted:
            raise PipelineConflictError(f"{item.key}: created concurrently")
        row_id = int(
            conn.execute(
                select(WorkItemRow.id).where(
                    and_(
                        WorkItemRow.repo_full_name == item.repo,
                        WorkItemRow.issue_number == item.issue,
                    )
                )
            ).scalar_one()
        )
    else:
        row_id = stored.row_id
        changed = conn.execute(
            update(WorkItemRow)
            .where(and_(WorkItemRow.id == row_id, WorkItemRow.version == stored.row_version))
            .values(version=stored.row_version + 1, **columns)
        ).rowcount
        if changed != 1:
            raise PipelineConflictError(f"{item.key}: changed concurrently")
    previous = stored.item.history if stored.item is not None else ()
    _append_transitions(
        conn,
        row_id,
        item.repo,
        new_transitions(previous, item.history),
        now,
        redactor if redactor is not None else Redactor(),
    )
    return row_id


def new_transitions(
    before: Sequence[Transition], after: Sequence[Transition]
) -> tuple[Transition, ...]:
    """The transitions `after` added to `before` (the history is bounded: the oldest entries
    may have been dropped from `after`, new ones are always appended)."""
    seen = set(before)
    return tuple(transition for transition in after if transition not in seen)


def list_items(conn: Connection, repo: str | None = None) -> list[WorkItem]:
    """Every pipeline item (of `repo`), ordered by repository and issue."""
    query = select(WorkItemRow.data).order_by(WorkItemRow.repo_full_name, WorkItemRow.issue_number)
    if repo is not None:
        query = query.where(WorkItemRow.repo_full_name == repo)
    items = []
    for (data,) in conn.execute(query):
        document = (data or {}).get(PIPELINE_KEY)
        if document is not None:
            items.append(decode_item(document))
    return items


def lock_repository_items(conn: Connection, repo: str) -> None:
    """Lock every item row of `repo` (`FOR UPDATE`) so two admissions of one repository run
    one after the other (SQLite: its `BEGIN IMMEDIATE` already serialises writers). Rows are
    locked in id order, so two admissions never wait for each other in a cycle (deadlock)."""
    conn.execute(
        select(WorkItemRow.id)
        .where(WorkItemRow.repo_full_name == repo)
        .order_by(WorkItemRow.id)
        .with_for_update()
    ).all()


def _append_transitions(
    conn: Connection,
    row_id: int,
    repo: str,
    transitions: Sequence[Transition],
    now: datetime,
    redactor: Redactor,
) -> None:
    for transition in transitions:
        conn.execute(
            insert(TimelineEvent).values(
                work_item_id=row_id,
                repo_full_name=repo,
                kind=TRANSITION_KIND,
                from_state=(
                    transition.from_state.value if transition.from_state is not None else None
                ),
                to_state=transition.to_state.value,
                message=redactor.redact(transition.reason),
                data={"at": transition.at.isoformat()},
                created_at=now,
            )
        )
