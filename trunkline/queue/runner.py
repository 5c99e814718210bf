"""The merge queue's effect runner: the only impure part of the queue.

Performs I/O: GitHub (through `GitHubPort`), git (through `Workspace`), the store (through
`QueueService` and the lock manager). One durable job (`queue_effect`, enqueued by
`QueueService.submit` in the transaction that recorded the effect in the outbox) performs one
effect, idempotently, and feeds its result back with `QueueService.complete_effect`, which
marks the outbox row done and applies the result events in ONE transaction (exactly-once
feedback, keyed by the effect key). A job whose worker dies is run again by the job runner;
every effect is safe to perform twice:

- BuildIntegration: fetch; one integration commit for the whole build
  (`integration_commit`: a batch is ONE commit, parents base + the PR heads, or the base only
  for squash); push (forced: it is our own branch) to `trunkline/queue/<base>/<build_id>`,
  whose push starts CI -> IntegrationBuilt(sha) / IntegrationConflict(paths).
- RequestChecks: attempt 1: CI runs on push, so nothing is requested; the check runs and
  commit statuses already on the SHA are read (`required_checks`), so a report that raced the
  IntegrationBuilt commit is not lost -> CheckStarted / CheckCompleted. A retry (attempt > 1)
  rerequests the newest countable check run of each check still to pass on the same SHA.
- FastForwardBase: read the base; at the SHA already -> FastForwarded; moved -> rejected;
  else re-read the head of every PR it merges (one moved -> PrHeadChanged with the new head
  and FastForwardRejected with the base unchanged: the build is void, the entry waits for its
  gates on the new head); else re-read the exact SHA's check runs and statuses (not all
  green -> ChecksRegressed); else `update_ref(force=False)` -> FastForwarded /
  FastForwardRejected(current base).
- ClosePull: `close_pull` (a squashed PR, whose head GitHub cannot see merged).
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
    ClosePull,
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
from trunkline.queue.integration_commit import Built, build_integration_commit
from trunkline.queue.model import CheckConclusion, QueueConfig
from trunkline.queue.required_checks import (
    CheckReport,
    conclusion_of,
    counts,
    not_green,
    required_reports,
)
from trunkline.queue.service import OutboxRecord, QueueService
from trunkline.store.jobs import ClaimedJob
from trunkline.store.tables import OutboxState
from trunkline.workspace.model import RepositorySpec
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
        own_app: str | None = None,
    ) -> None:
        self.queues = queues
        self.own_app = own_app  # trunkline's App slug: its check runs never count
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
        if isinstance(effect, ClosePull):
            access.github.close_pull(record.repo, effect.pr)
            return Performed((), f"closed #{effect.pr} (squashed into {effect.merged_sha})")
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
        result = build_integration_commit(
            self.workspace,
            access.spec,
            base=record.base,
            build_id=effect.build_id,
            base_sha=effect.base_sha,
            prs=effect.prs,
            method=effect.merge_method,
        )
        if not isinstance(result, Built):
            event = ev.IntegrationConflict(effect.build_id, result.paths)
            return Performed((event,), f"#{result.pr} conflicts: {', '.join(result.paths)}")
        sha = result.sha
        self.workspace.push_commit(access.spec, sha, effect.branch, token, force=True)
        self.crash_points.hit(CrashPoint.INTEGRATION_BUILT)
        return Performed((ev.IntegrationBuilt(effect.build_id, sha),), f"built {sha}")

    def _config(self, record: OutboxRecord) -> QueueConfig | None:
        state = self.queues.state(record.repo, record.base)
        return None if state is None else state.config

    def _reports(
        self, record: OutboxRecord, config: QueueConfig, sha: str, access: RepositoryAccess
    ) -> dict[str, CheckReport]:
        """The countable reports of the required checks on exactly `sha`: check runs (not
        trunkline's own, and from the pinned App if any) and commit statuses."""
        github = access.github
        runs = github.list_check_runs(record.repo, sha)
        statuses = github.get_combined_status(record.repo, sha).statuses
        return required_reports(config, runs, statuses, sha=sha, own_app=self.own_app)

    def _request_checks(
        self, record: OutboxRecord, effect: RequestChecks, access: RepositoryAccess
    ) -> Performed:
        config = self._config(record)
        if config is None:
            return Performed((), "queue gone; nothing to request")
        sha = effect.integration_sha
        if effect.attempt != 1:
            return self._rerun(record, effect, config, access)
        found: list[ev.Event] = []
        for name, report in self._reports(record, config, sha, access).items():
            if name not in effect.check_names:
                continue
            if report.started:
                found.append(ev.CheckStarted(sha, name, attempt=1))
            if report.conclusion is not None:
                found.append(
                    ev.CheckCompleted(sha, name, report.conclusion, report.summary, attempt=1)
                )
        return Performed(tuple(found), f"CI runs on push; {len(found)} reports read")

    def _rerun(
        self,
        record: OutboxRecord,
        effect: RequestChecks,
        config: QueueConfig,
        access: RepositoryAccess,
    ) -> Performed:
        """A retry on the same SHA: rerequest the newest countable check run of each check
        (its reports then arrive by webhook). A check that is only a commit status cannot be
        rerun from here: the watchdog waits for its CI to post it again."""
        github = access.github
        sha = effect.integration_sha
        runs = github.list_check_runs(record.repo, sha)
        reported: list[ev.Event] = []
        notes = []
        for name in effect.check_names:
            named = [
                run
                for run in runs
                if run.name == name
                and run.head_sha == sha
                and counts(config, name, run.app_slug, self.own_app)
            ]
            if not named:
                notes.append(f"{name}: no check run to rerun")
                continue
            run = max(named, key=lambda item: item.id)
            try:
                github.rerequest_check_run(record.repo, run.id)
            except TerminalError as error:
                summary = f"could not rerun {name} on the same commit: {error}"
                reported.append(
                    ev.CheckCompleted(
                        sha, name, CheckConclusion.FAILURE, summary, attempt=effect.attempt
                    )
                )
                notes.append(summary)
                continue
            notes.append(f"{name}: rerequested check run {run.id}")
        return Performed(tuple(reported), f"attempt {effect.attempt}: " + "; ".join(notes))

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
        moved = self._moved_heads(record, effect, access)
        if moved:
            # A PR was pushed to since the engine last heard: merging would merge the old
            # head. Report the new head; the refusal (base unchanged) voids the build.
            names = ", ".join(f"#{event.pr} is at {event.new_sha[:12]}" for event in moved)
            reason = f"a PR head moved before the fast-forward: {names}"
            refused = ev.FastForwardRejected(effect.build_id, reason, current)
            return Performed((*moved, refused), f"not fast-forwarded: {reason}")
        config = self._config(record)
        if config is not None:
            # Re-read the exact SHA's checks and statuses: a rerun may have turned red, or a
            # failing status been posted, since the engine saw them pass.
            problem = not_green(config, self._reports(record, config, effect.new_sha, access))
            if problem is not None:
                regressed = ev.ChecksRegressed(effect.build_id, effect.new_sha, problem)
                return Performed((regressed,), f"not fast-forwarded: {problem}")
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

    def _moved_heads(
        self, record: OutboxRecord, effect: FastForwardBase, access: RepositoryAccess
    ) -> tuple[ev.PrHeadChanged, ...]:
        """Re-read the head of every PR the fast-forward merges; one for each that moved."""
        moved = []
        for pr, head in effect.prs:
            read_at = self.clock.now()
            current = access.github.get_pull(record.repo, pr).head_sha
            if current != head:
                moved.append(ev.PrHeadChanged(pr, current, read_at=read_at))
        return tuple(moved)

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
        held = github.as_written(marker)  # as GitHub holds it after the redacting port
        for comment in github.list_issue_comments(record.repo, pr):
            if held in comment.body:
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


queue_conclusion = conclusion_of
