"""The durable timeline on SQLite and PostgreSQL: rows a reader can rebuild the run from."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents_testkit import (
    CALC_FIXED,
    HEAD_SHA,
    approve_plan,
    config,
    make_repo,
    submit_plan,
    tool,
)
from sqlalchemy import Engine, select

from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import WorkItem
from trunkline.agents.sandbox import RefusingSandbox
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.store_timeline import RUN_FINISHED, STEP_NOTE, StoreTimeline
from trunkline.agents.timeline import FanOutTimeline, InMemoryTimeline
from trunkline.agents.work_item_rows import ItemRef, WorkItemKeyError, ensure_work_item
from trunkline.agents.work_item_runner import WorkItemRunner
from trunkline.clock import FakeClock
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade
from trunkline.store.tables import AgentRun, AgentStep, TimelineEvent
from trunkline.store.tables import WorkItem as WorkItemRow

SECRET = "CANARY-" + "7f3a9c" * 4


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'timeline.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def test_agents_store_timeline_records_every_run_and_step(engine: Engine, tmp_path: Path) -> None:
    repo_name = f"acme/t{uuid.uuid4().hex[:8]}"
    item = WorkItem(f"{repo_name}#7", "add() subtracts", "Fix add().")
    repo = make_repo(tmp_path)
    (repo.worktree / "notes.txt").write_text(f"token {SECRET}\n" + "x" * 9000)
    script: list[dict[str, object]] = [
        {
            **tool("read_file", path="notes.txt"),
            "usage": {"input_tokens": 100, "output_tokens": 20},
        },
        tool("read_file", path="../outside/secret.txt"),
        submit_plan(),
        approve_plan(),
        tool("write_file", path="src/calc.py", content=CALC_FIXED),
        {"content": [{"type": "text", "text": "done, I think"}]},  # no tool call: a repair turn
        tool("submit_report", summary="Fixed the operator."),
        tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Correct."),
    ]
    memory = InMemoryTimeline()
    store = StoreTimeline(engine, result_cap=500)
    cfg = config()
    runner = WorkItemRunner(
        item=item,
        worktree=repo.worktree,
        base_sha=repo.base_sha,
        config=cfg,
        provider=ScriptedProvider.of(script),
        sandbox=RefusingSandbox("no commands here"),
        timeline=FanOutTimeline((store, memory)),
        clock=FakeClock(),
        redactor=Redactor.of([SECRET]),
    )
    outcome = runner.run()
    assert outcome.kind.value == "completed"

    with engine.connect() as conn:
        item_row = conn.execute(
            select(WorkItemRow).where(WorkItemRow.repo_full_name == repo_name)
        ).one()
        runs = conn.execute(
            select(AgentRun).where(AgentRun.work_item_id == item_row.id).order_by(AgentRun.id)
        ).all()
        steps = conn.execute(
            select(AgentStep.__table__, AgentRun.role.label("run_role"))
            .join(AgentRun, AgentRun.id == AgentStep.run_id)
            .where(AgentRun.work_item_id == item_row.id)
            .order_by(AgentStep.id)
        ).all()
        events = conn.execute(
            select(TimelineEvent)
            .where(TimelineEvent.work_item_id == item_row.id)
            .order_by(TimelineEvent.id)
        ).all()

    assert item_row.issue_number == 7
    assert [r.role for r in runs] == ["planner", "plan_reviewer", "executor", "reviewer"]
    assert [r.state for r in runs] == ["succeeded"] * 4
    assert [r.verdict for r in runs] == [None, "approve", None, "approve"]
    assert all(r.model == cfg.model and r.finished_at is not None for r in runs)
    assert len(steps) == len(memory.steps) == 8
    for row, step in zip(steps, memory.steps, strict=True):
        assert row.seq == step.index
        assert row.role == row.run_role == step.role
        assert row.prompt_digest == step.prompt_digest
        assert len(row.prompt_digest) == 64
        assert row.stop_reason == step.stop_reason
        assert row.output_tokens == step.usage.output_tokens
        assert row.cost_usd == pytest.approx(float(step.cost_usd))
        assert [c["name"] for c in row.tool_calls] == [c.name for c in step.tool_calls]
    # tokens and cost of each run add up to its steps
    for run in runs:
        mine = [s for s in steps if s.run_id == run.id]
        assert run.output_tokens == sum(s.output_tokens for s in mine)
        assert run.input_tokens == sum(s.input_tokens for s in mine)
        assert run.cost_usd == pytest.approx(sum(s.cost_usd for s in mine))
    first = steps[0]
    assert first.input_tokens == 100
    assert first.output_tokens == 20
    read = first.tool_calls[0]
    assert read["arguments"] == json.dumps({"path": "notes.txt"})
    assert SECRET not in read["result"]
    assert "[REDACTED]" in read["result"]
    assert len(read["result"]) < 600
    assert "chars capped" in read["result"]
    refused = steps[1].tool_calls[0]
    assert refused["refused"] is True
    assert refused["refusal_reason"]
    # the repair turn's note and every run's finish are timeline events
    notes = [e for e in events if e.kind == STEP_NOTE]
    assert len(notes) == 1
    assert "without calling submit_report" in notes[0].message
    finished = [e for e in events if e.kind == RUN_FINISHED]
    assert [e.data["status"] for e in finished] == ["succeeded"] * 4
    assert finished[0].data["usage"]["input_tokens"] >= 100
    dump = json.dumps([dict(r.tool_calls[0]) for r in steps if r.tool_calls])
    assert SECRET not in dump + json.dumps([e.data for e in events])


def test_agents_store_timeline_records_a_failed_run(engine: Engine, tmp_path: Path) -> None:
    repo_name = f"acme/f{uuid.uuid4().hex[:8]}"
    repo = make_repo(tmp_path)
    ensure_work_item(engine, ItemRef(repo_name, 3), title="existing")
    runner = WorkItemRunner(
        item=WorkItem(f"{repo_name}#3", "t", "b"),
        worktree=repo.worktree,
        base_sha=repo.base_sha,
        config=config(),
        provider=ScriptedProvider.of(
            [{"content": [{"type": "text", "text": "cut"}], "stop_reason": "max_tokens"}]
        ),
        sandbox=RefusingSandbox("none"),
        timeline=StoreTimeline(engine),
        clock=FakeClock(),
        redactor=Redactor.of([]),
    )
    outcome = runner.run()
    assert outcome.reason is not None
    assert outcome.reason.value == "max_tokens_stop"
    with engine.connect() as conn:
        items = conn.execute(
            select(WorkItemRow).where(WorkItemRow.repo_full_name == repo_name)
        ).all()
        (run,) = conn.execute(select(AgentRun).where(AgentRun.work_item_id == items[0].id)).all()
        (step,) = conn.execute(select(AgentStep).where(AgentStep.run_id == run.id)).all()
    assert len(items) == 1
    assert items[0].title == "existing"
    assert (run.state, run.error) == ("failed", "max_tokens_stop")
    assert step.stop_reason == "max_tokens"


def test_agents_work_item_keys_are_parsed_strictly() -> None:
    assert ItemRef.parse("acme/web#12") == ItemRef("acme/web", 12)
    for bad in ("acme#1", "acme/web#0", "acme/web", "a/b/c#1", "acme/web#1 "):
        with pytest.raises(WorkItemKeyError):
            ItemRef.parse(bad)
