"""The work-item state machine: `decide(item, event, now, config) -> (item, commands)`.

Pure; performs no I/O, reads no clock: the same item, event, `now` and config always give
the same result, including the commands' idempotency keys. Rules (docs/pipeline.md has the
diagram and the runner's side):

- A `Labeled` with the dispatch label by a user with at least `min_permission` creates the
  item (queued) once; a duplicate delivery or a relabel of a non-terminal or merged item
  does nothing; a relabel of an escalated, cancelled, failed or refused item starts a new
  run. Anyone else gets `RefuseLabel` (once per user and run) and no work: a new item is
  recorded as `refused`.
- `admit` picks the queued items that may start (FIFO, repository-wide `max_active`);
  `Admitted` moves one to planning.
- plan -> plan review (request_changes re-plans, at most `max_rounds` planner runs) ->
  awaiting_plan_approval when the policy's level requires it -> waiting_for_locks ->
  executing -> self_check -> pr_open -> reviewing -> ready -> queued_for_merge -> merged.
- Change requests (the reviewer agent's, a human's on the current head, a failed
  self-check, a merge-queue ejection) go through changes_requested back to executing;
  each uses one of `max_rounds` review rounds; one more escalates (`max_review_rounds`).
- Takeover (from an active state) -> taken_over (locks transferred to the human);
  `Resumed` -> executing (locks transferred back), or back to waiting_for_locks / planning
  when the takeover came before the locks were held.
- Cancel, removing the label before execution, a closed PR, a non-retryable step failure
  and an exhausted budget leave with the locks released and a sticky update saying why,
  what was spent and what a human can do next.
- Anything else (late, duplicate, unknown, for another SHA/PR/plan, or a result for a
  command the item no longer waits for) returns the same item object and no commands.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import assert_never

from trunkline.pipeline import events as ev
from trunkline.pipeline.commands import (
    CancelWork,
    CloseIssue,
    Enqueue,
    PostReview,
    PushAndOpenPr,
    RemoveLabel,
    RequestPlanApproval,
    RunPlanReview,
    RunSelfCheck,
)
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.decision import (
    Decision,
    Step,
    answers_to,
    escalate,
    loop_back,
    release_locks,
    request_locks,
    run_executor,
    run_planner,
    run_reviewer,
)
from trunkline.pipeline.interventions import (
    create,
    on_budget_exhausted,
    on_cancel,
    on_labeled,
    on_pr_closed,
    on_resumed,
    on_step_failed,
    on_takeover,
    on_unlabeled,
)
from trunkline.pipeline.model import (
    LockStatus,
    Verdict,
    WorkItem,
)
from trunkline.pipeline.states import (
    ACTIVE,
    MERGEABLE,
    WITH_REVIEWABLE_PR,
    WorkState,
)

S = WorkState


def decide(
    item: WorkItem | None, event: ev.Event, now: datetime, config: PipelineConfig
) -> Decision:
    """The next item and the commands to perform; `(item, ())` when the event does not apply.
    A `Labeled` for another issue than `item` is a wiring error (ValueError)."""
    if item is None:
        if isinstance(event, ev.Labeled):
            return create(event, now, config)
        return None, ()
    if isinstance(event, ev.Labeled) and (event.repo, event.issue) != (item.repo, item.issue):
        raise ValueError(f"{event.repo}#{event.issue} labeled, but decided on {item.key}")
    step = Step(item, now, config)
    if _apply(step, event):
        return step.done()
    return item, ()


def start(item: WorkItem, now: datetime, config: PipelineConfig) -> Decision:
    """Start a queued item that `admit` picked."""
    return decide(item, ev.Admitted(item.run), now, config)


def admit(items: Iterable[WorkItem], max_active: int) -> tuple[WorkItem, ...]:
    """The queued items of one repository that may start planning now: the oldest first
    (by `queued_at`, then issue number), as many as `max_active` leaves room for."""
    pool = tuple(items)
    repos = {item.repo for item in pool}
    if len(repos) > 1:
        raise ValueError(f"admit takes the items of one repository, got {sorted(repos)}")
    active = sum(1 for item in pool if item.state in ACTIVE)
    free = max(0, max_active - active)
    queued = sorted(
        (item for item in pool if item.state is S.QUEUED),
        key=lambda item: (item.queued_at or item.created_at, item.issue),
    )
    return tuple(queued[:free])


def _on_admitted(step: Step, event: ev.Admitted) -> bool:
    if step.item.state is not S.QUEUED or event.run != step.item.run:
        return False
    step.move(S.PLANNING, "admitted under dispatch.max_active")
    step.change(plan_rounds=1)
    run_planner(step, "")
    step.sticky("a slot is free: planning")
    return True


def _on_plan_ready(step: Step, event: ev.PlanReady) -> bool:
    if not answers_to(step, S.PLANNING, event.answers):
        return False
    evaluation = event.evaluation
    required = (
        evaluation.plan_approval_required or evaluation.level in step.config.plan_approval_levels
    )
    step.change(
        plan_id=event.plan_id,
        plan_summary=event.summary,
        plan_paths=event.paths,
        risk=evaluation,
        plan_approval_required=required,
        plan_accepted=False,
        plan_approved_by=None,
        spend=step.item.spend.merged_with(event.spend),
    )
    step.move(S.PLAN_REVIEW, f"plan {event.plan_id} ready (risk {evaluation.level})")
    step.wait_for(
        RunPlanReview(key=step.key("run-plan-review"), item=step.item.key, plan_id=event.plan_id)
    )
    step.sticky(f"plan {event.plan_id} is being reviewed")
    return True


def _on_plan_reviewed(step: Step, event: ev.PlanReviewed) -> bool:
    item = step.item
    if not answers_to(step, S.PLAN_REVIEW, event.answers) or event.plan_id != item.plan_id:
        return False
    step.change(spend=item.spend.merged_with(event.spend))
    if event.verdict is Verdict.ESCALATE:
        escalate(step, "plan_review_escalated", event.summary or "the plan reviewer escalated")
    elif event.verdict is Verdict.REQUEST_CHANGES:
        if item.plan_rounds >= step.config.max_rounds:
            escalate(
                step,
                "plan_rejected",
                f"the plan reviewer still requested changes after {item.plan_rounds} plans",
            )
        else:
            step.move(S.PLANNING, "the plan reviewer requested changes")
            step.change(plan_rounds=item.plan_rounds + 1)
            run_planner(step, event.summary)
            step.sticky("the plan reviewer requested changes: re-planning")
    elif item.plan_approval_required:
        assert item.risk is not None
        step.move(S.AWAITING_PLAN_APPROVAL, f"risk {item.risk.level} requires plan approval")
        step.change(awaiting=None)
        step.emit(
            RequestPlanApproval(
                key=step.key("request-plan-approval"),
                item=item.key,
                plan_id=event.plan_id,
                summary=item.plan_summary,
                risk=item.risk.level,
                reasons=item.risk.reasons,
            )
        )
        step.sticky(f"risk level {item.risk.level} needs a human to approve the plan")
    else:
        step.change(plan_accepted=True)
        request_locks(step, "the plan reviewer approved the plan")
    return True


def _on_plan_approved(step: Step, event: ev.PlanApproved) -> bool:
    item = step.item
    if item.state is not S.AWAITING_PLAN_APPROVAL or event.plan_id != item.plan_id:
        return False
    step.change(plan_approved_by=event.by, plan_accepted=True)
    request_locks(step, f"@{event.by} approved the plan")
    return True


def _on_locks_granted(step: Step, event: ev.LocksGranted) -> bool:
    if not answers_to(step, S.WAITING_FOR_LOCKS, event.answers):
        return False
    step.change(
        locks=LockStatus.HELD,
        lock_subsystems=event.subsystems,
        lock_epochs=event.epochs,
        waiting_on=(),
    )
    why = f"locks granted on {', '.join(event.subsystems) or 'nothing'}"
    run_executor(step, why, ())
    step.sticky(f"{why}: executing")
    return True


def _on_locks_waiting(step: Step, event: ev.LocksWaiting) -> bool:
    if not answers_to(step, S.WAITING_FOR_LOCKS, event.answers):
        return False
    if event.blocked_on == step.item.waiting_on:
        return False
    step.change(waiting_on=event.blocked_on)
    step.sticky(f"waiting for the locks on {', '.join(event.blocked_on)}")
    return True


def _on_execution_done(step: Step, event: ev.ExecutionDone) -> bool:
    if not answers_to(step, S.EXECUTING, event.answers):
        return False
    if event.kind is ev.ExecutionKind.TAKEN_OVER:
        return False
    step.change(spend=step.item.spend.merged_with(event.spend))
    if event.kind is ev.ExecutionKind.ESCALATED:
        code = event.reason or "executor_escalated"
        escalate(step, code, f"the executor escalated ({code})")
        return True
    item = step.item
    step.move(S.SELF_CHECK, f"execution round {item.exec_round} completed")
    step.wait_for(
        RunSelfCheck(key=step.key("run-self-check"), item=item.key, round=item.exec_round)
    )
    step.sticky(f"execution round {item.exec_round} done: running the allowlisted tests")
    return True


def _on_self_check_done(step: Step, event: ev.SelfCheckDone) -> bool:
    if not answers_to(step, S.SELF_CHECK, event.answers):
        return False
    if not event.passed:
        summary = event.summary or "the allowlisted tests failed"
        loop_back(step, f"self-check failed: {summary}", (summary,))
        return True
    item = step.item
    step.move(S.PR_OPEN, "self-check passed")
    assert item.risk is not None
    step.wait_for(
        PushAndOpenPr(
            key=step.key("push-and-open-pr"),
            item=item.key,
            pr=item.pr,
            holder=item.holder,
            plan_summary=item.plan_summary,
            risk=item.risk.level,
            reasons=item.risk.reasons,
            spend=item.spend,
        )
    )
    step.sticky("self-check passed: pushing the branch and opening the pull request")
    return True


def _on_pr_opened(step: Step, event: ev.PrOpened) -> bool:
    if not answers_to(step, S.PR_OPEN, event.answers):
        return False
    step.change(pr=event.pr, head_sha=event.head_sha, reviewed_sha=None, review_verdict=None)
    step.move(S.REVIEWING, f"pull request #{event.pr} at {event.head_sha[:12]}")
    run_reviewer(step)
    step.sticky(f"pull request #{event.pr} is open: the reviewer agent reads it")
    return True


def _on_review_done(step: Step, event: ev.ReviewDone) -> bool:
    item = step.item
    reviewing = frozenset({S.REVIEWING, S.QUEUED_FOR_MERGE})
    if not answers_to(step, reviewing, event.answers) or event.sha != item.head_sha:
        return False
    assert item.pr is not None
    step.change(
        reviewed_sha=event.sha,
        review_verdict=event.verdict,
        spend=item.spend.merged_with(event.spend),
        awaiting=None,
    )
    step.emit(
        PostReview(
            key=step.key("post-review"),
            item=item.key,
            pr=item.pr,
            sha=event.sha,
            verdict=event.verdict,
            findings=event.findings,
            summary=event.summary,
            notes=event.notes,
        )
    )
    if event.verdict is Verdict.ESCALATE:
        escalate(step, "reviewer_escalated", event.summary or "the reviewer asked for a human")
    elif event.verdict is Verdict.REQUEST_CHANGES:
        loop_back(
            step,
            f"the reviewer requested changes on {event.sha[:12]} ({event.findings} findings)",
            (event.summary or f"{event.findings} findings",),
        )
    elif item.state is S.REVIEWING:
        step.move(S.READY, f"the reviewer approved {event.sha[:12]}")
        step.wait_for(
            Enqueue(key=step.key("enqueue"), item=item.key, pr=item.pr, head_sha=event.sha)
        )
        step.sticky(f"the reviewer approved {event.sha[:12]}: entering the merge queue")
    else:
        step.sticky(f"the reviewer approved the new head {event.sha[:12]}")
    return True


def _on_human_review(step: Step, event: ev.HumanReview) -> bool:
    item = step.item
    if item.state not in WITH_REVIEWABLE_PR or event.sha != item.head_sha:
        return False
    wants_changes = event.state is ev.HumanReviewState.CHANGES_REQUESTED or (
        event.state is ev.HumanReviewState.COMMENTED and bool(event.comments)
    )
    if not wants_changes:
        return False  # approvals are the merge queue's approval gate's business
    loop_back(
        step,
        f"@{event.by} requested changes on {event.sha[:12]}",
        event.comments or (f"@{event.by} requested changes without a comment",),
    )
    return True


def _on_pr_head_changed(step: Step, event: ev.PrHeadChanged) -> bool:
    item = step.item
    if item.state not in WITH_REVIEWABLE_PR or event.pr != item.pr or event.sha == item.head_sha:
        return False
    step.change(head_sha=event.sha, reviewed_sha=None, review_verdict=None)
    why = f"the head of #{event.pr} moved to {event.sha[:12]}: reviewing it again"
    if item.state is not S.QUEUED_FOR_MERGE:
        step.move(S.REVIEWING, why)
    run_reviewer(step)
    step.sticky(why)
    return True


def _on_enqueued(step: Step, event: ev.Enqueued) -> bool:
    if not answers_to(step, S.READY, event.answers) or event.pr != step.item.pr:
        return False
    step.move(S.QUEUED_FOR_MERGE, f"#{event.pr} entered the merge queue")
    step.change(awaiting=None)
    step.sticky(f"#{event.pr} is in the merge queue")
    return True


def _on_merged(step: Step, event: ev.Merged) -> bool:
    """A merge of the item's PR is a fact, whatever the item was doing: a merge that landed
    while a change request sent it back to the executor, a human merging an escalated PR."""
    item = step.item
    if item.state not in MERGEABLE or item.pr is None or event.pr != item.pr:
        return False
    release_locks(step)
    reason = f"#{event.pr} merged as {event.sha[:12]}"
    if item.state in ACTIVE and item.awaiting is not None:
        # an agent run may be working for it (a loop back, a re-review): it stops
        step.emit(CancelWork(key=step.key("cancel-work"), item=item.key, reason=reason))
    if item.state is S.ESCALATED:
        label = step.config.escalation_label
        step.emit(RemoveLabel(key=step.key("remove-label"), item=item.key, label=label))
    step.move(S.MERGED, reason)
    step.change(merged_sha=event.sha, exit_reason=reason, awaiting=None)
    risk = item.risk.level if item.risk is not None else "unknown"
    summary = (
        f"Merged #{event.pr} as `{event.sha}` (risk {risk}, {item.review_rounds} review "
        f"rounds used, spend {item.spend.describe()}). Plan: {item.plan_summary}"
    )
    step.emit(CloseIssue(key=step.key("close-issue"), item=item.key, summary=summary))
    step.sticky(reason)
    return True


def _on_ejected(step: Step, event: ev.Ejected) -> bool:
    item = step.item
    if item.state is not S.QUEUED_FOR_MERGE or event.pr != item.pr:
        return False
    loop_back(
        step,
        f"the merge queue ejected #{event.pr}: {event.reason}",
        (event.reason,),
        dequeue=False,
    )
    return True


def _on_dequeued(step: Step, event: ev.Dequeued) -> bool:
    """Taken out of the queue by someone else: the item cannot merge without a human, so it
    escalates (locks released) instead of waiting in `queued_for_merge` for ever."""
    item = step.item
    if item.state is not S.QUEUED_FOR_MERGE or event.pr != item.pr:
        return False
    escalate(step, "dequeued", f"#{event.pr} left the merge queue: {event.reason}", dequeue=False)
    return True


def _apply(step: Step, event: ev.Event) -> bool:
    match event:
        case ev.Labeled():
            return on_labeled(step, event)
        case ev.Unlabeled():
            return on_unlabeled(step, event)
        case ev.Admitted():
            return _on_admitted(step, event)
        case ev.PlanReady():
            return _on_plan_ready(step, event)
        case ev.PlanReviewed():
            return _on_plan_reviewed(step, event)
        case ev.PlanApproved():
            return _on_plan_approved(step, event)
        case ev.LocksGranted():
            return _on_locks_granted(step, event)
        case ev.LocksWaiting():
            return _on_locks_waiting(step, event)
        case ev.ExecutionDone():
            return _on_execution_done(step, event)
        case ev.SelfCheckDone():
            return _on_self_check_done(step, event)
        case ev.PrOpened():
            return _on_pr_opened(step, event)
        case ev.ReviewDone():
            return _on_review_done(step, event)
        case ev.HumanReview():
            return _on_human_review(step, event)
        case ev.PrHeadChanged():
            return _on_pr_head_changed(step, event)
        case ev.Enqueued():
            return _on_enqueued(step, event)
        case ev.Merged():
            return _on_merged(step, event)
        case ev.Ejected():
            return _on_ejected(step, event)
        case ev.Dequeued():
            return _on_dequeued(step, event)
        case ev.PrClosed():
            return on_pr_closed(step, event)
        case ev.TakeoverRequested():
            return on_takeover(step, event)
        case ev.Resumed():
            return on_resumed(step, event)
        case ev.CancelRequested():
            return on_cancel(step, event)
        case ev.StepFailed():
            return on_step_failed(step, event)
        case ev.BudgetExhausted():
            return on_budget_exhausted(step, event)
        case _:
            assert_never(event)
