"""The lease decision core, table-driven: grants, waits, FIFO, expiry, epochs, renew, transfer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from trunkline.locks.decisions import (
    BlockReason,
    LeaseRequest,
    SlotRow,
    WaiterRow,
    decide_acquire,
    decide_release,
    decide_renew,
    decide_transfer,
    refusal_needs_no_write,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=60)
EARLIER = NOW - timedelta(seconds=1)
TTL = timedelta(seconds=30)
WAITER_TTL = timedelta(minutes=5)


def held(subsystem: str, slot: int, holder: str, epoch: int, expires: datetime = LATER) -> SlotRow:
    return SlotRow(subsystem, slot, holder, epoch, NOW - timedelta(seconds=5), expires)


def free(subsystem: str, slot: int = 0, epoch: int = 0) -> SlotRow:
    return SlotRow(subsystem, slot, None, epoch)


def waiting(waiter_id: int, subsystem: str, holder: str, asked: datetime = NOW) -> WaiterRow:
    return WaiterRow(waiter_id, subsystem, holder, asked)


@dataclass(frozen=True)
class AcquireCase:
    name: str
    subsystems: dict[str, int]
    slots: list[SlotRow]
    waiters: list[WaiterRow]
    granted: bool
    epochs: dict[str, int] | None = None  # when granted
    blocked: dict[str, BlockReason] | None = None  # when waiting


ACQUIRE_CASES = [
    AcquireCase("free single", {"api": 1}, [free("api")], [], True, {"api": 1}),
    AcquireCase(
        "all free, two subsystems",
        {"api": 1, "docs": 2},
        [free("api", 0, 4), free("docs", 0), free("docs", 1, 7)],
        [],
        True,
        {"api": 5, "docs": 8},
    ),
    AcquireCase(
        "one busy: none granted",
        {"api": 1, "docs": 1},
        [free("api"), held("docs", 0, "other", 3)],
        [],
        False,
        blocked={"docs": BlockReason.FULL},
    ),
    AcquireCase(
        "second slot free under max_active 2",
        {"docs": 2},
        [held("docs", 0, "other", 3), free("docs", 1, 1)],
        [],
        True,
        {"docs": 4},
    ),
    AcquireCase(
        "expired lease is reclaimed with a larger epoch",
        {"api": 1},
        [held("api", 0, "other", 9, expires=EARLIER)],
        [],
        True,
        {"api": 10},
    ),
    AcquireCase(
        "lease expiring exactly now is expired",
        {"api": 1},
        [held("api", 0, "other", 2, expires=NOW)],
        [],
        True,
        {"api": 3},
    ),
    AcquireCase(
        "frozen subsystem (max_active 0)",
        {"api": 0},
        [],
        [],
        False,
        blocked={"api": BlockReason.FROZEN},
    ),
    AcquireCase(
        "newcomer never overtakes a waiter",
        {"api": 1},
        [free("api")],
        [waiting(1, "api", "early")],
        False,
        blocked={"api": BlockReason.QUEUED},
    ),
    AcquireCase(
        "stale waiter no longer holds anyone back",
        {"api": 1},
        [free("api")],
        [waiting(1, "api", "gone", asked=NOW - WAITER_TTL)],
        True,
        {"api": 1},
    ),
    AcquireCase(
        "first in line is granted once free",
        {"api": 1},
        [free("api", 0, 2)],
        [waiting(1, "api", "me"), waiting(2, "api", "late")],
        True,
        {"api": 3},
    ),
    AcquireCase(
        "second in line waits behind the first",
        {"api": 1},
        [free("api")],
        [waiting(1, "api", "first"), waiting(2, "api", "me")],
        False,
        blocked={"api": BlockReason.QUEUED},
    ),
    AcquireCase(
        "ticket is per holder across subsystems (no waiter cycle)",
        {"a": 1, "b": 1},
        [free("a"), free("b")],
        # me: a(1), b(4); other: b(2), a(3) -> my ticket 1 < other's 2: I go first on both
        [
            waiting(1, "a", "me"),
            waiting(2, "b", "other"),
            waiting(3, "a", "other"),
            waiting(4, "b", "me"),
        ],
        True,
        {"a": 1, "b": 1},
    ),
    AcquireCase(
        "the later ticket waits on both",
        {"a": 1, "b": 1},
        [free("a"), free("b")],
        [
            waiting(1, "a", "other"),
            waiting(2, "b", "me"),
            waiting(3, "a", "me"),
            waiting(4, "b", "other"),
        ],
        False,
        blocked={"a": BlockReason.QUEUED, "b": BlockReason.QUEUED},
    ),
    AcquireCase(
        "re-acquire keeps the epoch",
        {"api": 1, "docs": 1},
        [held("api", 0, "me", 6), free("docs", 0, 2)],
        [],
        True,
        {"api": 6, "docs": 3},
    ),
    AcquireCase(
        "own expired lease is taken again with a new epoch",
        {"api": 1},
        [held("api", 0, "me", 6, expires=EARLIER)],
        [],
        True,
        {"api": 7},
    ),
    AcquireCase(
        "max_active lowered: live holder on a high slot still counts",
        {"docs": 1},
        [free("docs", 0, 1), held("docs", 2, "other", 5)],
        [],
        False,
        blocked={"docs": BlockReason.FULL},
    ),
    AcquireCase(
        "epochs grow across slots",
        {"docs": 3},
        [held("docs", 0, "x", 11), held("docs", 1, "y", 12), free("docs", 2, 3)],
        [],
        True,
        {"docs": 13},
    ),
]


@pytest.mark.parametrize("case", ACQUIRE_CASES, ids=lambda case: case.name)
def test_acquire_decisions(case: AcquireCase) -> None:
    request = LeaseRequest("me", case.subsystems, TTL)
    decision = decide_acquire(request, case.slots, case.waiters, NOW, WAITER_TTL)
    assert decision.granted is case.granted
    if case.granted:
        assert {lease.subsystem: lease.epoch for lease in decision.leases} == case.epochs
        assert all(lease.expires_at == NOW + TTL for lease in decision.leases)
        assert all(lease.holder == "me" for lease in decision.leases)
        assert not decision.waiters.insert
        assert not decision.waiters.touch
        mine = {waiter.id for waiter in case.waiters if waiter.holder == "me"}
        assert mine <= set(decision.waiters.delete)
    else:
        assert decision.leases == ()
        assert {b.subsystem: b.reason for b in decision.blockers} == case.blocked
        # all-or-nothing: a refused request writes no lease of its own
        assert all(write.holder != "me" for write in decision.slot_writes)


def test_a_refused_request_joins_the_line_for_every_subsystem_it_lacks() -> None:
    request = LeaseRequest("me", {"api": 1, "docs": 1, "web": 1}, TTL)
    slots = [held("api", 0, "me", 1), free("docs"), held("web", 0, "other", 1)]
    decision = decide_acquire(request, slots, [waiting(7, "old", "me")], NOW, WAITER_TTL)
    assert not decision.granted
    assert decision.waiters.insert == ("docs", "web")  # not api: held already
    assert decision.waiters.delete == (7,)  # no longer asked for


def test_waiting_again_touches_the_rows_and_keeps_the_place_in_line() -> None:
    request = LeaseRequest("me", {"api": 1}, TTL)
    decision = decide_acquire(
        request,
        [held("api", 0, "other", 1)],
        [waiting(3, "api", "me", asked=NOW - WAITER_TTL * 2)],  # own rows are never stale
        NOW,
        WAITER_TTL,
    )
    assert decision.waiters.touch == (3,)
    assert decision.waiters.insert == ()
    assert decision.waiters.delete == ()


def test_try_without_waiting_leaves_the_line_alone() -> None:
    request = LeaseRequest("me", {"api": 1}, TTL, wait=False)
    decision = decide_acquire(request, [held("api", 0, "x", 1)], [], NOW, WAITER_TTL)
    assert not decision.granted
    assert decision.waiters.insert == ()


def test_stale_waiters_of_requested_subsystems_are_deleted() -> None:
    request = LeaseRequest("me", {"api": 1}, TTL)
    stale_api = waiting(1, "api", "gone", asked=NOW - WAITER_TTL)
    stale_elsewhere = waiting(2, "web", "gone", asked=NOW - WAITER_TTL)
    decision = decide_acquire(request, [free("api")], [stale_api, stale_elsewhere], NOW, WAITER_TTL)
    assert decision.granted
    assert decision.waiters.delete == (1,)


def test_expired_leases_are_reclaimed_even_when_the_request_waits() -> None:
    request = LeaseRequest("me", {"api": 1, "docs": 1}, TTL)
    expired = held("api", 0, "gone", 4, expires=EARLIER)
    decision = decide_acquire(request, [expired, held("docs", 0, "x", 1)], [], NOW, WAITER_TTL)
    assert not decision.granted
    assert decision.reclaimed == (expired,)
    (write,) = decision.slot_writes
    assert (write.holder, write.epoch, write.expires_at) == (None, 4, None)


def test_missing_slot_rows_are_a_caller_error() -> None:
    with pytest.raises(ValueError, match="must exist first"):
        decide_acquire(LeaseRequest("me", {"api": 2}, TTL), [free("api")], [], NOW, WAITER_TTL)


@pytest.mark.parametrize(
    ("holder", "subsystems", "ttl", "message"),
    [
        ("", {"api": 1}, TTL, "holder"),
        ("me", {}, TTL, "at least one"),
        ("me", {"api": -1}, TTL, "0 or more"),
        ("me", {"api": 1}, timedelta(0), "positive"),
    ],
)
def test_bad_requests_are_refused_clearly(
    holder: str, subsystems: dict[str, int], ttl: timedelta, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LeaseRequest(holder, subsystems, ttl)


def test_renew_extends_live_leases_only() -> None:
    slots = [held("api", 0, "me", 3), held("docs", 0, "me", 5, expires=EARLIER)]
    decision = decide_renew("me", slots, [waiting(9, "web", "me")], NOW, TTL)
    assert [(lease.subsystem, lease.epoch, lease.expires_at) for lease in decision.leases] == [
        ("api", 3, NOW + TTL)
    ]
    assert decision.lost == ("docs",)
    assert decision.waiters.touch == (9,)
    assert not decision.refused


@pytest.mark.parametrize(
    ("epochs", "refused"),
    [({"api": 3}, False), ({"api": 2}, True), ({"docs": 5}, True), ({"web": 1}, True)],
)
def test_renew_with_epochs_is_all_or_nothing(epochs: dict[str, int], refused: bool) -> None:
    slots = [held("api", 0, "me", 3), held("docs", 0, "me", 5, expires=EARLIER)]
    decision = decide_renew("me", slots, [], NOW, TTL, epochs)
    assert decision.refused is refused
    assert bool(decision.slot_writes) is not refused


def test_release_clears_holder_and_keeps_epoch() -> None:
    slots = [held("api", 0, "me", 3), held("docs", 1, "me", 8)]
    decision = decide_release("me", slots, [waiting(4, "web", "me"), waiting(5, "web", "x")])
    assert [(w.subsystem, w.holder, w.epoch, w.expires_at) for w in decision.slot_writes] == [
        ("api", None, 3, None),
        ("docs", None, 8, None),
    ]
    assert decision.waiters.delete == (4,)
    only_api = decide_release("me", slots, [], ["api"])
    assert [w.subsystem for w in only_api.slot_writes] == ["api"]


def test_transfer_moves_live_leases_with_new_epochs() -> None:
    slots = [
        held("api", 0, "bot", 3),
        held("docs", 0, "other", 7),
        held("docs", 1, "bot", 8),
        held("web", 0, "bot", 2, expires=EARLIER),
    ]
    decision = decide_transfer("bot", "alice", slots, [waiting(1, "x", "bot")], NOW, TTL)
    assert {lease.subsystem: (lease.holder, lease.epoch) for lease in decision.leases} == {
        "api": ("alice", 4),
        "docs": ("alice", 9),
    }
    assert decision.lost == ("web",)
    assert decision.waiters.delete == (1,)
    web = next(write for write in decision.slot_writes if write.subsystem == "web")
    assert web.holder is None


def test_transfer_to_someone_already_holding_just_releases() -> None:
    slots = [held("docs", 0, "alice", 7), held("docs", 1, "bot", 8)]
    decision = decide_transfer("bot", "alice", slots, [], NOW, TTL)
    assert [(lease.holder, lease.epoch) for lease in decision.leases] == [("alice", 7)]
    assert [(write.slot, write.holder) for write in decision.slot_writes] == [(1, None)]


def test_transfer_of_named_subsystems_leaves_the_others() -> None:
    slots = [held("api", 0, "human:alice", 3), held("docs", 0, "human:alice", 5)]
    waiters = [waiting(1, "api", "human:alice"), waiting(2, "web", "human:alice")]
    decision = decide_transfer("human:alice", "issue-1", slots, waiters, NOW, TTL, ["api"])
    assert [(lease.subsystem, lease.holder) for lease in decision.leases] == [("api", "issue-1")]
    assert [write.subsystem for write in decision.slot_writes] == ["api"]
    assert decision.waiters.delete == (1,)


def test_transfer_to_oneself_is_refused() -> None:
    with pytest.raises(ValueError, match="another holder"):
        decide_transfer("bot", "bot", [], [], NOW, TTL)


@pytest.mark.parametrize(
    ("name", "slots", "waiters", "wait", "expected"),
    [
        ("grant always writes", [free("api")], [], True, False),
        ("first refusal joins the line", [held("api", 0, "x", 1)], [], True, False),
        ("try-only refusal", [held("api", 0, "x", 1)], [], False, True),
        (
            "fresh place in line",
            [held("api", 0, "x", 1)],
            [waiting(1, "api", "me", asked=NOW - WAITER_TTL / 4)],
            True,
            True,
        ),
        (
            "place in line needs a touch",
            [held("api", 0, "x", 1)],
            [waiting(1, "api", "me", asked=NOW - WAITER_TTL / 2)],
            True,
            False,
        ),
        (
            "a row to drop",
            [held("api", 0, "x", 1)],
            [waiting(1, "api", "me"), waiting(2, "old", "me")],
            True,
            False,
        ),
        (
            "others' stale rows can wait",
            [held("api", 0, "x", 1)],
            [waiting(1, "api", "gone", asked=NOW - WAITER_TTL), waiting(2, "api", "me")],
            True,
            True,
        ),
    ],
)
def test_refusals_that_need_no_write(
    name: str, slots: list[SlotRow], waiters: list[WaiterRow], wait: bool, expected: bool
) -> None:
    request = LeaseRequest("me", {"api": 1}, TTL, wait)
    decision = decide_acquire(request, slots, waiters, NOW, WAITER_TTL)
    assert refusal_needs_no_write(request, decision, waiters, NOW, WAITER_TTL) is expected
