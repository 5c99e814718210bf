"""Labels and human interventions: creation, refusal, restart, label removal, takeover,
resume, cancel, a closed PR, step failures and exhausted budgets.

Pure; performs no I/O. Each handler returns True when it changed the item (the `Step`
holds the result) and False when the event does not apply.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from trunkline.pipeline import events as ev
from trunkline.pipeline.commands import (
    CancelWork,
    Dequeue,
    RefuseLabel,
    RemoveLabel,
    TransferLocks,
)
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.decision import (
    Decision,
    Step,
    answers_to,
    escalate,
    leave,
    release_locks,
    request_locks,
    run_executor,
    run_planner,
)
from trunkline.pipeline.model import (
    LockStatus,
    Transition,
    WorkItem,
    human_holder,
)
from trunkline.pipeline.states import (
    ACTIVE,
    BEFORE_EXECUTION,
    RESTARTABLE,
    TERMINAL,
    WorkState,
)

S = WorkState


def create(event: ev.Labeled, now: datetime, config: PipelineConfig) -> Decision:
    if event.label != config.dispatch_label:
        return None, ()
    seed = WorkItem(
        repo=event.repo,
        issue=event.issue,
        state=S.QUEUED,
        requester=event.by,
        created_at=now,
        updated_at=now,
    )
    step = Step(seed, now, config)
    if config.may_dispatch(event.permission):
        step.change(run=1, queued_at=now)
        step.item = replace(
            step.item, history=(Transition(None, S.QUEUED, f"labeled by {event.by}", now),)
        )
        step.sticky(f"`{event.label}` added by @{event.by}; queued for a free slot")
        return step.done()
    reason = _refusal(event, config)
    step.item = replace(
        step.item,
        state=S.REFUSED,
        exit_reason=reason,
        refused_users=(event.by,),
        history=(Transition(None, S.REFUSED, reason, now),),
    )
    _refuse(step, event)
    return step.done()


def _refusal(event: ev.Labeled, config: PipelineConfig) -> str:
    held = event.permission.value if event.permission is not None else "no"
    return (
        f"@{event.by} has {held} permission; handing work to trunkline needs "
        f"{config.min_permission.value}"
    )


def _refuse(step: Step, event: ev.Labeled) -> None:
    step.emit(
        RefuseLabel(
            key=step.key(f"refuse-label/{event.by}"),
            item=step.item.key,
            user=event.by,
            label=event.label,
            min_permission=step.config.min_permission.value,
        )
    )


def on_labeled(step: Step, event: ev.Labeled) -> bool:
    item, config = step.item, step.config
    if event.label != config.dispatch_label:
        return False
    if not config.may_dispatch(event.permission):
        if event.by in item.refused_users:
            return False
        step.change(refused_users=(*item.refused_users, event.by))
        _refuse(step, event)
        return True
    if item.state not in RESTARTABLE:
        return False
    was = item.state
    step.item = WorkItem(
        repo=item.repo,
        issue=item.issue,
        state=item.state,
        requester=event.by,
        created_at=item.created_at,
        updated_at=item.updated_at,
        queued_at=step.now,
        run=item.run + 1,
        version=item.version,
        history=item.history,
    )
    step.move(S.QUEUED, f"labeled again by {event.by} after {was.value}")
    if was is S.ESCALATED:
        step.emit(
            RemoveLabel(key=step.key("remove-label"), item=item.key, label=config.escalation_label)
        )
    step.sticky(f"`{event.label}` added again by @{event.by}: run {step.item.run} queued")
    return True


def on_unlabeled(step: Step, event: ev.Unlabeled) -> bool:
    item = step.item
    if event.label != step.config.dispatch_label:
        return False
    if item.state in BEFORE_EXECUTION:
        reason = f"the `{event.label}` label was removed by @{event.by} before execution"
        leave(step, S.CANCELLED, reason)
        step.sticky(reason)
        return True
    if item.state in TERMINAL or item.label_removed:
        return False
    step.change(label_removed=True)
    step.sticky(
        f"the `{event.label}` label was removed by @{event.by} after execution started: "
        "the work continues (`/trunkline cancel` stops it)"
    )
    return True


def on_takeover(step: Step, event: ev.TakeoverRequested) -> bool:
    item = step.item
    if item.state not in ACTIVE:
        return False
    human = human_holder(event.by, item.issue)
    if item.locks is LockStatus.HELD:
        step.emit(
            TransferLocks(
                key=step.key("transfer-locks"),
                item=item.key,
                from_holder=item.holder,
                to_holder=human,
                subsystems=item.lock_subsystems,
            )
        )
        step.change(locks=LockStatus.TRANSFERRED)
    elif item.locks is LockStatus.REQUESTED:
        release_locks(step)
    step.emit(CancelWork(key=step.key("cancel-work"), item=item.key, reason="human takeover"))
    if item.state is S.QUEUED_FOR_MERGE and item.pr is not None:
        step.emit(
            Dequeue(key=step.key("dequeue"), item=item.key, pr=item.pr, reason="human takeover")
        )
    step.move(S.TAKEN_OVER, f"taken over by @{event.by}")
    step.change(takeover_holder=event.by, awaiting=None)
    step.sticky(f"@{event.by} took the work over")
    return True


def on_resumed(step: Step, event: ev.Resumed) -> bool:
    item = step.item
    if item.state is not S.TAKEN_OVER:
        return False
    why = f"resumed by @{event.by}"
    if item.locks is LockStatus.TRANSFERRED:
        step.emit(
            TransferLocks(
                key=step.key("transfer-locks"),
                item=item.key,
                from_holder=human_holder(item.takeover_holder or event.by, item.issue),
                to_holder=item.holder,
                subsystems=item.lock_subsystems,
            )
        )
        step.change(locks=LockStatus.HELD, takeover_holder=None)
        run_executor(
            step,
            why,
            (f"@{event.by} handed the work back; continue from the branch as it is",),
        )
        step.sticky(f"{why}: the executor continues from the branch")
    elif item.plan_accepted:
        step.change(takeover_holder=None)
        request_locks(step, why)
    else:
        step.change(takeover_holder=None, plan_rounds=1)
        step.move(S.PLANNING, why)
        run_planner(step, f"resumed by @{event.by} after a takeover")
        step.sticky(f"{why}: planning again")
    return True


def on_cancel(step: Step, event: ev.CancelRequested) -> bool:
    item = step.item
    if item.state in TERMINAL:
        return False
    reason = f"cancelled by @{event.by}"
    leave(step, S.CANCELLED, reason)
    step.emit(
        RemoveLabel(key=step.key("remove-label"), item=item.key, label=step.config.dispatch_label)
    )
    step.sticky(reason)
    return True


def on_pr_closed(step: Step, event: ev.PrClosed) -> bool:
    item = step.item
    if item.pr is None or event.pr != item.pr:
        return False
    if item.state not in ACTIVE and item.state is not S.TAKEN_OVER:
        return False
    reason = f"#{event.pr} was closed without merging by @{event.by}"
    leave(step, S.FAILED, reason)
    step.sticky(reason)
    return True


def on_step_failed(step: Step, event: ev.StepFailed) -> bool:
    if not answers_to(step, ACTIVE, event.answers):
        return False
    note = f"{event.step}: {event.reason}"
    if not event.retryable:
        step.change(spend=step.item.spend.merged_with(event.spend))
        escalate(step, event.code or "step_failed", note)
        return True
    if step.item.last_error == note:
        return False
    step.change(last_error=note)
    step.sticky(f"retrying after a failure that may pass ({note})")
    return True


def on_budget_exhausted(step: Step, event: ev.BudgetExhausted) -> bool:
    if step.item.state not in ACTIVE:
        return False
    step.change(spend=step.item.spend.merged_with(event.spend))
    detail = f"the budget is exhausted ({event.reason})"
    if event.detail:
        detail = f"{detail}: {event.detail}"
    escalate(step, event.reason or "budget", detail)
    return True
