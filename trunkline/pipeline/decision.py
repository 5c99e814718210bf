"""One decision in the making (`Step`) and the moves several handlers share: starting the
planner, the locks, the executor and the reviewer, looping back with feedback, and the side
exits (release locks, leave, escalate).

Pure; performs no I/O. A `Step` collects the changed item, its transitions (each appended
to the bounded history with `now`) and its commands; every command key is
`<item>:run<r>:v<version>:<name>` where version is the item's next version, so deciding the
same event on the same item always yields the same keys.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from trunkline.pipeline.commands import (
    AcquireLocks,
    ApplyLabel,
    CancelWork,
    Command,
    Dequeue,
    Escalate,
    ReleaseLocks,
    RunExecutor,
    RunPlanner,
    RunReviewer,
    UpdateSticky,
)
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.model import (
    HISTORY_LIMIT,
    LockStatus,
    Transition,
    WorkItem,
    human_holder,
)
from trunkline.pipeline.states import (
    ACTIVE,
    WorkState,
)
from trunkline.pipeline.sticky import sticky_text

S = WorkState
Decision = tuple[WorkItem | None, tuple[Command, ...]]


class Step:
    """Accumulates one decision: the changed item, its transitions and its commands."""

    def __init__(self, item: WorkItem, now: datetime, config: PipelineConfig) -> None:
        self.item = item
        self.now = now
        self.config = config
        self.version = item.version + 1
        self.commands: list[Command] = []

    def key(self, name: str) -> str:
        return f"{self.item.key}:run{self.item.run}:v{self.version}:{name}"

    def change(self, **changes: object) -> None:
        self.item = replace(self.item, **changes)  # type: ignore[arg-type]

    def move(self, to: WorkState, reason: str) -> None:
        step = Transition(self.item.state, to, reason, self.now)
        history = (*self.item.history, step)[-HISTORY_LIMIT:]
        self.item = replace(self.item, state=to, history=history)

    def emit(self, command: Command) -> None:
        self.commands.append(command)

    def wait_for(self, command: Command) -> None:
        self.emit(command)
        self.change(awaiting=command.key)

    def sticky(self, why: str) -> None:
        item = self.item
        self.emit(
            UpdateSticky(
                key=self.key("sticky"),
                item=item.key,
                state=item.state,
                pr=item.pr,
                text=sticky_text(item, why, self.config.max_rounds),
            )
        )

    def done(self) -> Decision:
        item = replace(self.item, version=self.version, updated_at=self.now)
        return item, tuple(self.commands)


def answers_to(step: Step, state: WorkState | frozenset[WorkState], answers: str) -> bool:
    item = step.item
    states = state if isinstance(state, frozenset) else frozenset({state})
    return item.state in states and item.awaiting is not None and item.awaiting == answers


def run_planner(step: Step, feedback: str) -> None:
    item = step.item
    step.wait_for(
        RunPlanner(
            key=step.key("run-planner"), item=item.key, round=item.plan_rounds, feedback=feedback
        )
    )


def request_locks(step: Step, why: str) -> None:
    item = step.item
    subsystems = item.risk.subsystems if item.risk is not None else ()
    step.move(S.WAITING_FOR_LOCKS, why)
    step.change(locks=LockStatus.REQUESTED, lock_subsystems=subsystems, waiting_on=())
    step.wait_for(
        AcquireLocks(
            key=step.key("acquire-locks"), item=item.key, holder=item.holder, subsystems=subsystems
        )
    )
    step.sticky(f"{why}; asking for the locks on {', '.join(subsystems) or 'nothing'}")


def run_executor(step: Step, why: str, feedback: tuple[str, ...]) -> None:
    item = step.item
    step.move(S.EXECUTING, why)
    step.change(exec_round=item.exec_round + 1)
    step.wait_for(
        RunExecutor(
            key=step.key("run-executor"),
            item=item.key,
            round=item.exec_round + 1,
            plan_id=item.plan_id or "",
            holder=item.holder,
            feedback=feedback,
        )
    )


def run_reviewer(step: Step) -> None:
    item = step.item
    assert item.pr is not None
    assert item.head_sha is not None
    step.wait_for(
        RunReviewer(key=step.key("run-reviewer"), item=item.key, pr=item.pr, sha=item.head_sha)
    )


def loop_back(step: Step, why: str, feedback: tuple[str, ...], *, dequeue: bool = True) -> None:
    """Back to the executor with `feedback`, using one review round; escalate when none
    is left."""
    item = step.item
    if item.review_rounds >= step.config.max_rounds:
        escalate(
            step,
            "max_review_rounds",
            f"{why}; all {step.config.max_rounds} review rounds are used",
            dequeue=dequeue,
        )
        return
    if dequeue and item.state is S.QUEUED_FOR_MERGE and item.pr is not None:
        step.emit(Dequeue(key=step.key("dequeue"), item=item.key, pr=item.pr, reason=why))
    step.move(S.CHANGES_REQUESTED, why)
    step.change(review_rounds=item.review_rounds + 1, reviewed_sha=None, review_verdict=None)
    run_executor(
        step, f"review round {item.review_rounds + 1} of {step.config.max_rounds}", feedback
    )
    step.sticky(f"{why}: back to the executor")


def release_locks(step: Step) -> None:
    item = step.item
    if item.locks is LockStatus.NONE:
        return
    holder = item.holder
    if item.locks is LockStatus.TRANSFERRED:
        holder = human_holder(item.takeover_holder or "unknown", item.issue)
    step.emit(
        ReleaseLocks(
            key=step.key("release-locks"),
            item=item.key,
            holder=holder,
            subsystems=item.lock_subsystems,
        )
    )
    step.change(locks=LockStatus.NONE)


def leave(step: Step, to: WorkState, reason: str, *, dequeue: bool = True) -> None:
    """Leave for a side exit (escalated, cancelled, failed): release the locks, stop the
    agents, take the PR out of the queue, record why."""
    item = step.item
    release_locks(step)
    if item.state in ACTIVE:
        step.emit(CancelWork(key=step.key("cancel-work"), item=item.key, reason=reason))
    if dequeue and item.state is S.QUEUED_FOR_MERGE and item.pr is not None:
        step.emit(Dequeue(key=step.key("dequeue"), item=item.key, pr=item.pr, reason=reason))
    step.move(to, reason)
    step.change(exit_reason=reason, awaiting=None)


def escalate(step: Step, code: str, detail: str, *, dequeue: bool = True) -> None:
    item = step.item
    leave(step, S.ESCALATED, f"escalated ({code}): {detail}", dequeue=dequeue)
    step.change(escalation_reason=code)
    step.emit(
        Escalate(
            key=step.key("escalate"),
            item=item.key,
            reason=code,
            detail=detail,
            spend=item.spend,
            notify=step.config.escalation_notify,
            pr=item.pr,
        )
    )
    step.emit(
        ApplyLabel(key=step.key("apply-label"), item=item.key, label=step.config.escalation_label)
    )
    step.sticky(f"escalated ({code}): {detail}")
