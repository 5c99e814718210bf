"""Items whose awaited command's job died are escalated instead of waiting forever.

Performs database I/O (work items and jobs) and `PipelineService.submit`. A command job
whose worker is killed on its last attempt (the lease sweep dead-letters it) never reports,
so its item would wait for the answer forever: no comment, no label, no escalation. Every
tick (leader-only, beside the label reconciler), each live item that awaits a command is
checked: when a job performing that command is dead and none is queued or running,
`StepFailed(code="job_dead", retryable=False)` answers the command with the newest dead
job's last error, and the item escalates like any step that cannot go on.

The state machine ignores an answer to a command the item no longer awaits, so a real answer
arriving first, a repeated tick or a second replica's tick changes nothing.

One read per tick: the command jobs that are queued, running or dead (the claim index's
leading `state`; finished jobs are not read), each matched to its item and command by its
payload, so repetitions (`:poll<n>`, the lock waiters' nudges) count too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from trunkline.pipeline import events as ev
from trunkline.pipeline.model import Spend
from trunkline.pipeline.runner import COMMAND_JOB, PipelineService
from trunkline.pipeline.serialization import PipelineDocumentError, decode_command
from trunkline.pipeline.states import TERMINAL
from trunkline.store.tables import Job, JobState

log = logging.getLogger(__name__)

JOB_DEAD = "job_dead"


@dataclass(frozen=True)
class DeadCommand:
    """A command whose job died; its item was answered with `StepFailed(code="job_dead")`."""

    repo: str
    issue: int
    command: str
    job: str
    error: str


@dataclass
class DeadCommandSweep:
    service: PipelineService

    def tick(self) -> list[DeadCommand]:
        """Answer every live item's awaited command whose jobs all ended, one of them dead."""
        live: set[tuple[str, int, str]] = set()
        dead: dict[tuple[str, int, str], Any] = {}
        with self.service.engine.connect() as conn:
            rows = conn.execute(
                select(Job.key, Job.state, Job.payload, Job.last_error, Job.attempts)
                .where(
                    Job.state.in_((JobState.QUEUED, JobState.RUNNING, JobState.DEAD)),
                    Job.kind == COMMAND_JOB,
                )
                .order_by(Job.updated_at, Job.id)
            ).all()
        for row in rows:
            try:
                command = decode_command(row.payload["command"])
                job_of = (str(row.payload["repo"]), int(row.payload["issue"]), command.key)
            except (KeyError, TypeError, ValueError, PipelineDocumentError):
                continue  # not a command this version can read: not an answer it awaits
            if row.state == JobState.DEAD:
                dead[job_of] = (row, type(command).__name__)  # the newest dead one wins
            else:
                live.add(job_of)
        found: list[DeadCommand] = []
        for (repo, issue, key), (row, step) in dead.items():
            if (repo, issue, key) in live:
                continue  # still being worked on (a repetition, a nudge)
            item = self.service.item(repo, issue)
            if item is None or item.state in TERMINAL or item.awaiting != key:
                continue  # answered, moved on, or gone: the dead job no longer matters
            found.append(self._answer(repo, issue, key, row, step))
        return found

    def _answer(self, repo: str, issue: int, key: str, row: Any, step: str) -> DeadCommand:
        error = str(row.last_error or "no error was recorded")
        reason = f"its job {row.key} died after {row.attempts} attempts: {error}"
        log.error(
            "awaited command's job is dead; the item escalates",
            extra={"repo": repo, "issue": issue, "command": key, "job": row.key},
        )
        self.service.submit(
            repo,
            issue,
            ev.StepFailed(
                answers=key,
                step=step,
                reason=reason[:1000],
                retryable=False,
                code=JOB_DEAD,
                spend=Spend(),
            ),
        )
        return DeadCommand(repo, issue, key, str(row.key), error[:300])
