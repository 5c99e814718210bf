"""The dispatch runner: the impure shell around the pure work-item state machine.

Performs database I/O and reads the injected clock; GitHub, locks and agents are reached only
through the `Performer`s it is given. Contract:

- `PipelineService.submit(repo, issue, event)` runs ONE transaction: it locks the item's
  `work_items` row, calls `machine.decide`, saves the new item under the row's version
  (`trunkline.pipeline.store`) and enqueues one durable `pipeline_command` job per command,
  keyed by the command's key (`ON CONFLICT DO NOTHING`: deciding the same event on the same
  item twice gives the same keys, so nothing runs twice). A version conflict re-reads and
  decides again. An event that does not apply writes nothing.
- After a decision that creates an item or frees a slot, `admit(repo)` picks the queued
  items `machine.admit` allows under `dispatch.max_active` and starts them, with the
  repository's rows locked so two replicas cannot both fill the last slot.
- `perform_job(job)` (the `pipeline_command` handler) decodes the command and, for a command
  answered by a result event, first checks that the item still waits for it (a cancelled,
  taken-over or already answered command is skipped: that is how `CancelWork` stops agent
  work that has not started); a fire-and-forget command the item has moved past
  (`superseded`: a status update with a newer one after it, a GitHub write of an earlier
  run, a plan approval request for a plan no longer awaiting approval) is skipped. It
  calls the performer registered for the command's type and feeds the result event back
  through `submit`. A `Performed.repeat_after` (the lock
  manager said "wait") enqueues the same command again after that many seconds under a
  fresh job key, for as long as the item waits for it; after a `ReleaseLocks` or
  `TransferLocks` every waiting item of the repository is asked again at once.
- Fencing: a performer that wrote under the item's leases returns its `ItemFence` with the
  result (`Performed.fence`); `submit(..., fence=...)` checks it (`locks.fencing.guarded`)
  first thing in the deciding transaction, so a holder that lost its leases changes nothing.
- Errors: a `RetryableError` or an unexpected exception propagates (the job runner's
  backoff); on the job's last attempt, or on a `TerminalError`, an answered command reports
  `StepFailed(retryable=False)` so the item escalates instead of hanging — with the
  error's escalation code (`EscalatingStepError.code`, `lease_lost` for a `StaleLease`) and
  the failed run's spend (a job killed on its last attempt: `dead_commands`). A
  fire-and-forget command is never given up for a retryable error (a GitHub outage of any
  length): on its job's last attempt the same command is enqueued again after
  `DURABLE_RETRY_SECONDS` with fresh attempts, and `superseded` is asked again when it
  runs. Its terminal error (a 404, a 422) or a crash on every attempt dead-letters its job,
  logged, for `trunkline jobs --dead`.
- A command type with no performer registered is a `TerminalError` (so an answered command
  escalates the item with a reason that names the missing performer).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select

from trunkline.agents.redaction import Redactor
from trunkline.clock import Clock
from trunkline.errors import RetryableError, TerminalError
from trunkline.locks.fencing import StaleLease
from trunkline.pipeline import events as ev
from trunkline.pipeline.commands import (
    ANSWERED,
    AcquireLocks,
    CancelWork,
    Command,
    ReleaseLocks,
    TransferLocks,
)
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.item_leases import ItemFence
from trunkline.pipeline.machine import admit, decide, start
from trunkline.pipeline.model import Spend, WorkItem
from trunkline.pipeline.serialization import decode_command, encode_command
from trunkline.pipeline.states import ACTIVE, TERMINAL, WorkState
from trunkline.pipeline.store import (
    PipelineConflictError,
    list_items,
    load_item,
    lock_repository_items,
    save_item,
)
from trunkline.pipeline.superseded import superseded
from trunkline.store.dialect import database_now
from trunkline.store.jobs import ClaimedJob, NewJob, enqueue_in
from trunkline.store.runner import HandlerRegistry
from trunkline.store.tables import Job

log = logging.getLogger(__name__)

COMMAND_JOB = "pipeline_command"
"""The job kind performing one pipeline command (payload: repo, issue, command document)."""

COMMAND_JOB_PRIORITY = 3
COMMAND_JOB_MAX_ATTEMPTS = 8
DURABLE_RETRY_SECONDS = 300.0
"""After a fire-and-forget command's job used its attempts on retryable errors (a GitHub
outage), the same command is performed again after this long, for as long as it lasts."""
_JOB_KEY_LIMIT = 300
_CONFLICT_ATTEMPTS = 20

ConfigFor = Callable[[str], PipelineConfig]
"""Repository -> its pipeline config (from the repository's policy)."""


@dataclass(frozen=True)
class CommandContext:
    """What a performer knows besides the command: where it is and the item as stored."""

    repo: str
    issue: int
    installation_id: int | None
    item: WorkItem
    attempt: int
    last_attempt: bool


@dataclass(frozen=True)
class Performed:
    """A performer's result: the event to feed back (answered commands), or a request to
    perform the same command again after `repeat_after` seconds (still waiting). `fence`:
    the leases the work was done under; the event is decided only while they are held."""

    event: ev.Event | None = None
    repeat_after: float | None = None
    fence: ItemFence | None = None


LEASE_LOST = "lease_lost"


class EscalatingStepError(TerminalError):
    """A step failed in a way that escalates the item with `code` (e.g. an agent run's
    `invalid_output`) after spending `spend`."""

    def __init__(self, code: str, message: str, spend: Spend | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.spend = spend or Spend()


class Performer(Protocol):
    def __call__(self, command: Any, context: CommandContext) -> Performed: ...


def command_job_key(command_key: str, poll: int = 0) -> str:
    """The job key of the job performing `command_key` (poll n > 0: its n-th repetition);
    hashed when too long for the column."""
    key = f"{COMMAND_JOB}:{command_key}" + (f":poll{poll}" if poll else "")
    if len(key) <= _JOB_KEY_LIMIT:
        return key
    return f"{COMMAND_JOB}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def _awaited_command(conn: Connection, item: WorkItem | None) -> Command | None:
    """The command `item` waits for, from its job row (None when there is none)."""
    if item is None or item.awaiting is None:
        return None
    payload = conn.execute(
        select(Job.payload).where(Job.key == command_job_key(item.awaiting))
    ).scalar_one_or_none()
    if payload is None:
        return None
    return decode_command(payload["command"])


def _may_admit(before: WorkItem | None, after: WorkItem) -> bool:
    """True when the decision queued an item (created or restarted) or freed a slot."""
    if after.state is WorkState.QUEUED:
        return before is None or before.state is not WorkState.QUEUED
    return before is not None and before.state in ACTIVE and after.state not in ACTIVE


class PipelineService:
    """The work items of every repository, stored in one database."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        config_for: ConfigFor,
        performers: Mapping[type[Any], Performer] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """`redactor`: applied to every transition reason the timeline stores (the
        composition root passes the process's; default: token shapes only)."""
        self.engine = engine
        self.redactor = redactor if redactor is not None else Redactor()
        self.clock = clock
        self.config_for = config_for
        self.performers: dict[type[Any], Performer] = dict(performers or {})

    def register(self, command_type: type[Any], performer: Performer) -> None:
        if command_type in self.performers:
            raise ValueError(f"a performer for {command_type.__name__} is already registered")
        self.performers[command_type] = performer

    def register_handlers(self, registry: HandlerRegistry) -> None:
        registry.register(COMMAND_JOB, self.perform_job)

    # -- decisions --------------------------------------------------------------------------

    def submit(
        self,
        repo: str,
        issue: int,
        event: ev.Event,
        *,
        installation_id: int | None = None,
        fence: ItemFence | None = None,
        title: str | None = None,
    ) -> tuple[Command, ...]:
        """Decide `event` on the item of (repo, issue) durably; returns the new commands.
        `title` (the issue's, from a webhook) is kept on the row for people to read. With
        `fence`, the decision is made only while its leases are held (`StaleLease`
        otherwise, and nothing is written)."""
        config = self.config_for(repo)
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    if fence is not None:
                        fence.guard(conn)
                    before, after, commands = self._submit_in(
                        conn, repo, issue, event, config, installation_id, title
                    )
            except PipelineConflictError:
                continue
            if after is not None and after is not before and _may_admit(before, after):
                self.admit(repo)
            return commands
        raise PipelineConflictError(
            f"{repo}#{issue}: kept changing under {_CONFLICT_ATTEMPTS} tries"
        )

    def admit(self, repo: str) -> tuple[Command, ...]:
        """Start the queued items of `repo` that `dispatch.max_active` leaves room for."""
        config = self.config_for(repo)
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    return self._admit_in(conn, repo, config)
            except PipelineConflictError:
                continue
        raise PipelineConflictError(f"{repo}: admission kept conflicting")

    def items(self, repo: str | None = None) -> list[WorkItem]:
        with self.engine.connect() as conn:
            return list_items(conn, repo)

    def item(self, repo: str, issue: int) -> WorkItem | None:
        with self.engine.connect() as conn:
            return load_item(conn, repo, issue, for_update=False).item

    def repositories(self) -> list[str]:
        """Repositories with at least one pipeline item."""
        return sorted({item.repo for item in self.items()})

    def _submit_in(
        self,
        conn: Connection,
        repo: str,
        issue: int,
        event: ev.Event,
        config: PipelineConfig,
        installation_id: int | None,
        title: str | None = None,
    ) -> tuple[WorkItem | None, WorkItem | None, tuple[Command, ...]]:
        stored = load_item(conn, repo, issue)
        now = self.clock.now()
        after, commands = decide(stored.item, event, now, config)
        if after is None or (after is stored.item and not commands):
            return stored.item, stored.item, ()
        save_item(
            conn,
            stored,
            after,
            now,
            installation_id=installation_id,
            title=title,
            redactor=self.redactor,
        )
        self._enqueue(conn, repo, issue, commands)
        log.info(
            "work item decided",
            extra={
                "item": after.key,
                "event": type(event).__name__,
                "state": after.state.value,
                "commands": [type(command).__name__ for command in commands],
            },
        )
        return stored.item, after, commands

    def _admit_in(self, conn: Connection, repo: str, config: PipelineConfig) -> tuple[Command, ...]:
        lock_repository_items(conn, repo)
        picked = admit(list_items(conn, repo), config.max_active)
        started: list[Command] = []
        now = self.clock.now()
        for candidate in picked:
            stored = load_item(conn, repo, candidate.issue)
            if stored.item is None:
                continue
            after, commands = start(stored.item, now, config)
            if after is None or after is stored.item:
                continue
            save_item(conn, stored, after, now, redactor=self.redactor)
            self._enqueue(conn, repo, candidate.issue, commands)
            started.extend(commands)
        return tuple(started)

    def _enqueue(
        self,
        conn: Connection,
        repo: str,
        issue: int,
        commands: tuple[Command, ...],
        *,
        poll: int = 0,
        delay_seconds: float = 0.0,
    ) -> None:
        now = database_now(conn)
        for command in commands:
            enqueue_in(
                conn,
                NewJob(
                    kind=COMMAND_JOB,
                    key=command_job_key(command.key, poll),
                    payload={
                        "repo": repo,
                        "issue": issue,
                        "poll": poll,
                        "command": encode_command(command),
                    },
                    priority=COMMAND_JOB_PRIORITY,
                    delay_seconds=delay_seconds,
                    max_attempts=COMMAND_JOB_MAX_ATTEMPTS,
                ),
                now,
            )

    # -- performing -------------------------------------------------------------------------

    def perform_job(self, job: ClaimedJob) -> None:
        """The `pipeline_command` job handler."""
        repo = str(job.payload["repo"])
        issue = int(job.payload["issue"])
        poll = int(job.payload.get("poll", 0))
        command = decode_command(job.payload["command"])
        with self.engine.connect() as conn:
            stored = load_item(conn, repo, issue, for_update=False)
        if stored.item is None:
            raise TerminalError(f"{repo}#{issue}: no work item for command {command.key}")
        item = stored.item
        answered = isinstance(command, ANSWERED)
        if answered and item.awaiting != command.key:
            log.info(
                "command no longer awaited; skipped",
                extra={"item": item.key, "command": command.key, "awaiting": item.awaiting},
            )
            return
        stale = None if answered else superseded(command, item)
        if stale is not None:
            log.info(
                "command superseded; skipped",
                extra={"item": item.key, "command": command.key, "why": stale},
            )
            return
        context = CommandContext(
            repo=repo,
            issue=issue,
            installation_id=stored.installation_id,
            item=item,
            attempt=job.attempts,
            last_attempt=job.attempts >= job.max_attempts,
        )
        try:
            performed = self._perform(command, context)
            if performed.event is not None:
                self.submit(repo, issue, performed.event, fence=performed.fence)
        except RetryableError as error:
            if not context.last_attempt:
                raise
            if not answered:
                self._perform_later(job, repo, issue, command, error)
                return
            self._report_failure(repo, issue, command, f"gave up after retries: {error}")
            return
        except TerminalError as error:
            if not answered:
                raise
            self._report_failure(repo, issue, command, str(error), _code_of(error))
            return
        except Exception as error:  # a bug or a broken dependency: retried like a RetryableError
            if not (answered and context.last_attempt):
                raise
            log.exception("pipeline command crashed on its last attempt", extra={"job": job.key})
            reason = f"gave up after {job.attempts} attempts: {type(error).__name__}: {error}"
            self._report_failure(repo, issue, command, reason)
            return
        if isinstance(command, ReleaseLocks | TransferLocks):
            self.nudge_lock_waiters(repo, command.key)
        if performed.repeat_after is not None:
            with self.engine.begin() as conn:
                self._enqueue(
                    conn,
                    repo,
                    issue,
                    (command,),
                    poll=poll + 1,
                    delay_seconds=performed.repeat_after,
                )

    def _perform_later(
        self, job: ClaimedJob, repo: str, issue: int, command: Command, error: RetryableError
    ) -> None:
        """A fire-and-forget command still failing for a retryable reason on its job's last
        attempt is never dropped: the same command is enqueued again (the next repetition's
        job key, so a job run twice enqueues it once) after `DURABLE_RETRY_SECONDS` or the
        server's `retry_after`, with a fresh set of attempts."""
        delay = max(DURABLE_RETRY_SECONDS, error.retry_after or 0.0)
        poll = int(job.payload.get("poll", 0))
        log.warning(
            "fire-and-forget command still failing; performed again later",
            extra={
                "command": command.key,
                "job": job.key,
                "attempts": job.attempts,
                "retry_in": delay,
                "error": f"{type(error).__name__}: {error}"[:500],
            },
        )
        with self.engine.begin() as conn:
            self._enqueue(conn, repo, issue, (command,), poll=poll + 1, delay_seconds=delay)

    def nudge_lock_waiters(self, repo: str, cause: str) -> int:
        """Ask again at once for the locks of every item of `repo` waiting for them (after
        `cause` released or moved leases), instead of at their next poll. The job keys
        derive from `cause`, so a repeated release nudges once."""
        waiting = [
            item
            for item in self.items(repo)
            if item.state is WorkState.WAITING_FOR_LOCKS and item.awaiting is not None
        ]
        nudged = 0
        with self.engine.begin() as conn:
            now = database_now(conn)
            for item in waiting:
                stored = load_item(conn, repo, item.issue, for_update=False)
                if stored.item is None or stored.item.state is not WorkState.WAITING_FOR_LOCKS:
                    continue  # it got its locks since the list was read: nothing to ask again
                command = _awaited_command(conn, stored.item)
                if not isinstance(command, AcquireLocks):
                    continue  # only a lock request is repeated (never an agent run)
                nudged += enqueue_in(
                    conn,
                    NewJob(
                        kind=COMMAND_JOB,
                        key=command_job_key(f"{command.key}:after:{cause}"),
                        payload={
                            "repo": repo,
                            "issue": item.issue,
                            "poll": 0,
                            "command": encode_command(command),
                        },
                        priority=COMMAND_JOB_PRIORITY,
                        max_attempts=COMMAND_JOB_MAX_ATTEMPTS,
                    ),
                    now,
                )
        return nudged

    def _perform(self, command: Command, context: CommandContext) -> Performed:
        performer = self.performers.get(type(command))
        if performer is None:
            if isinstance(command, CancelWork):
                # Agent work stops through the item itself: an answered command whose key
                # the item no longer awaits is skipped, and agent runs poll that.
                return Performed()
            raise TerminalError(f"no performer is configured for {type(command).__name__}")
        return performer(command, context)

    def _report_failure(
        self,
        repo: str,
        issue: int,
        command: Command,
        reason: str,
        code: tuple[str, Spend] = ("", Spend()),
    ) -> None:
        log.warning(
            "pipeline command failed", extra={"command": command.key, "error": reason[:500]}
        )
        self.submit(
            repo,
            issue,
            ev.StepFailed(
                answers=command.key,
                step=type(command).__name__,
                reason=reason[:1000],
                retryable=False,
                code=code[0],
                spend=code[1],
            ),
        )

    def still_awaits(self, repo: str, issue: int, key: str) -> bool:
        """True while the item waits for the command `key` (agent runs poll this as their
        stop flag: a cancel, takeover or exit makes it False)."""
        item = self.item(repo, issue)
        return item is not None and item.state not in TERMINAL and item.awaiting == key


def _code_of(error: TerminalError) -> tuple[str, Spend]:
    """The escalation code and spend a terminal error carries (`step_failed` by default)."""
    if isinstance(error, EscalatingStepError):
        return error.code, error.spend
    if isinstance(error, StaleLease):
        return LEASE_LOST, Spend()
    return "", Spend()
