"""The merge queue's effect runner: the only impure part of the queue.

Performs I/O: GitHub (through `GitHubPort`), git (through `Workspace`), the store (through
`QueueService` and the lock manager). One durable job (`queue_effect`, enqueued by
`QueueService.submit` in the transaction that recorded the effect in the outbox) performs one
effect, idempotently, and feeds its result back with `QueueService.complete_effect`, which
marks the outbox row done and applies the result events in ONE transaction (exactly-once
feedback, keyed by the effect key). A job whose worker dies is run again by the job runner;
every effect is safe to perform twice:

- BuildIntegration: fetch; `Workspace.build_integration` per PR (merge method from the
  config); push (forced: it is our own branch) to `trunkline/queue/<base>/<build_id>`, whose
  push starts CI -> IntegrationBuilt(sha) / IntegrationConflict(paths).
- RequestChecks: CI runs on push (forge, GitHub Actions `on: push`), so nothing is requested;
  the check runs already on the SHA are read, so a report that raced the IntegrationBuilt
  commit is not lost -> CheckStarted / CheckCompleted (attempt 1).
- FastForwardBase: read the base; at the SHA already -> FastForwarded; moved -> rejected;
  else `update_ref(force=False)` -> FastForwarded / FastForwardRejected(current base).
- PostCheckRun: update the newest `trunkline/queue` run on that SHA, or create one; skipped
  when the outbox holds a newer PostCheckRun for the same PR head (jobs run concurrently, a
  late older rendering must not overwrite a newer one).
- Comment, Eject: a comment carrying a hidden marker with the effect key (skipped when a
  comment with the marker exists). Eject's failed check run is the PostCheckRun beside it.
- ReleaseLocks: `LockManager.release(repo, holder)`, holder from `holders.lock_holder_of_pr`.
- DeleteIntegrationBranch: delete the ref (a missing ref is fine).

Errors: `RetryableError` propagates (the job runner retries with backoff). A `TerminalError`
becomes the engine's failure event where it has one (a refused fast-forward ->
`FastForwardRejected`); otherwise the outbox row is marked failed and logged. Effects of a
build that is no longer active (voided by a base move or a head push) are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from trunkline.clock import Clock
from trunkline.errors import TerminalError
from trunkline.github.errors import NonFastForwardError
from trunkline.github.model import (
    CheckConclusion as GitHubConclusion,
)
from trunkline.github.model import (
    CheckRunOutput,
    CheckRunRequest,
    CheckRunUpdate,
    CheckStatus,
)
from trunkline.github.port import GitHubPort
from trunkline.queue import events as ev
from trunkline.queue.crashpoints import NO_CRASH_POINTS, CrashPoint, CrashPoints
from trunkline.queue.effects import (
    BuildIntegration,
    CheckRunStatus,
    Comment,
    DeleteIntegrationBranch,
    Effect,
    Eject,
    FastForwardBase,
    PostCheckRun,
    ReleaseLocks,
    RequestChecks,
)
from trunkline.queue.holders import lock_holder_of_pr
from trunkline.queue.model import CheckConclusion
from trunkline.queue.service import OutboxRecord, QueueService
from trunkline.store.jobs import ClaimedJob
from trunkline.store.tables import OutboxState
from trunkline.workspace.model import IntegrationConflict, RepositorySpec
from trunkline.workspace.model import MergeMethod as WorkspaceMergeMethod
from trunkline.workspace.workspace import Workspace

log = logging.getLogger(__name__)

EFFECT_MARKER = "<!-- trunkline:queue-effect:{key} -->"


class LockReleaser(Protocol):
    def release(self, repo: str, holder: str) -> int: ...


@dataclass(frozen=True)
class RepositoryAccess:
    """How the runner reaches one repository: its GitHub installation and git remote."""

    github: GitHubPort
    spec: RepositorySpec
    token: Callable[[], str | None]


AccessFor = Callable[[str], RepositoryAccess]


@dataclass(frozen=True)
class Performed:
    """What performing an effect produced: result events and a note for the outbox row."""

    events: tuple[ev.Event, ...]
    note: str


class QueueEffectRunner:
    """Performs outbox rows; `handle` is the `queue_effect` job handler."""

    def __init__(
        self,
        queues: QueueService,
        access: AccessFor,
        workspace: Workspace,
        locks: LockReleaser,
        clock: Clock,
        *,
        crash_points: CrashPoints = NO_CRASH_POINTS,
    ) -> None:
        self.queues = queues
        self.access = access
        self.workspace = workspace
        self.locks = locks
        self.clock = clock
        self.crash_points = crash_points

    def handle(self, job: ClaimedJob) -> None:
        key = str(job.payload.get("key", ""))
        self.crash_points.hit(CrashPoint.CLAIMED)
        self.perform_key(key)

    def perform_key(self, key: str) -> None:
        record = self.queues.outbox(key)
        if record is None or record.state is not OutboxState.PENDING:
            return
        self.queues.note_attempt(key)
        context = {"effect_key": key, "effect": type(record.effect).__name__}
        try:
            performed = self.perform(record)
        except TerminalError as error:
            self.queues.fail_effect(key, f"{type(error).__name__}: {error}")
            log.error("queue effect failed", extra={**context, "error": str(error)})
            return
        self.queues.complete_effect(key, performed.events, result=performed.note)
        log.info("queue effect performed", extra={**context, "note": performed.note})

    def perform(self, record: OutboxRecord) -> Performed:
        effect: Effect = record.effect
        access = self.access(record.repo)
        if isinstance(effect, BuildIntegration):
            return self._build(record, effect, access)
        if isinstance(effect, RequestChecks):
            return self._request_checks(record, effect, access)
        if isinstance(effect, FastForwardBase):
            return self._fast_forward(record, effect, access)
        if isinstance(effect, PostCheckRun):
            return self._post_check_run(record, effect, access)
        if isinstance(effect, Comment):
            return self._comment(record, effect.pr, effect.body, access)
        if isinstance(effect, Eject):
            body = f"Removed from the merge queue: {effect.reason}"
            if effect.detail:
                body += f"\n\n{effect.detail}"
            return self._comment(record, effect.pr, body, access)
        if isinstance(effect, ReleaseLocks):
            return self._release_locks(record, effect)
        return self._delete_branch(record, effect, access)

    # -- effects ----------------------------------------------------------------------------

    def _build_is_active(self, record: OutboxRecord, build_id: str, base_sha: str) -> bool:
        state = self.queues.state(record.repo, record.base)
        build = None if state is None else state.build(build_id)
        return build is not None and build.base_sha == base_sha

    def _build(
        self, record: OutboxRecord, effect: BuildIntegration, access: RepositoryAccess
    ) -> Performed:
        if not self._build_is_active(record, effect.build_id, effect.base_sha):
            return Performed((), f"build {effect.build_id} is no longer active; skipped")
        token = access.token()
        self.workspace.fetch(access.spec, token)
        method = WorkspaceMergeMethod(effect.merge_method.value)
        sha = effect.base_sha
        for pr, head in effect.prs:
            message = (
                f"Merge #{pr} ({head[:12]}) into {record.base}\n\n"
                f"trunkline merge queue build {effect.build_id}"
            )
            result = self.workspace.build_integration(access.spec, sha, head, method, message)
            if isinstance(result, IntegrationConflict):
                event = ev.IntegrationConflict(effect.build_id, result.paths)
                return Performed((event,), f"#{pr} conflicts: {', '.join(result.paths)}")
            sha = result.sha
        self.workspace.push_commit(access.spec, sha, effect.branch, token, force=True)
        self.crash_points.hit(CrashPoint.INTEGRATION_BUILT)
        return Performed((ev.IntegrationBuilt(effect.build_id, sha),), f"built {sha}")

    def _request_checks(
        self, record: OutboxRecord, effect: RequestChecks, access: RepositoryAccess
    ) -> Performed:
        if effect.attempt != 1:
            # CI runs on push; a retry cannot re-run it here. Reports of re-runs arrive by
            # webhook (untagged, they count for the current attempt).
            return Performed((), f"attempt {effect.attempt}: waiting for re-run reports")
        runs = access.github.list_check_runs(record.repo, effect.integration_sha)
        found: list[ev.Event] = []
        for name in effect.check_names:
            named = [run for run in runs if run.name == name]
            if not named:
                continue
            run = max(named, key=lambda item: item.id)
            found.append(ev.CheckStarted(effect.integration_sha, name, attempt=1))
            if run.status is CheckStatus.COMPLETED and run.conclusion is not None:
                found.append(
                    ev.CheckCompleted(
                        effect.integration_sha,
                        name,
                        queue_conclusion(run.conclusion.value),
                        summary=run.summary or run.title or "",
                        attempt=1,
                    )
                )
        return Performed(tuple(found), f"CI runs on push; {len(found)} reports read")

    def _fast_forward(
        self, record: OutboxRecord, effect: FastForwardBase, access: RepositoryAccess
    ) -> Performed:
        github = access.github
        ref = f"heads/{effect.base}"
        current = github.get_ref(record.repo, ref).sha
        if current == effect.new_sha:
            return Performed(
                (ev.FastForwarded(effect.build_id, effect.new_sha),), "already fast-forwarded"
            )
        if current != effect.expected_old_sha:
            rejected = ev.FastForwardRejected(
                effect.build_id, f"{effect.base} moved to {current[:12]}", current
            )
            return Performed((rejected,), f"base moved to {current}")
        try:
            github.update_ref(record.repo, ref, effect.new_sha, force=False)
        except NonFastForwardError as error:
            return self._refused(record, effect, access, f"not a fast-forward: {error}")
        except TerminalError as error:
            return self._refused(record, effect, access, f"refused: {error}")
        self.crash_points.hit(CrashPoint.FAST_FORWARDED)
        return Performed(
            (ev.FastForwarded(effect.build_id, effect.new_sha),),
            f"{effect.base} {effect.expected_old_sha[:12]} -> {effect.new_sha[:12]}",
        )

    def _refused(
        self,
        record: OutboxRecord,
        effect: FastForwardBase,
        access: RepositoryAccess,
        reason: str,
    ) -> Performed:
        current = access.github.get_ref(record.repo, f"heads/{effect.base}").sha
        if current == effect.new_sha:
            return Performed(
                (ev.FastForwarded(effect.build_id, effect.new_sha),), "already fast-forwarded"
            )
        return Performed((ev.FastForwardRejected(effect.build_id, reason, current),), reason)

    def _post_check_run(
        self, record: OutboxRecord, effect: PostCheckRun, access: RepositoryAccess
    ) -> Performed:
        if any(
            isinstance(later.effect, PostCheckRun)
            and later.effect.pr == effect.pr
            and later.effect.head_sha == effect.head_sha
            for later in self.queues.later_records(record, "PostCheckRun")
        ):
            # A newer rendering of this check run exists: a late run of this older one must
            # not overwrite it (effect jobs run concurrently).
            return Performed((), "superseded by a newer check run update")
        github = access.github
        output = CheckRunOutput(title=effect.title, summary=effect.summary)
        status = CheckStatus(effect.status.value)
        conclusion = (
            GitHubConclusion(effect.conclusion.value) if effect.conclusion is not None else None
        )
        completed_at = self.clock.now() if effect.status is CheckRunStatus.COMPLETED else None
        runs = [
            run
            for run in github.list_check_runs(record.repo, effect.head_sha)
            if run.name == effect.name
        ]
        if runs:
            existing = max(runs, key=lambda run: run.id)
            github.update_check_run(
                record.repo,
                existing.id,
                CheckRunUpdate(
                    status=status,
                    conclusion=conclusion,
                    output=output,
                    completed_at=completed_at,
                ),
            )
            return Performed((), f"updated check run {existing.id}")
        created = github.create_check_run(
            record.repo,
            CheckRunRequest(
                name=effect.name,
                head_sha=effect.head_sha,
                status=status,
                conclusion=conclusion,
                output=output,
                external_id=f"{record.repo}@{record.base}#{effect.pr}",
                completed_at=completed_at,
            ),
        )
        return Performed((), f"created check run {created.id}")

    def _comment(
        self, record: OutboxRecord, pr: int, body: str, access: RepositoryAccess
    ) -> Performed:
        github = access.github
        marker = EFFECT_MARKER.format(key=record.key)
        for comment in github.list_issue_comments(record.repo, pr):
            if marker in comment.body:
                return Performed((), f"comment {comment.id} already posted")
        self.crash_points.hit(CrashPoint.BEFORE_COMMENT)
        posted = github.create_comment(record.repo, pr, f"{marker}\n{body}")
        return Performed((), f"posted comment {posted.id}")

    def _release_locks(self, record: OutboxRecord, effect: ReleaseLocks) -> Performed:
        with self.queues.engine.connect() as conn:
            holder = lock_holder_of_pr(conn, record.repo, effect.pr)
        if holder is None:
            return Performed((), f"#{effect.pr} has no work item; no locks to release")
        released = self.locks.release(record.repo, holder)
        return Performed((), f"released {released} leases of {holder}")

    def _delete_branch(
        self, record: OutboxRecord, effect: DeleteIntegrationBranch, access: RepositoryAccess
    ) -> Performed:
        access.github.delete_ref(record.repo, f"heads/{effect.branch}")
        return Performed((), f"deleted {effect.branch}")


def queue_conclusion(value: str | None) -> CheckConclusion:
    """A GitHub check conclusion as the engine's; anything unknown counts as a failure."""
    try:
        return CheckConclusion(value or "failure")
    except ValueError:
        return CheckConclusion.FAILURE
