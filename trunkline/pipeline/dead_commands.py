"""Items whose awaited command's job died are escalated instead of waiting forever.

Performs database I/O (work items, jobs, the role-run ledger) and `PipelineService.submit`.
A command job whose worker is killed on its last attempt (the lease sweep dead-letters it)
never reports, so its item would wait for the answer forever: no comment, no label, no
escalation. Every tick (a leader-only periodic task, `pipeline_dead_commands`), each live
item whose awaited command has a dead job and none queued or running is settled:

- a run of the command still holds an unexpired claim (`RoleRunLedger.live_claim`): left
  alone, that run may still answer;
- the command's run recorded its outcome but the worker died before reporting it: the
  command is enqueued once more (`<key>:replay`, once: a replay that dies too escalates),
  and the run's outcome is reused, never paid for again;
- otherwise `StepFailed(code="job_dead", retryable=False)` answers the command with the
  newest dead job's last error and what the command's unfinished runs spent
  (`RoleRunLedger.left_behind`), and the item escalates like any step that cannot go on.

The state machine ignores an answer to a command the item no longer awaits, so a real answer
arriving first, a repeated tick or a second replica's tick changes nothing. An item whose
settling fails is logged and tried again next tick; the others go on.

One read per tick: the command jobs that are queued or running, and those that died within
`DEAD_JOB_HORIZON` (the claim index's leading `state`), each matched to its item and command
by its payload, so repetitions (`:poll<n>`, the lock waiters' nudges) count too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from trunkline.agents.work_item_rows import ItemRef
from trunkline.clock import Clock
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import Spend
from trunkline.pipeline.role_runs import RoleRunLedger
from trunkline.pipeline.runner import (
    COMMAND_JOB,
    COMMAND_JOB_MAX_ATTEMPTS,
    COMMAND_JOB_PRIORITY,
    PipelineService,
    command_job_key,
)
from trunkline.pipeline.serialization import PipelineDocumentError, decode_command
from trunkline.pipeline.states import TERMINAL
from trunkline.store.dialect import database_now
from trunkline.store.jobs import NewJob, enqueue_in
from trunkline.store.tables import Job, JobState

log = logging.getLogger(__name__)

JOB_DEAD = "job_dead"
DEAD_COMMANDS_TICK_SECONDS = 60.0
DEAD_JOB_HORIZON = timedelta(days=7)
"""Dead jobs older than this are not read again (the sweep runs every minute on the leader;
a bot down for longer leaves such items to `trunkline jobs --dead`)."""
REPLAY_SUFFIX = ":replay"


@dataclass(frozen=True)
class DeadCommand:
    """A command whose job died, and what the sweep did: `escalated` or `replayed`."""

    repo: str
    issue: int
    command: str
    job: str
    error: str
    action: str


@dataclass
class DeadCommandSweep:
    service: PipelineService
    clock: Clock

    def tick(self) -> list[DeadCommand]:
        """Settle every live item's awaited command whose jobs all ended, one of them dead."""
        live: set[tuple[str, int, str]] = set()
        dead: dict[tuple[str, int, str], Any] = {}
        with self.service.engine.connect() as conn:
            since = database_now(conn) - DEAD_JOB_HORIZON
            rows = conn.execute(
                select(Job.id, Job.key, Job.state, Job.payload, Job.last_error, Job.attempts)
                .add_columns(Job.updated_at)
                .where(
                    or_(
                        Job.state.in_((JobState.QUEUED, JobState.RUNNING)),
                        and_(Job.state == JobState.DEAD, Job.finished_at >= since),
                    ),
                    Job.kind == COMMAND_JOB,
                )
            ).all()
        for row in sorted(rows, key=lambda row: (row.updated_at, row.id)):
            try:
                command = decode_command(row.payload["command"])
                job_of = (str(row.payload["repo"]), int(row.payload["issue"]), command.key)
            except (KeyError, TypeError, ValueError, PipelineDocumentError):
                continue  # not a command this version can read: not an answer it awaits
            if row.state == JobState.DEAD:
                dead[job_of] = (row, type(command).__name__)  # the newest dead one wins
            else:
                live.add(job_of)
        settled: list[DeadCommand] = []
        for (repo, issue, key), (row, step) in dead.items():
            if (repo, issue, key) in live:
                continue  # still being worked on (a repetition, a nudge, a replay)
            try:
                done = self._settle(repo, issue, key, row, step)
            except Exception as error:  # one item's trouble never stops the others
                log.warning(
                    "settling a dead command failed; next tick tries again",
                    extra={"repo": repo, "issue": issue, "command": key, "error": str(error)},
                )
                continue
            if done is not None:
                settled.append(done)
        return settled

    def _settle(self, repo: str, issue: int, key: str, row: Any, step: str) -> DeadCommand | None:
        item = self.service.item(repo, issue)
        if item is None or item.state in TERMINAL or item.awaiting != key:
            return None  # answered, moved on, or gone: the dead job no longer matters
        ledger = RoleRunLedger(self.service.engine, self.clock)
        ref = ItemRef(repo, issue)
        if ledger.live_claim(ref, key):
            return None  # a run of the command still works and may answer
        error = str(row.last_error or "no error was recorded")
        replay = command_job_key(key + REPLAY_SUFFIX)
        if ledger.outcome(ref, key) is not None and row.key != replay:
            self._replay(row, replay)
            log.warning(
                "awaited command's job is dead after its run recorded an outcome; replayed",
                extra={"repo": repo, "issue": issue, "command": key, "job": row.key},
            )
            return DeadCommand(repo, issue, key, str(row.key), error[:300], "replayed")
        spent = ledger.left_behind(ref, key)
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
                spend=Spend(item.spend.tokens + spent.tokens, item.spend.usd + spent.usd),
            ),
        )
        return DeadCommand(repo, issue, key, str(row.key), error[:300], "escalated")

    def _replay(self, row: Any, key: str) -> None:
        """Enqueue the dead job's command once more: its run's recorded outcome is reused."""
        with self.service.engine.begin() as conn:
            enqueue_in(
                conn,
                NewJob(
                    kind=COMMAND_JOB,
                    key=key,
                    payload=dict(row.payload),
                    priority=COMMAND_JOB_PRIORITY,
                    max_attempts=COMMAND_JOB_MAX_ATTEMPTS,
                ),
                database_now(conn),
            )
