"""`/trunkline takeover` and `/trunkline resume`: the `issue_comment.created` handlers.

Performs I/O through its collaborators: the GitHub port of the delivery's installation
(permission check, replies), the store (the takeover flag, through
`trunkline.agents.takeover`), the lock manager (lease handover) and an `ExecutorLauncher`
(restarting the executor). Runs inside the `process_delivery` job, so it is idempotent:

* the flag is a level (raising it twice is raising it once), lease transfers find nothing
  left to move the second time, and replies are sticky comments keyed by the command's
  comment id (one reply per command comment, however often the delivery is processed);
* resume launches through the launcher with the comment id as the idempotency key (the
  job launcher enqueues a job whose key includes it).

On a pull request the commands act on the work item whose PR it is; a comment on an issue
or pull request that is no work item gets a reply and changes nothing (no row is created).
Other commands (queue, approve, ...) are parsed by `slash_commands` but handled elsewhere;
this module ignores them, as it ignores comments written by bots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine

from trunkline.agents.takeover import (
    DEFAULT_AGENT_LEASE,
    DEFAULT_HUMAN_LEASE,
    end_takeover,
    hand_locks_back,
    hand_locks_to_human,
    human_holder,
    read_takeover,
    request_takeover,
)
from trunkline.agents.work_item_rows import ItemRef, item_of_pull, read_state
from trunkline.bot.events import IssueCommentEvent
from trunkline.bot.router import RoutedEvent, Router
from trunkline.bot.slash_commands import (
    CommandName,
    SlashCommand,
    parse_commands,
    permission_refusal,
)
from trunkline.github.port import GitHubPort
from trunkline.locks.leases import LockManager
from trunkline.store.jobs import JobStore, NewJob

log = logging.getLogger(__name__)

HANDLED = (CommandName.TAKEOVER, CommandName.RESUME)
RESUME_JOB = "agents_resume"


@dataclass(frozen=True)
class ResumeRequest:
    ref: ItemRef
    installation_id: int | None
    requested_by: str
    comment_id: int

    @property
    def key(self) -> str:
        return f"{RESUME_JOB}:{self.ref.key}:{self.comment_id}"


class ExecutorLauncher(Protocol):
    def resume(self, request: ResumeRequest) -> None:
        """Restart the item's executor from its branch as it is now (idempotent per key)."""
        ...


@dataclass(frozen=True)
class JobLauncher:
    """Production launcher: a durable `agents_resume` job, unique per command comment."""

    jobs: JobStore

    def resume(self, request: ResumeRequest) -> None:
        self.jobs.enqueue(
            NewJob(
                kind=RESUME_JOB,
                key=request.key,
                payload={
                    "repo": request.ref.repo,
                    "issue_number": request.ref.number,
                    "installation_id": request.installation_id,
                    "requested_by": request.requested_by,
                    "comment_id": request.comment_id,
                },
            )
        )


@dataclass(frozen=True)
class TakeoverDeps:
    engine: Engine
    github_for: Callable[[int | None], GitHubPort]  # installation id -> its GitHub port
    launcher: ExecutorLauncher
    locks: LockManager | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    human_lease: timedelta = DEFAULT_HUMAN_LEASE
    agent_lease: timedelta = DEFAULT_AGENT_LEASE


def register_takeover_handlers(router: Router, deps: TakeoverDeps) -> None:
    """Route `issue_comment.created` to the takeover/resume handler."""

    def handler(event: RoutedEvent) -> None:
        handle_comment(deps, event)

    router.add(handler, "issue_comment", "created")


def _is_bot(payload: IssueCommentEvent) -> bool:
    user = payload.comment.user or payload.sender
    if user is None:
        return True
    return user.type == "Bot" or user.login.endswith("[bot]")


def handle_comment(deps: TakeoverDeps, event: RoutedEvent) -> None:
    payload = event.payload
    if not isinstance(payload, IssueCommentEvent) or _is_bot(payload):
        return
    commands = [c for c in parse_commands(payload.comment.body) if isinstance(c, SlashCommand)]
    wanted = [c for c in commands if c.name in HANDLED]
    if not wanted:
        return
    user = payload.comment.user or payload.sender
    assert user is not None  # _is_bot said so
    login = user.login
    repo = payload.repository.full_name
    number = payload.issue.number  # the issue or pull request commented on
    installation = payload.installation.id if payload.installation else None
    github = deps.github_for(installation)
    command = wanted[-1]  # takeover then resume in one comment: the last word wins
    key = f"slash.{payload.comment.id}"
    refusal = permission_refusal(login, command.name, github.get_permission(repo, login))
    if refusal is not None:
        github.upsert_sticky_comment(repo, number, key, refusal)
        log.info(
            "slash command refused",
            extra={"repo": repo, "issue": number, "command": command.name.value},
        )
        return
    if payload.issue.is_pull_request:
        found = item_of_pull(deps.engine, repo, number)
    else:
        found = ItemRef(repo, number) if read_state(deps.engine, ItemRef(repo, number)) else None
    if found is None:
        # never raise a flag on a row that is no work item: a later label would start an
        # item that is "taken over" before it began
        github.upsert_sticky_comment(
            repo,
            number,
            key,
            f"#{number} is not a trunkline work item, so there is nothing to {command.name.value}.",
        )
        return
    ref = found
    if command.name is CommandName.TAKEOVER:
        reply = _take_over(deps, ref, login)
    else:
        reply = _resume(deps, ref, login, installation, payload.comment.id)
    github.upsert_sticky_comment(repo, number, key, reply)


def _take_over(deps: TakeoverDeps, ref: ItemRef, login: str) -> str:
    fresh = request_takeover(deps.engine, ref, login, deps.now())
    holder = human_holder(login, ref)
    held: list[str] = []
    if deps.locks is not None:
        moved = hand_locks_to_human(deps.locks, ref, login, deps.human_lease)
        log.info("locks handed to a human", extra={"work_item": ref.key, "locks": list(moved)})
        # What the human holds now (not what this run moved): a re-run replies the same.
        held = sorted({lease.subsystem for lease in deps.locks.held(ref.repo, holder)})
    log.info("work item taken over", extra={"work_item": ref.key, "by": login, "fresh": fresh})
    locks = (
        f"the locks on {', '.join(f'`{s}`' for s in held)} are held by `{holder}`"
        if held
        else f"any locks the item held are now held by `{holder}`"
    )
    return (
        f"@{login} is taking over {ref.key}: the agent stops at its next turn boundary and "
        f"pushes its work in progress to the item's branch. The branch is yours and {locks}. "
        "Push your commits to the branch, then comment `/trunkline resume` to hand it back "
        "to the executor (it will see your commits)."
    )


def _resume(
    deps: TakeoverDeps, ref: ItemRef, login: str, installation: int | None, comment_id: int
) -> str:
    taker = read_takeover(deps.engine, ref).by or login  # whoever took it over holds the leases
    if not end_takeover(deps.engine, ref, deps.now(), comment_id):
        return f"Nothing to resume: {ref.key} is not taken over by a human."
    moved: tuple[str, ...] = ()
    if deps.locks is not None:
        moved = hand_locks_back(deps.locks, ref, taker, deps.agent_lease)
    deps.launcher.resume(ResumeRequest(ref, installation, login, comment_id))
    log.info("work item resumed", extra={"work_item": ref.key, "by": login, "locks": list(moved)})
    return (
        f"@{login} handed {ref.key} back: the executor restarts from the branch as it is now, "
        "with your commits in its context."
    )
