"""The dashboard reads what the agent runtime really writes.

A scripted planner run records through the agents' durable sink (`StoreTimeline`, rows in
agent_runs / agent_steps / timeline_events); the work item page, the live feed's query and
`trunkline timeline --json` then show its steps, tool calls, tokens and cost.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient

from trunkline.agents.agent_loop import RunContext, run_role
from trunkline.agents.budget import BudgetLimits, ModelPrice
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import READ_ONLY_TOOLS, WorkItem, planner_message, planner_spec
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.store_timeline import StoreTimeline
from trunkline.agents.tools import Toolbox
from trunkline.clock import SystemClock
from trunkline.settings import load_settings
from trunkline.store.testing import migrated_engine
from trunkline.web.app import create_dashboard_app
from trunkline.web.queries import load_work_item, new_since
from trunkline.web.timeline import Category, Links, build_entries


def test_rows_of_a_real_agent_run_are_shown(tmp_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'store.db'}")
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / "orders.py").write_text("def create_order(body):\n    return body\n")
    plan = {
        "summary": "Validate order bodies",
        "steps": ["add a model"],
        "paths": ["orders.py"],
        "acceptance_criteria": ["422 on bad input"],
    }
    script = [
        {"content": [{"type": "tool_use", "name": "read_file", "input": {"path": "orders.py"}}]},
        {"content": [{"type": "tool_use", "name": "submit_plan", "input": plan}]},
    ]
    ctx = RunContext(
        work_item="acme/api#21",
        model="scripted-model",
        provider=ScriptedProvider.of(script),
        prices={"scripted-model": ModelPrice(input=Decimal(3), output=Decimal(15))},
        limits=BudgetLimits(10**9, Decimal(100), 10**6, 10, 2),
        clock=SystemClock(),
        timeline=StoreTimeline(engine),
        redactor=Redactor.of([]),
    )
    try:
        result = run_role(
            ctx,
            planner_spec(1000),
            Toolbox(worktree, READ_ONLY_TOOLS),
            planner_message(WorkItem("acme/api#21", "Validate orders", "body")),
        )
        assert result.product is not None

        detail = load_work_item(engine, "acme/api", 21)
        assert detail is not None
        entries = build_entries(
            detail.events, detail.steps, Links("https://github.com", "acme/api")
        )
        steps = [e for e in entries if e.key.startswith("s")]
        assert len(steps) == 2
        assert steps[0].tool_calls[0].name == "read_file"
        assert "def create_order" in steps[0].tool_calls[0].result
        assert steps[1].tool_calls[0].name == "submit_plan"
        kinds = {e.title for e in entries if e.category is Category.AGENT_STEP}
        assert "agent run started" in kinds
        assert "agent run finished" in kinds
        assert sum(s.input_tokens for s in detail.steps) > 0

        events, live_steps = new_since(engine, detail.item.id, 0, 0)
        assert len(live_steps) == 2
        assert len(events) == len(detail.events)

        app = create_dashboard_app(engine, load_settings(), SystemClock())
        with TestClient(app) as http:
            html = http.get("/items/acme/api/21").text
        assert "planner step 1 (scripted-model)" in html
        assert "read_file" in html
        assert "def create_order(body):" in html
    finally:
        engine.dispose()
