"""The durable timeline: a `TimelineSink` writing the store's `agent_runs` / `agent_steps`.

Performs database I/O (one short transaction per event, on SQLite or PostgreSQL). Rows, as
`trunkline timeline` and the dashboard read them (see docs/agents.md, "Timeline rows"):

* `agent_runs`: one row per role run, tied to the work item row of `OWNER/REPO#N` (created
  in state `queued` when the dispatch pipeline has not made it yet): role, model, state
  (`running`, then `succeeded` | `failed` | `exhausted` | `taken_over`), the last verdict,
  input tokens (uncached + cache writes + cache reads), output tokens, cost (USD), `error`
  (the reason of a run that did not succeed), started / finished.
* `agent_steps`: one row per model turn, `seq` from 1: role, model, SHA-256 prompt digest,
  stop reason, tool calls (JSON list, below), verdict, tokens as above, cost, duration (ms).
* Columns the tables lack go into the existing `timeline_events.data` JSON: one
  `agent_run_started` and one `agent_run_finished` event per run (run id, the runtime's run
  key, status, reason, the exact decimal cost, the usage split with cache counters, duration),
  and one `agent_step_note` event per step that carries a note (provider error, invalid
  product, max_tokens stop).

Tool calls arrive already redacted and capped by the agent loop; this sink caps each string
again at `result_cap` (defence in depth, so no row grows without bound).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, update

from trunkline.agents.messages import Usage
from trunkline.agents.timeline import RunFinished, RunStarted, StepRecord, ToolCallRecord
from trunkline.agents.work_item_rows import ItemRef, ensure_work_item
from trunkline.store.dialect import database_now
from trunkline.store.tables import AgentRun, AgentStep, TimelineEvent

RUN_STARTED = "agent_run_started"
RUN_FINISHED = "agent_run_finished"
STEP_NOTE = "agent_step_note"


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
    }


def all_input_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def _cap(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap] + f"... [{len(text) - cap} chars capped]"


def tool_call_json(call: ToolCallRecord, cap: int) -> dict[str, Any]:
    return {
        "id": call.tool_use_id,
        "name": call.name,
        "arguments": _cap(call.arguments, cap),
        "result": _cap(call.result, cap),
        "is_error": call.is_error,
        "refused": call.refused,
        "refusal_reason": _cap(call.refusal_reason, cap) if call.refusal_reason else None,
    }


@dataclass
class _OpenRun:
    row_id: int
    work_item_id: int
    repo: str
    started_at: datetime
    verdict: str | None = None


@dataclass
class StoreTimeline:
    """Writes every run and step of one runtime to the store (not shared across threads)."""

    engine: Engine
    result_cap: int = 4000
    _runs: dict[str, _OpenRun] = field(default_factory=dict)
    _items: dict[str, int] = field(default_factory=dict)

    def _work_item_id(self, key: str) -> int:
        if key not in self._items:
            self._items[key] = ensure_work_item(self.engine, ItemRef.parse(key))
        return self._items[key]

    def _event(
        self, conn: Connection, run: _OpenRun, kind: str, message: str, data: dict[str, Any]
    ) -> None:
        conn.execute(
            insert(TimelineEvent).values(
                work_item_id=run.work_item_id,
                repo_full_name=run.repo,
                kind=kind,
                message=message,
                data=data,
                created_at=database_now(conn),
            )
        )

    def run_started(self, event: RunStarted) -> None:
        ref = ItemRef.parse(event.work_item)
        item_id = self._work_item_id(event.work_item)
        with self.engine.begin() as conn:
            row_id = conn.execute(
                insert(AgentRun)
                .values(
                    work_item_id=item_id,
                    role=event.role,
                    model=event.model,
                    state="running",
                    input_tokens=0,
                    output_tokens=0,
                    cost_usd=0.0,
                    started_at=event.started_at,
                )
                .returning(AgentRun.id)
            ).scalar_one()
            run = _OpenRun(int(row_id), item_id, ref.repo, event.started_at)
            self._event(
                conn,
                run,
                RUN_STARTED,
                f"{event.role} started ({event.model})",
                {"run_id": run.row_id, "run_key": event.run_id, "role": event.role},
            )
        self._runs[event.run_id] = run

    def step_recorded(self, step: StepRecord) -> None:
        run = self._runs[step.run_id]
        if step.verdict is not None:
            run.verdict = step.verdict
        with self.engine.begin() as conn:
            conn.execute(
                insert(AgentStep).values(
                    run_id=run.row_id,
                    seq=step.index,
                    role=step.role,
                    model=step.model,
                    prompt_digest=step.prompt_digest,
                    tool_calls=[tool_call_json(c, self.result_cap) for c in step.tool_calls],
                    verdict=step.verdict,
                    stop_reason=step.stop_reason,
                    input_tokens=all_input_tokens(step.usage),
                    output_tokens=step.usage.output_tokens,
                    cost_usd=float(step.cost_usd),
                    duration_ms=round(step.duration_seconds * 1000),
                    created_at=database_now(conn),
                )
            )
            if step.note:
                self._event(
                    conn,
                    run,
                    STEP_NOTE,
                    _cap(step.note, self.result_cap),
                    {
                        "run_id": run.row_id,
                        "run_key": step.run_id,
                        "seq": step.index,
                        "usage": usage_json(step.usage),
                        "cost_usd": str(step.cost_usd),
                    },
                )

    def run_finished(self, event: RunFinished) -> None:
        run = self._runs.pop(event.run_id)
        with self.engine.begin() as conn:
            conn.execute(
                update(AgentRun)
                .where(AgentRun.id == run.row_id)
                .values(
                    state=event.status,
                    verdict=run.verdict,
                    input_tokens=all_input_tokens(event.usage),
                    output_tokens=event.usage.output_tokens,
                    cost_usd=float(event.cost_usd),
                    error=event.reason,
                    finished_at=event.finished_at,
                )
            )
            self._event(
                conn,
                run,
                RUN_FINISHED,
                f"run {event.status}" + (f" ({event.reason})" if event.reason else ""),
                {
                    "run_id": run.row_id,
                    "run_key": event.run_id,
                    "status": event.status,
                    "reason": event.reason,
                    "verdict": run.verdict,
                    "usage": usage_json(event.usage),
                    "cost_usd": str(event.cost_usd),
                    "duration_seconds": (event.finished_at - run.started_at).total_seconds(),
                },
            )
