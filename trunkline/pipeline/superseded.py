"""When a fire-and-forget command no longer applies to its item: it is then not performed.

Pure; performs no I/O. A fire-and-forget command's job keeps being retried through a
retryable outage of any length (`runner.PipelineService.perform_job`), so it may be
performed long after it was decided. By then the item may have moved on, and performing it
late would mislead (an escalation label on a new run, a request to approve a plan that was
approved or cancelled) or undo a human's later action (removing the dispatch label that
started a new run). Each performance asks `superseded(command, item)` first, with the item
as stored when the job runs:

- `UpdateSticky` decided at an older version than the item's: a later `UpdateSticky`
  carries the newer text (every change of an item emits one);
- `RequestPlanApproval` when the item no longer waits for a human to approve that plan
  (approved, cancelled, escalated, or a later run);
- a GitHub write of an earlier run than the item's (`Escalate`, `ApplyLabel`,
  `RemoveLabel`, `RefuseLabel`, `CloseIssue`, `PostReview`): that run has ended and the
  new one decides its own;
- `Escalate` and `ApplyLabel` (the escalation label, the only label applied) once the item
  is no longer escalated (its PR merged by hand after it escalated, say);
- lock releases and transfers, `Dequeue` and `CancelWork` are never superseded: they clean
  up what the item held, whichever run it is in.

The run and version come from the command's key (`<item>:run<r>:v<version>:<name>`).
"""

from __future__ import annotations

import re

from trunkline.pipeline import commands as cmd
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.states import WorkState

_RUN = re.compile(r":run(\d+):")
_VERSION = re.compile(r":v(\d+):")

RUN_BOUND = (
    cmd.Escalate,
    cmd.ApplyLabel,
    cmd.RemoveLabel,
    cmd.RefuseLabel,
    cmd.CloseIssue,
    cmd.PostReview,
)
"""GitHub writes that belong to the run that decided them."""


def command_version(key: str) -> int:
    """The item version a command key was decided at (`...:v<n>:name`)."""
    match = _VERSION.search(key)
    return int(match.group(1)) if match else 0


def command_run(key: str) -> int:
    """The item run a command key was decided in (`...:run<r>:...`)."""
    match = _RUN.search(key)
    return int(match.group(1)) if match else 0


def superseded(command: cmd.Command, item: WorkItem) -> str | None:
    """Why the fire-and-forget `command` no longer applies to `item`; None: perform it."""
    if isinstance(command, cmd.UpdateSticky):
        if command_version(command.key) < item.version:
            return f"a later status update exists (the item is at version {item.version})"
        return None
    if isinstance(command, cmd.RequestPlanApproval):
        waits = item.state is WorkState.AWAITING_PLAN_APPROVAL and item.plan_id == command.plan_id
        if not waits or command_run(command.key) < item.run:
            return f"the item no longer waits for approval of plan {command.plan_id}"
        return None
    run = command_run(command.key)
    if isinstance(command, RUN_BOUND) and run < item.run:
        return f"run {run} has ended; the item is in run {item.run}"
    if isinstance(command, cmd.Escalate | cmd.ApplyLabel) and item.state is not WorkState.ESCALATED:
        # the escalation's comment and label (the only label applied), e.g. after the PR was
        # merged by hand: no comment, mention, label or push any more
        return f"the item is {item.state.value} now, no longer escalated"
    return None
