"""Secrets in failure texts (an exception, a dead job's error) reach neither GitHub nor the
stored timeline nor a job's `last_error`: the composition root's redactor sits at each."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline_harness import MAINTAINER, REPO, Harness, labeled_payload, make_harness
from pydantic import SecretStr
from sqlalchemy import select, update

from trunkline.agents.redaction import Redactor, redactor_for
from trunkline.clock import SystemClock
from trunkline.errors import TerminalError
from trunkline.pipeline import commands as cmd
from trunkline.pipeline.dead_commands import DeadCommandSweep
from trunkline.pipeline.runner import CommandContext, Performed
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.settings import Settings
from trunkline.store.tables import Job, JobState, TimelineEvent

SECRET = "sk-operator-api-key-value"  # a SecretStr setting no token pattern matches
DB_PASSWORD = "Pa55w0rdInDatabaseUrl"
POLICY = Policy.model_validate({"version": 1, "queue": {"required_checks": ["ci"]}})


def _redactor() -> Redactor:
    settings = Settings(
        anthropic_api_key=SecretStr(SECRET),
        database_url=f"postgresql://bot:{DB_PASSWORD}@db/x",
    )
    return redactor_for(settings, {})


def _leaks(harness: Harness, issue: int) -> dict[str, bool]:
    """Where a secret was found: GitHub comments, timeline messages, job errors."""
    comments = " ".join(c.body for c in harness.github.comments_on(REPO, issue))
    with harness.engine.connect() as conn:
        messages = " ".join(m or "" for (m,) in conn.execute(select(TimelineEvent.message)))
        errors = " ".join(e or "" for (e,) in conn.execute(select(Job.last_error)))

    def leaked(text: str) -> bool:
        return SECRET in text or DB_PASSWORD in text

    return {"github": leaked(comments), "timeline": leaked(messages), "jobs": leaked(errors)}


def test_pipeline_redacts_a_terminal_failure_text(tmp_path: Path) -> None:
    def planner(command: cmd.RunPlanner, context: CommandContext) -> Performed:
        raise TerminalError(f"git push failed: invalid credentials {SECRET}")

    harness = make_harness(tmp_path, POLICY, {cmd.RunPlanner: planner}, redactor=_redactor())
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.ESCALATED
    assert any(SECRET in transition.reason for transition in item.history)  # the raw text
    assert _leaks(harness, issue) == {"github": False, "timeline": False, "jobs": False}
    assert any("[REDACTED]" in c.body for c in harness.github.comments_on(REPO, issue))


def test_pipeline_redacts_a_dead_jobs_error(tmp_path: Path) -> None:
    def planner(command: cmd.RunPlanner, context: CommandContext) -> Performed:
        raise ConnectionError(f"connection to postgresql://bot:{DB_PASSWORD}@db failed {SECRET}")

    harness = make_harness(tmp_path, POLICY, {cmd.RunPlanner: planner}, redactor=_redactor())
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()  # the planner's first attempt fails; its retry waits for its backoff
    with harness.engine.connect() as conn:
        [error] = conn.execute(select(Job.last_error).where(Job.key.like("%:run-planner")))
    assert error[0] is not None
    assert "ConnectionError" in error[0]
    assert _leaks(harness, issue)["jobs"] is False
    # the worker dies on the last attempt: the job is dead with the error recorded above
    with harness.engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.key.like("%:run-planner"))
            .values(state=JobState.DEAD, attempts=Job.max_attempts, finished_at=datetime.now(UTC))
        )
    assert len(DeadCommandSweep(harness.service, SystemClock()).tick()) == 1
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.ESCALATED
    assert _leaks(harness, issue) == {"github": False, "timeline": False, "jobs": False}
