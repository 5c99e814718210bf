"""Performers of the pipeline's GitHub, lock and merge-queue commands.

Performs I/O through its collaborators only: the GitHub port of the item's installation,
the `LockManager` and the merge queue (`QueuePort`, i.e. `QueueService`). Every performer is
idempotent, because a job may run twice:

- comments are sticky (`upsert_sticky_comment`) with keys derived from the item and the
  command, so a repeat edits the same comment; labels are sets; lock calls are re-entrant;
  the queue ignores an `Enqueue` of a PR already queued; a review is posted once per
  (PR, SHA, verdict) because the performer first looks for its own review on that SHA;
- the reviewer's verdict is a pull-request review by the App bound to the SHA, its body
  `verdict_body` (the marker the merge queue's reviewer gate reads), with a line comment at
  each finding's path and line. GitHub refuses the whole review (422) when one comment is
  off the diff: it is posted again without line comments, the findings listed in the body,
  so the verdict is never lost. On the App's own PR (every agent PR) GitHub refuses APPROVE
  and REQUEST_CHANGES, so it is a COMMENT review;
- `CloseIssue` comments the summary (sticky: once per run) and closes the issue
  (`completed`; closing a closed issue is no error);
- `UpdateSticky` from an older version than the item's current one is not performed (a
  later `UpdateSticky` exists: every change of an item emits one), so the last one wins;
  that check, and those of the other fire-and-forget commands an item has moved past, is
  the runner's (`superseded`).

Locks: `AcquireLocks` calls `LockManager.acquire(..., wait=True)` with the policy's
capacities; while refused it answers `LocksWaiting` and asks to be performed again after
`lock_poll_seconds` (a third of the waiter TTL at most), which keeps its place in line.
Leases are taken for `lock_ttl` (10 minutes by default) and kept alive while the item holds
them: the executor's heartbeat and the keep-alive tick (`item_leases`) renew them every
`lock_ttl / 3`, so an item whose bot stopped loses them within `lock_ttl`. `ReleaseLocks`
and `TransferLocks` move or release the item's own leases only (`locks.handover`: a holder
per item and per person who took it over; leases under the shared holder of older
takeovers are limited to the command's subsystems).
`Escalate` is performed by `escalation_performer.EscalationPerformer` (it needs the
workspace).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from trunkline.bot.gate_runner import QueuePort, verdict_body
from trunkline.errors import TerminalError
from trunkline.github.errors import ValidationFailedError
from trunkline.github.model import ReviewEvent, ReviewLineComment
from trunkline.github.port import GitHubPort
from trunkline.locks.capacities import UnknownSubsystemError, capacities_for
from trunkline.locks.handover import release_item_leases, transfer_item_leases
from trunkline.locks.leases import Grant, LockManager
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import ReviewNote, Verdict
from trunkline.pipeline.runner import CommandContext, Performed, PipelineService
from trunkline.policies.evaluation import Change, evaluate
from trunkline.policies.model import Policy
from trunkline.queue import events as queue_events
from trunkline.queue.config_from_policy import default_priority, queue_config_from_policy
from trunkline.queue.gates import ReviewerVerdict, approval_groups

GitHubFor = Callable[[int | None], GitHubPort]
"""Installation id -> the GitHub port acting as that installation."""

PolicyFor = Callable[[str], Policy]
"""Repository -> its policy (the composition root reads and caches it)."""

STATUS_KEY = "pipeline.status"
_REVIEW_EVENTS = {
    Verdict.APPROVE: ReviewEvent.APPROVE,
    Verdict.REQUEST_CHANGES: ReviewEvent.REQUEST_CHANGES,
    Verdict.ESCALATE: ReviewEvent.COMMENT,
}


def refusal_text(command: cmd.RefuseLabel) -> str:
    return (
        f"Thanks, @{command.user}! Handing an issue to trunkline with the "
        f"`{command.label}` label needs at least **{command.min_permission}** access to "
        f"this repository, so nothing was started. A maintainer can add the label if this "
        f"issue should be worked on."
    )


def review_fallback_body(
    verdict: ReviewerVerdict, summary: str, notes: tuple[ReviewNote, ...]
) -> str:
    """The review body when GitHub refused the line comments: the findings listed in it,
    before the verdict marker (which must stay the body's last line)."""
    listed = "".join(f"\n- `{note.path}:{note.line}`: {note.body}" for note in notes)
    return verdict_body(verdict, f"{summary}\n\nFindings (line comments were refused):{listed}")


def plan_approvers(policy: Policy, paths: Sequence[str]) -> tuple[str, ...]:
    """Whom a plan touching `paths` asks for approval: the approvers of its risk level's
    rule (named, or the owners of the touched subsystems), else `escalation.notify`."""
    evaluation = evaluate(policy, Change(modified=tuple(paths)))
    named = {a for group in approval_groups(evaluation) for a in group.approvers}
    return tuple(sorted(named or set(policy.escalation.notify), key=str.lower))


@dataclass
class GitHubPerformers:
    """GitHub writes, locks and the merge queue for `PipelineService`."""

    github_for: GitHubFor
    policy_for: PolicyFor
    locks: LockManager
    queue: QueuePort | None = None
    lock_ttl: timedelta = timedelta(minutes=10)
    lock_poll_seconds: float = 20.0
    queued_by: str = "trunkline"
    #: `GateRunner.refresh`: after an Enqueue the queue learns the gates at once (the review
    #: and PR webhooks that also refresh them may have been handled before the Enqueue)
    refresh_gates: Callable[[GitHubPort, str, int], object] | None = None

    def register(self, service: PipelineService) -> None:
        service.register(cmd.UpdateSticky, self.update_sticky)
        service.register(cmd.ApplyLabel, self.apply_label)
        service.register(cmd.RemoveLabel, self.remove_label)
        service.register(cmd.RefuseLabel, self.refuse_label)
        service.register(cmd.RequestPlanApproval, self.request_plan_approval)
        service.register(cmd.CloseIssue, self.close_issue)
        service.register(cmd.PostReview, self.post_review)
        service.register(cmd.AcquireLocks, self.acquire_locks)
        service.register(cmd.ReleaseLocks, self.release_locks)
        service.register(cmd.TransferLocks, self.transfer_locks)
        if self.queue is not None:
            service.register(cmd.Enqueue, self.enqueue)
            service.register(cmd.Dequeue, self.dequeue)

    def _github(self, context: CommandContext) -> GitHubPort:
        return self.github_for(context.installation_id)

    # -- comments and labels -------------------------------------------------------------

    def update_sticky(self, command: cmd.UpdateSticky, context: CommandContext) -> Performed:
        github = self._github(context)
        github.upsert_sticky_comment(context.repo, context.issue, STATUS_KEY, command.text)
        if command.pr is not None:
            github.upsert_sticky_comment(context.repo, command.pr, STATUS_KEY, command.text)
        return Performed()

    def apply_label(self, command: cmd.ApplyLabel, context: CommandContext) -> Performed:
        self._github(context).add_labels(context.repo, context.issue, [command.label])
        return Performed()

    def remove_label(self, command: cmd.RemoveLabel, context: CommandContext) -> Performed:
        self._github(context).remove_label(context.repo, context.issue, command.label)
        return Performed()

    def refuse_label(self, command: cmd.RefuseLabel, context: CommandContext) -> Performed:
        self._github(context).upsert_sticky_comment(
            context.repo,
            context.issue,
            f"pipeline.refusal.{command.user}.run{context.item.run}",
            refusal_text(command),
        )
        return Performed()

    def request_plan_approval(
        self, command: cmd.RequestPlanApproval, context: CommandContext
    ) -> Performed:
        reasons = "".join(f"\n- {reason}" for reason in command.reasons)
        who = plan_approvers(self.policy_for(context.repo), context.item.plan_paths)
        mentions = " ".join(f"@{name.lstrip('@')}" for name in who)
        asked = (
            f"{mentions}: reply `/trunkline approve-plan` to approve it"
            if mentions
            else "Reply `/trunkline approve-plan` to approve it (write access needed)"
        )
        body = (
            f"The plan `{command.plan_id}` is **{command.risk}** risk and needs a human's "
            f"approval before any change is made:{reasons}\n\n{command.summary}\n\n"
            f"{asked}, or `/trunkline cancel` to stop."
        )
        self._github(context).upsert_sticky_comment(
            context.repo, context.issue, f"pipeline.plan-approval.{command.plan_id}", body
        )
        return Performed()

    def close_issue(self, command: cmd.CloseIssue, context: CommandContext) -> Performed:
        github = self._github(context)
        github.upsert_sticky_comment(
            context.repo, context.issue, f"pipeline.summary.run{context.item.run}", command.summary
        )
        github.close_issue(context.repo, context.issue, reason="completed")
        return Performed()

    def post_review(self, command: cmd.PostReview, context: CommandContext) -> Performed:
        github = self._github(context)
        event = _REVIEW_EVENTS[command.verdict]
        if github.get_pull(context.repo, command.pr).author.is_bot:
            # GitHub refuses approvals and change requests on the App's own pull request;
            # the verdict marker in the body is what the merge queue's gate reads.
            event = ReviewEvent.COMMENT
        verdict = ReviewerVerdict(command.verdict.value)
        body = verdict_body(verdict, command.summary)
        fallback = review_fallback_body(verdict, command.summary, command.notes)
        posted = (github.as_written(body), github.as_written(fallback))  # as GitHub holds them
        for review in github.list_reviews(context.repo, command.pr):
            if review.commit_sha == command.sha and review.body in posted:
                return Performed()  # posted by an earlier attempt
        comments = [ReviewLineComment(n.path, n.line, n.body) for n in command.notes]
        try:
            github.create_review(
                context.repo,
                command.pr,
                commit_sha=command.sha,
                event=event,
                body=body,
                comments=comments,
            )
        except ValidationFailedError:
            if not comments:
                raise
            # a finding's line is off the diff: GitHub refused the whole review; keep the
            # verdict and list the findings in the body instead
            github.create_review(
                context.repo, command.pr, commit_sha=command.sha, event=event, body=fallback
            )
        return Performed()

    # -- locks ---------------------------------------------------------------------------

    def acquire_locks(self, command: cmd.AcquireLocks, context: CommandContext) -> Performed:
        try:
            capacities = capacities_for(self.policy_for(context.repo), command.subsystems)
        except UnknownSubsystemError as error:
            raise TerminalError(str(error)) from error
        outcome = self.locks.acquire(
            context.repo, command.holder, capacities, self.lock_ttl, wait=True
        )
        if isinstance(outcome, Grant):
            epochs = tuple(sorted(outcome.epochs.items()))
            return Performed(ev.LocksGranted(command.key, command.subsystems, epochs))
        blocked = tuple(sorted({blocker.subsystem for blocker in outcome.blockers}))
        return Performed(ev.LocksWaiting(command.key, blocked), repeat_after=self.lock_poll_seconds)

    def release_locks(self, command: cmd.ReleaseLocks, context: CommandContext) -> Performed:
        release_item_leases(self.locks, context.repo, command.holder, command.subsystems)
        return Performed()

    def transfer_locks(self, command: cmd.TransferLocks, context: CommandContext) -> Performed:
        transfer_item_leases(
            self.locks,
            context.repo,
            command.from_holder,
            command.to_holder,
            self.lock_ttl,
            command.subsystems,
        )
        return Performed()

    # -- merge queue ---------------------------------------------------------------------

    def enqueue(self, command: cmd.Enqueue, context: CommandContext) -> Performed:
        assert self.queue is not None
        github = self._github(context)
        policy = self.policy_for(context.repo)
        try:
            config = queue_config_from_policy(policy.queue)
        except Exception as error:  # QueueConfigError is a ConfigurationError
            raise TerminalError(f"the merge queue is not configured: {error}") from error
        base = policy.queue.base
        base_sha = github.get_ref(context.repo, f"heads/{base}").sha
        self.queue.submit(
            context.repo,
            base,
            queue_events.Enqueue(command.pr, command.head_sha, default_priority(policy)),
            config=config,
            base_sha=base_sha,
        )
        if self.refresh_gates is not None:
            self.refresh_gates(github, context.repo, command.pr)
        return Performed(ev.Enqueued(command.key, command.pr))

    def dequeue(self, command: cmd.Dequeue, context: CommandContext) -> Performed:
        assert self.queue is not None
        base = self.policy_for(context.repo).queue.base
        if self.queue.state(context.repo, base) is None:
            return Performed()
        self.queue.submit(
            context.repo, base, queue_events.Dequeue(command.pr, self.queued_by, command.reason)
        )
        return Performed()
