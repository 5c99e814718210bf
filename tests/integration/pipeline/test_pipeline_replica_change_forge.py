"""Agent work under at-least-once delivery and a change of replica, on the local forge.

The production composition (`pipeline_forge_rig`: `build_service` + `configure_dispatch`,
SQLite, the forge over HTTP and git, the scripted provider, bubblewrap):

- the executor's commit is pushed before it answers, so a second replica with a data
  directory of its own (one database, two disks) runs the self-check, opens the pull request
  and reviews on the pushed commit, without running the executor again;
- an executor job retried after its run completed (its result could not be decided: the
  database failed) reuses the recorded run: the model is not called again (the scripted
  provider would hand the reviewer's response to a second executor run) and one
  `agent_runs` row of role executor exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_forge_rig import (
    CALC_FIXED,
    HEAD_SHA,
    PLAN_ID,
    PYTEST,
    REPO,
    ForgeBot,
    forge_bot,
    tool,
    write_source,
)
from prerequisites import require_bwrap
from processes import wait_until
from sqlalchemy import select

from trunkline.errors import RetryableError
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.pipeline import events as ev
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.store.tables import AgentRun, Job

PLANNED = [
    tool(
        "submit_plan",
        summary="Fix add() so it adds.",
        steps=["Change the operator in src/calc.py", "Run the tests"],
        paths=["src/calc.py"],
        acceptance_criteria=["add(2, 3) == 5"],
        tests_to_run=["pytest -q"],
        risk_notes=[],
    ),
    tool("submit_review", subject=PLAN_ID, verdict="approve", summary="The plan is sound."),
]
EXECUTED = [
    tool("write_file", path="src/calc.py", content=CALC_FIXED),
    tool("submit_report", summary="Fixed the operator in add()."),
]
REVIEWED = [tool("submit_review", subject=HEAD_SHA, verdict="approve", summary="Correct.")]
POLICY = Policy.model_validate(
    {"version": 1, "agents": {"commands": [PYTEST]}, "queue": {"required_checks": ["ci"]}}
)


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeHandle]:
    require_bwrap()
    tmp = tmp_path_factory.mktemp("replica-change")
    source = write_source(tmp / "source")
    with running_forge(default_spec(source=source), data_dir=tmp / "forge") as handle:
        yield handle


def _roles(bot: ForgeBot) -> list[str]:
    with bot.engine.connect() as conn:
        return list(conn.execute(select(AgentRun.role).order_by(AgentRun.id)).scalars())


def _state(bot: ForgeBot, issue: int) -> WorkState:
    return bot.item(issue).state


def test_pipeline_second_replica_continues_from_the_pushed_executor_commit(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    database = tmp_path / "shared.db"
    with forge_bot(forge, tmp_path / "a", [*PLANNED, *EXECUTED], POLICY, database=database) as a:
        issue = a.new_issue("replica change")
        a.label(issue, "bob", "label-replica-change")
        a.drain(until=lambda: _state(a, issue) is WorkState.SELF_CHECK)
        assert _state(a, issue) is WorkState.SELF_CHECK, a.item(issue).history
        # answered only once its commit was on the forge
        pushed = a.branch_sha(issue)
        assert pushed is not None
        fixed = a.github.get_file(REPO, "src/calc.py", pushed)
        assert fixed is not None
        assert fixed.text == CALC_FIXED
        titles = dict(a.titles)

    # another replica: the same database, a data directory of its own (no worktree, no mirror)
    with forge_bot(forge, tmp_path / "b", REVIEWED, POLICY, database=database) as b:
        b.titles.update(titles)
        assert not (tmp_path / "b" / "data").exists() or not any(
            (tmp_path / "b" / "data").iterdir()
        )
        b.drain(until=lambda: _state(b, issue) is WorkState.QUEUED_FOR_MERGE)
        item = b.item(issue)
        assert item.state is WorkState.QUEUED_FOR_MERGE, item.history
        assert item.head_sha == pushed  # the self-checked, reviewed and queued commit
        assert b.branch_sha(issue) == pushed
        assert item.pr is not None
        assert b.github.get_pull(REPO, item.pr).head_sha == pushed
        assert _roles(b) == ["planner", "plan_reviewer", "executor", "reviewer"]
        assert b.failed_jobs() == []


def test_pipeline_executor_job_retried_after_its_run_reuses_the_recorded_run(
    forge: ForgeHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [*PLANNED, *EXECUTED, *REVIEWED]
    with forge_bot(forge, tmp_path / "bot", script, POLICY) as bot:
        issue = bot.new_issue("retried executor")
        submit = bot.service.submit
        refused: list[str] = []

        def failing_once(repo: str, number: int, event: ev.Event, **options: Any) -> Any:
            if isinstance(event, ev.ExecutionDone) and not refused:
                refused.append(event.answers)
                raise RetryableError("the database went away while deciding")
            return submit(repo, number, event, **options)

        monkeypatch.setattr(bot.service, "submit", failing_once)
        bot.label(issue, "bob", "label-retried-executor")

        def queued() -> bool:
            bot.drain(until=lambda: _state(bot, issue) is WorkState.QUEUED_FOR_MERGE)
            return _state(bot, issue) is WorkState.QUEUED_FOR_MERGE

        wait_until("the item to reach the merge queue", queued, timeout=60)
        assert len(refused) == 1
        with bot.engine.connect() as conn:
            attempts = conn.execute(
                select(Job.attempts).where(Job.key == f"pipeline_command:{refused[0]}")
            ).scalar_one()
        assert attempts == 2  # the job was delivered again ...
        assert _roles(bot) == ["planner", "plan_reviewer", "executor", "reviewer"]  # ... once
        item = bot.item(issue)
        assert item.head_sha is not None
        assert bot.branch_sha(issue) == item.head_sha
