"""Human takeover of a work item: a durable flag the running agent reads, and the handover.

Performs database I/O (the `work_items` row, through `work_item_rows`, and the locks through
`LockManager`). The flag lives in `work_items.data["takeover"]`
(`{"active": bool, "by": login, "at": ISO time}`, plus `released_at` and `resume_id`, the
comment id of the resume command, once lowered), so every
worker process and replica sees it: `TakeoverFlag(engine, ref)` is the runner's
`should_stop` (asked at every turn boundary, one small read). The approved plan is kept in
`work_items.data["plan"]` so `/trunkline resume` can restart the executor on it.

Lease handover: the item's leases are held by `work_item_holder(ref)` (`issue-<n>`); a
takeover transfers them to `human_holder(login, ref)` (`human:<login>:issue-<n>`, one holder
per item, so the items one person took over keep their leases apart) with new epochs, so
the stopped agent's fenced writes fail; resume transfers that holder's leases back. Both
are idempotent: a second transfer finds nothing left to move. Leases taken over under the
older shared `human:<login>` holder are handed back by the pipeline, which knows the item's
subsystems (`trunkline.locks.handover`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from trunkline.agents.contracts import Plan
from trunkline.agents.work_item_rows import ItemRef, change_data, read_data
from trunkline.locks import holders
from trunkline.locks.leases import LockManager
from trunkline.workspace.model import RepositorySpec, Worktree
from trunkline.workspace.workspace import Workspace

TAKEOVER = "takeover"
PLAN = "plan"
TAKEN_OVER_STATE = "taken_over"
EXECUTING_STATE = "executing"
DEFAULT_HUMAN_LEASE = timedelta(hours=8)
DEFAULT_AGENT_LEASE = timedelta(minutes=30)


def work_item_holder(ref: ItemRef) -> str:
    return holders.work_item_holder(ref.number)


def human_holder(login: str, ref: ItemRef) -> str:
    """The holder of the item's leases while `login` has it taken over."""
    return holders.human_holder(login, ref.number)


@dataclass(frozen=True)
class TakeoverRecord:
    active: bool
    by: str | None
    at: str | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> TakeoverRecord:
        raw = data.get(TAKEOVER) or {}
        return cls(bool(raw.get("active")), raw.get("by"), raw.get("at"))


def read_takeover(engine: Engine, ref: ItemRef) -> TakeoverRecord:
    return TakeoverRecord.of(read_data(engine, ref))


def request_takeover(engine: Engine, ref: ItemRef, login: str, at: datetime) -> bool:
    """Raise the flag for `login`; True if it was not already raised (by anyone)."""
    before: list[bool] = []

    def change(data: dict[str, Any]) -> dict[str, Any]:
        before.append(TakeoverRecord.of(data).active)
        if TakeoverRecord.of(data).active:
            return data
        return {**data, TAKEOVER: {"active": True, "by": login, "at": at.isoformat()}}

    change_data(engine, ref, change, state=TAKEN_OVER_STATE)
    return not before[-1]


def end_takeover(engine: Engine, ref: ItemRef, at: datetime, resume_id: int) -> bool:
    """Lower the flag for the resume command `resume_id`; True if this resume owns it.

    True when the flag was raised, and also when this same resume already lowered it (a
    re-run of the same command must launch the executor again, idempotently); False when
    there is nothing to resume.
    """
    owned: list[bool] = []

    def change(data: dict[str, Any]) -> dict[str, Any]:
        record = TakeoverRecord.of(data)
        raw = data.get(TAKEOVER) or {}
        if not record.active:
            owned.append(raw.get("resume_id") == resume_id)
            return data
        owned.append(True)
        released = {"released_at": at.isoformat(), "resume_id": resume_id}
        return {**data, TAKEOVER: {**raw, "active": False, **released}}

    data = read_data(engine, ref)
    if not TakeoverRecord.of(data).active:
        return (data.get(TAKEOVER) or {}).get("resume_id") == resume_id
    change_data(engine, ref, change, state=EXECUTING_STATE)
    return owned[-1]


def clear_takeover(engine: Engine, ref: ItemRef, at: datetime, why: str) -> bool:
    """Lower the flag without a resume (the item was cancelled, or a new run starts): True
    if it was raised. Without this a later run would stop at its first turn boundary as if
    the human still held it."""
    if not TakeoverRecord.of(read_data(engine, ref)).active:
        return False
    cleared: list[bool] = []

    def change(data: dict[str, Any]) -> dict[str, Any]:
        raw = data.get(TAKEOVER) or {}
        cleared.append(TakeoverRecord.of(data).active)
        if not cleared[-1]:
            return data
        return {
            **data,
            TAKEOVER: {**raw, "active": False, "released_at": at.isoformat(), "why": why},
        }

    change_data(engine, ref, change)
    return cleared[-1]


@dataclass(frozen=True)
class TakeoverFlag:
    """`should_stop` for a `WorkItemRunner`: true while a human holds the item."""

    engine: Engine
    ref: ItemRef

    def __call__(self) -> bool:
        return read_takeover(self.engine, self.ref).active


def save_plan(engine: Engine, ref: ItemRef, plan: Plan) -> None:
    change_data(engine, ref, lambda data: {**data, PLAN: plan.model_dump(mode="json")})


def load_plan(engine: Engine, ref: ItemRef) -> Plan | None:
    raw = read_data(engine, ref).get(PLAN)
    return None if raw is None else Plan.model_validate(raw)


def hand_locks_to_human(
    locks: LockManager, ref: ItemRef, login: str, ttl: timedelta = DEFAULT_HUMAN_LEASE
) -> tuple[str, ...]:
    """Move the item's live leases to `human:<login>:issue-<n>`; the subsystems moved."""
    decision = locks.transfer(ref.repo, work_item_holder(ref), human_holder(login, ref), ttl)
    return tuple(lease.subsystem for lease in decision.leases)


def hand_locks_back(
    locks: LockManager, ref: ItemRef, login: str, ttl: timedelta = DEFAULT_AGENT_LEASE
) -> tuple[str, ...]:
    """Move the leases `login` holds for this item back to it (on resume; `login` is who took
    the item over); the subsystems moved."""
    decision = locks.transfer(ref.repo, human_holder(login, ref), work_item_holder(ref), ttl)
    return tuple(lease.subsystem for lease in decision.leases)


def checkout_for_resume(
    workspace: Workspace,
    spec: RepositorySpec,
    ref: ItemRef,
    slug: str,
    base_branch: str,
    token: str | None,
) -> Worktree:
    """The item's worktree at its pushed branch as it is now (the human's commits included).

    The old worktree is removed first: everything the agent did was committed and pushed
    when it stopped, so the pushed branch is the truth.
    """
    workspace.remove_worktree(spec, ref.number)
    return workspace.create_worktree(
        spec, ref.number, slug, base_branch, token, resume_pushed_branch=True
    )
