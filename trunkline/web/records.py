"""What the dashboard, the metrics and the terminal show: plain frozen records.

Pure data; performs no I/O. `queries` fills them from the store; `timeline` turns them into
entries a person reads; templates and the terminal only display them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class WorkItemRecord:
    id: int
    repo: str
    issue_number: int
    title: str
    state: str
    branch: str | None
    pr_number: int | None
    head_sha: str | None
    priority: int
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.repo}#{self.issue_number}"


@dataclass(frozen=True)
class RepoStateCount:
    repo: str
    state: str
    count: int


@dataclass(frozen=True)
class QueueEntryRecord:
    repo: str
    base_branch: str
    position: int
    pr_number: int
    head_sha: str
    priority: int
    state: str
    gates: dict[str, str]
    integration_sha: str | None
    reason: str | None
    enqueued_at: datetime


@dataclass(frozen=True)
class LockRecord:
    repo: str
    subsystem: str
    slot: int
    holder: str
    epoch: int
    acquired_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True)
class WaiterRecord:
    repo: str
    subsystem: str
    holder: str
    requested_at: datetime
    waited_seconds: float


@dataclass(frozen=True)
class SpendRecord:
    role: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    steps: int


@dataclass(frozen=True)
class TimelineEventRecord:
    id: int
    work_item_id: int | None
    repo: str
    kind: str
    from_state: str | None
    to_state: str | None
    message: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class AgentRunRecord:
    id: int
    work_item_id: int | None
    role: str
    model: str
    state: str
    verdict: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    error: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class AgentStepRecord:
    id: int
    run_id: int
    work_item_id: int | None
    seq: int
    role: str
    model: str
    tool_calls: list[Any]
    verdict: str | None
    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    duration_ms: int
    created_at: datetime


@dataclass(frozen=True)
class Overview:
    generated_at: datetime
    state_counts: tuple[RepoStateCount, ...]
    items: tuple[WorkItemRecord, ...]
    queue: tuple[QueueEntryRecord, ...]
    locks: tuple[LockRecord, ...]
    waiters: tuple[WaiterRecord, ...]
    spend: tuple[SpendRecord, ...]
    budget_usd: float | None
    recent: tuple[TimelineEventRecord, ...]

    @property
    def spend_usd(self) -> float:
        return sum(row.cost_usd for row in self.spend)

    @property
    def repos(self) -> tuple[str, ...]:
        names = {c.repo for c in self.state_counts} | {i.repo for i in self.items}
        return tuple(sorted(names))

    def counts_for(self, repo: str) -> dict[str, int]:
        return {c.state: c.count for c in self.state_counts if c.repo == repo}

    def queues(self) -> dict[tuple[str, str], list[QueueEntryRecord]]:
        grouped: dict[tuple[str, str], list[QueueEntryRecord]] = {}
        for entry in self.queue:
            grouped.setdefault((entry.repo, entry.base_branch), []).append(entry)
        return grouped


@dataclass(frozen=True)
class WorkItemDetail:
    item: WorkItemRecord
    events: tuple[TimelineEventRecord, ...]
    runs: tuple[AgentRunRecord, ...]
    steps: tuple[AgentStepRecord, ...]
    approvals: tuple[dict[str, Any], ...] = field(default=())
