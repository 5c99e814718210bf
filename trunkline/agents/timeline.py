"""The timeline port: what an agent run records, and an in-memory recording sink.

Pure data plus a list-backed sink; performs no I/O. A run records `RunStarted`, one
`StepRecord` per model turn (role, model, prompt digest, tool calls with arguments and
capped, secret-redacted results, verdict, tokens, cost, duration) and `RunFinished`.
The durable sink (agent_runs / agent_steps tables) is `store_timeline.StoreTimeline`;
`FanOutTimeline` feeds several sinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from trunkline.agents.messages import Usage


@dataclass(frozen=True)
class ToolCallRecord:
    tool_use_id: str
    name: str
    arguments: str  # JSON, redacted and capped
    result: str  # redacted and capped
    is_error: bool
    refused: bool
    refusal_reason: str | None = None


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    work_item: str
    role: str
    model: str
    started_at: datetime


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    index: int
    role: str
    model: str
    prompt_digest: str
    stop_reason: str
    tool_calls: tuple[ToolCallRecord, ...]
    usage: Usage
    cost_usd: Decimal
    duration_seconds: float
    verdict: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    status: str  # "succeeded" | "failed" | "exhausted" | "taken_over"
    reason: str | None
    usage: Usage
    cost_usd: Decimal
    finished_at: datetime


class TimelineSink(Protocol):
    def run_started(self, event: RunStarted) -> None: ...

    def step_recorded(self, step: StepRecord) -> None: ...

    def run_finished(self, event: RunFinished) -> None: ...


@dataclass(frozen=True)
class FanOutTimeline:
    """Hands every event to each sink in order (e.g. the store and an in-memory copy)."""

    sinks: tuple[TimelineSink, ...]

    def run_started(self, event: RunStarted) -> None:
        for sink in self.sinks:
            sink.run_started(event)

    def step_recorded(self, step: StepRecord) -> None:
        for sink in self.sinks:
            sink.step_recorded(step)

    def run_finished(self, event: RunFinished) -> None:
        for sink in self.sinks:
            sink.run_finished(event)


@dataclass
class InMemoryTimeline:
    """Keeps every event in order; for tests, the demo and the CLI's JSON dump."""

    started: list[RunStarted] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    finished: list[RunFinished] = field(default_factory=list)

    def run_started(self, event: RunStarted) -> None:
        self.started.append(event)

    def step_recorded(self, step: StepRecord) -> None:
        self.steps.append(step)

    def run_finished(self, event: RunFinished) -> None:
        self.finished.append(event)

    def tool_calls(self) -> list[ToolCallRecord]:
        return [call for step in self.steps for call in step.tool_calls]

    def refused_calls(self) -> list[ToolCallRecord]:
        return [call for call in self.tool_calls() if call.refused]

    def all_text(self) -> str:
        """Every recorded string, joined: what a leak check searches."""
        parts: list[str] = []
        for step in self.steps:
            parts.extend([step.prompt_digest, step.note or "", step.verdict or ""])
            for call in step.tool_calls:
                parts.extend([call.arguments, call.result, call.refusal_reason or ""])
        for done in self.finished:
            parts.append(done.reason or "")
        return "\n".join(parts)
