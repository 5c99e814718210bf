"""The states of a work item, which of them are terminal or active, and the allowed edges.

Pure; performs no I/O. The main line is

    queued -> planning -> plan_review [-> awaiting_plan_approval] -> waiting_for_locks ->
    executing -> self_check -> pr_open -> reviewing [-> changes_requested -> executing]* ->
    ready -> queued_for_merge -> merged

with the side exits escalated, taken_over, cancelled, failed and refused.

- Terminal: merged, escalated, cancelled, failed, refused. A terminal item other than
  merged restarts (a new run, back to queued) when an authorised user labels it again.
- Active (count against `dispatch.max_active`): planning up to queued_for_merge. `queued`
  waits for a slot. `taken_over` does NOT count: a human drives the work and the agents
  spend nothing, so a takeover frees a slot for other issues; `Resume` is a human decision
  and is not subject to admission (it may briefly put the count above `max_active`; `admit`
  starts nothing until the count is back under it).
"""

from __future__ import annotations

from enum import StrEnum


class WorkState(StrEnum):
    QUEUED = "queued"
    PLANNING = "planning"
    PLAN_REVIEW = "plan_review"
    AWAITING_PLAN_APPROVAL = "awaiting_plan_approval"
    WAITING_FOR_LOCKS = "waiting_for_locks"
    EXECUTING = "executing"
    SELF_CHECK = "self_check"
    PR_OPEN = "pr_open"
    REVIEWING = "reviewing"
    CHANGES_REQUESTED = "changes_requested"
    READY = "ready"
    QUEUED_FOR_MERGE = "queued_for_merge"
    MERGED = "merged"
    ESCALATED = "escalated"
    TAKEN_OVER = "taken_over"
    CANCELLED = "cancelled"
    FAILED = "failed"
    REFUSED = "refused"


S = WorkState

TERMINAL: frozenset[WorkState] = frozenset(
    {S.MERGED, S.ESCALATED, S.CANCELLED, S.FAILED, S.REFUSED}
)

#: Terminal states from which a new label starts a new run.
RESTARTABLE: frozenset[WorkState] = TERMINAL - {S.MERGED}

ACTIVE: frozenset[WorkState] = frozenset(
    {
        S.PLANNING,
        S.PLAN_REVIEW,
        S.AWAITING_PLAN_APPROVAL,
        S.WAITING_FOR_LOCKS,
        S.EXECUTING,
        S.SELF_CHECK,
        S.PR_OPEN,
        S.REVIEWING,
        S.CHANGES_REQUESTED,
        S.READY,
        S.QUEUED_FOR_MERGE,
    }
)

#: Before the executor started: removing the dispatch label cancels the item here.
BEFORE_EXECUTION: frozenset[WorkState] = frozenset(
    {S.QUEUED, S.PLANNING, S.PLAN_REVIEW, S.AWAITING_PLAN_APPROVAL, S.WAITING_FOR_LOCKS}
)

#: States in which the item has a pull request whose head a human may review.
WITH_REVIEWABLE_PR: frozenset[WorkState] = frozenset({S.REVIEWING, S.READY, S.QUEUED_FOR_MERGE})

_MAIN_LINE: tuple[tuple[WorkState, WorkState], ...] = (
    (S.QUEUED, S.PLANNING),
    (S.PLANNING, S.PLAN_REVIEW),
    (S.PLAN_REVIEW, S.PLANNING),
    (S.PLAN_REVIEW, S.AWAITING_PLAN_APPROVAL),
    (S.PLAN_REVIEW, S.WAITING_FOR_LOCKS),
    (S.AWAITING_PLAN_APPROVAL, S.WAITING_FOR_LOCKS),
    (S.WAITING_FOR_LOCKS, S.EXECUTING),
    (S.EXECUTING, S.SELF_CHECK),
    (S.SELF_CHECK, S.PR_OPEN),
    (S.SELF_CHECK, S.CHANGES_REQUESTED),
    (S.PR_OPEN, S.REVIEWING),
    (S.REVIEWING, S.REVIEWING),
    (S.REVIEWING, S.CHANGES_REQUESTED),
    (S.REVIEWING, S.READY),
    (S.READY, S.REVIEWING),
    (S.READY, S.CHANGES_REQUESTED),
    (S.READY, S.QUEUED_FOR_MERGE),
    (S.QUEUED_FOR_MERGE, S.CHANGES_REQUESTED),
    (S.QUEUED_FOR_MERGE, S.MERGED),
    (S.CHANGES_REQUESTED, S.EXECUTING),
    (S.TAKEN_OVER, S.EXECUTING),
    (S.TAKEN_OVER, S.WAITING_FOR_LOCKS),
    (S.TAKEN_OVER, S.PLANNING),
)

#: States in which the item may have a pull request that a human can close under it.
_WITH_PR = frozenset(
    {S.EXECUTING, S.SELF_CHECK, S.PR_OPEN, S.REVIEWING, S.READY, S.QUEUED_FOR_MERGE, S.TAKEN_OVER}
)
#: States from which a merge of the item's pull request ends it `merged`: wherever it may
#: have one, including after it ended escalated, cancelled or failed (a human merged it).
MERGEABLE: frozenset[WorkState] = _WITH_PR | {S.ESCALATED, S.CANCELLED, S.FAILED}
#: Active states an item rests in (changes_requested is only passed through on the way
#: back to the executor, in the same decision).
_RESTING_ACTIVE = ACTIVE - {S.CHANGES_REQUESTED}


def _side_exits() -> frozenset[tuple[WorkState, WorkState]]:
    edges: set[tuple[WorkState, WorkState]] = set()
    for state in _RESTING_ACTIVE:
        edges.add((state, S.ESCALATED))
        edges.add((state, S.TAKEN_OVER))
        edges.add((state, S.CANCELLED))
    edges.add((S.QUEUED, S.CANCELLED))
    edges.add((S.TAKEN_OVER, S.CANCELLED))
    for state in _WITH_PR:
        edges.add((state, S.FAILED))
    for state in MERGEABLE:
        edges.add((state, S.MERGED))
    for state in RESTARTABLE:
        edges.add((state, S.QUEUED))
    return frozenset(edges)


#: Every (from, to) a transition may take. `None` is "no item yet".
ALLOWED_EDGES: frozenset[tuple[WorkState | None, WorkState]] = frozenset(
    {*_MAIN_LINE, *_side_exits(), (None, S.QUEUED), (None, S.REFUSED)}
)


def is_terminal(state: WorkState) -> bool:
    return state in TERMINAL


def is_active(state: WorkState) -> bool:
    return state in ACTIVE
