"""Which fire-and-forget commands an item has moved past (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from trunkline.pipeline import commands as cmd
from trunkline.pipeline.model import Spend, Verdict, WorkItem
from trunkline.pipeline.states import WorkState
from trunkline.pipeline.superseded import command_run, command_version, superseded

NOW = datetime(2024, 5, 1, tzinfo=UTC)
ITEM = WorkItem(
    repo="acme/w",
    issue=3,
    state=WorkState.ESCALATED,
    requester="maya",
    created_at=NOW,
    updated_at=NOW,
    run=2,
    version=9,
    plan_id="plan-2",
)


def key(run: int, version: int, name: str) -> str:
    return f"acme/w#3:run{run}:v{version}:{name}"


def run_bound(run: int) -> list[cmd.Command]:
    return [
        cmd.Escalate(key(run, 9, "escalate"), "acme/w#3", "budget_usd", "", Spend(), (), None),
        cmd.ApplyLabel(key(run, 9, "apply-label"), "acme/w#3", "needs-human"),
        cmd.RemoveLabel(key(run, 9, "remove-label"), "acme/w#3", "agent"),
        cmd.RefuseLabel(key(run, 9, "refuse-label"), "acme/w#3", "oscar", "agent", "write"),
        cmd.CloseIssue(key(run, 9, "close-issue"), "acme/w#3", "done"),
        cmd.PostReview(key(run, 9, "post-review"), "acme/w#3", 4, "a" * 40, Verdict.APPROVE, 0, ""),
    ]


def test_pipeline_command_keys_name_their_run_and_version() -> None:
    assert (command_run(key(2, 17, "sticky")), command_version(key(2, 17, "sticky"))) == (2, 17)
    assert (command_run("odd"), command_version("odd")) == (0, 0)


@pytest.mark.parametrize("command", run_bound(1))
def test_pipeline_github_writes_of_an_earlier_run_are_superseded(command: cmd.Command) -> None:
    assert superseded(command, ITEM) == "run 1 has ended; the item is in run 2"


@pytest.mark.parametrize("command", run_bound(2))
def test_pipeline_github_writes_of_the_current_run_are_performed(command: cmd.Command) -> None:
    assert superseded(command, ITEM) is None


def test_pipeline_a_status_update_is_superseded_by_a_later_version() -> None:
    older = cmd.UpdateSticky(key(2, 8, "sticky"), "acme/w#3", WorkState.PLANNING, None, "old")
    current = replace(older, key=key(2, 9, "sticky"))
    assert superseded(older, ITEM) is not None
    assert superseded(current, ITEM) is None


def test_pipeline_a_plan_approval_request_applies_while_that_plan_awaits_approval() -> None:
    waiting = replace(ITEM, state=WorkState.AWAITING_PLAN_APPROVAL)
    request = cmd.RequestPlanApproval(
        key(2, 7, "request-plan-approval"), "acme/w#3", "plan-2", "s", "high", ()
    )
    assert superseded(request, waiting) is None
    assert superseded(request, ITEM) is not None  # escalated meanwhile
    approved = replace(waiting, state=WorkState.WAITING_FOR_LOCKS)
    assert superseded(request, approved) is not None
    assert superseded(replace(request, plan_id="plan-1"), waiting) is not None
    assert superseded(replace(request, key=key(1, 7, "request-plan-approval")), waiting)


def test_pipeline_cleanups_are_never_superseded() -> None:
    for command in (
        cmd.ReleaseLocks(key(1, 3, "release-locks"), "acme/w#3", "issue-3", ("api",)),
        cmd.TransferLocks(key(1, 3, "transfer-locks"), "acme/w#3", "issue-3", "human", ()),
        cmd.Dequeue(key(1, 3, "dequeue"), "acme/w#3", 4, "cancelled"),
        cmd.CancelWork(key(1, 3, "cancel-work"), "acme/w#3", "cancelled"),
    ):
        assert superseded(command, ITEM) is None


@pytest.mark.parametrize("state", [WorkState.MERGED, WorkState.CANCELLED])
def test_pipeline_the_escalations_comment_and_label_wait_only_while_it_is_escalated(
    state: WorkState,
) -> None:
    """A retried Escalate or its label after the PR was merged by hand: nobody is pinged."""
    for command in run_bound(2)[:2]:  # Escalate, ApplyLabel
        assert superseded(command, replace(ITEM, state=state)) == (
            f"the item is {state.value} now, no longer escalated"
        )
    assert superseded(run_bound(2)[2], replace(ITEM, state=state)) is None  # RemoveLabel
