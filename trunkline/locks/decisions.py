"""The decision core of subsystem ownership leases: grant-all or wait, renew, release, transfer.

Pure; performs no I/O. Every function takes the rows it needs (lease slots and waiters, as
frozen data) and `now` (the database clock, read by the caller inside its transaction) and
returns a decision: the new state of every slot row it changes and the waiter rows to insert,
touch or delete. The store (`trunkline.locks.leases`) loads the rows under lock and applies the
decision in the same transaction; the in-memory table (`trunkline.locks.memory`) applies it to
dictionaries, for tests and models.

The model:
- A subsystem has slots `0 .. max_active-1` (one row each); a slot is *live* while it has a
  holder and `expires_at > now`. At most `max_active` slots of a subsystem are live
  (`max_active = 0` freezes the subsystem: nobody is granted it).
- A request names a holder and subsystems with their `max_active`; it is granted for all of
  them or for none (all-or-nothing). Subsystems the holder already holds live are kept (and
  extended); the others each need a free slot.
- Fairness (FIFO per subsystem, no starvation): a waiting holder's *ticket* is the smallest
  id of its waiter rows. A request may take a slot of a subsystem only if no other holder
  waiting on that subsystem has an earlier ticket. Tickets order all waiting holders totally,
  so the earliest one is never held back by another waiter: it is granted as soon as slots
  free up, then the next one, and so on. A newcomer (no ticket) never overtakes a waiter.
- Waiters must keep asking (each `acquire` or `renew` touches `requested_at`); a waiter row
  not touched for `waiter_ttl` is stale: it no longer holds anyone back and is deleted.
- Each grant of a slot gives it a new epoch: one more than the largest epoch of any slot of
  that subsystem, so epochs of a (repository, subsystem) only grow and are never reused, even
  across slots, releases and expiry. The epoch is the fencing token a holder presents with
  every guarded write (`trunkline.locks.fencing`).
- Expired leases are reclaimed (holder cleared) when a request for their subsystem is decided.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SlotRow:
    """One row of the `locks` table: a slot of a subsystem and its current lease, if any."""

    subsystem: str
    slot: int
    holder: str | None = None
    epoch: int = 0
    acquired_at: datetime | None = None
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at is not None and self.expires_at > now

    def held_by(self, holder: str, now: datetime) -> bool:
        return self.holder == holder and self.live(now)


@dataclass(frozen=True)
class WaiterRow:
    """One row of `lock_waiters`: `holder` waits for `subsystem`; ids give arrival order."""

    id: int
    subsystem: str
    holder: str
    requested_at: datetime

    def stale(self, now: datetime, waiter_ttl: timedelta) -> bool:
        return self.requested_at + waiter_ttl <= now


@dataclass(frozen=True)
class Lease:
    """A lease as its holder sees it; `epoch` is the fencing token of guarded writes."""

    subsystem: str
    slot: int
    holder: str
    epoch: int
    acquired_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class LeaseRequest:
    """`holder` asks for every subsystem of `subsystems` (name -> max_active) for `ttl`."""

    holder: str
    subsystems: Mapping[str, int]
    ttl: timedelta
    wait: bool = True

    def __post_init__(self) -> None:
        if not self.holder:
            raise ValueError("a lease request needs a holder")
        if not self.subsystems:
            raise ValueError("a lease request needs at least one subsystem")
        for name, max_active in self.subsystems.items():
            if not name:
                raise ValueError("subsystem names must not be empty")
            if max_active < 0:
                raise ValueError(f"max_active of {name!r} must be 0 or more, not {max_active}")
        if self.ttl <= timedelta(0):
            raise ValueError("a lease ttl must be positive")


class BlockReason(enum.StrEnum):
    FROZEN = "frozen"  # max_active is 0
    FULL = "full"  # max_active live holders already
    QUEUED = "queued"  # an earlier waiter goes first


@dataclass(frozen=True)
class Blocker:
    """Why a request waits for one subsystem, and whom it waits for."""

    subsystem: str
    reason: BlockReason
    holders: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlotWrite:
    """The new state of one slot row (every column but the key)."""

    subsystem: str
    slot: int
    holder: str | None
    epoch: int
    acquired_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def cleared(cls, row: SlotRow) -> SlotWrite:
        return cls(row.subsystem, row.slot, None, row.epoch, None, None)

    def as_lease(self) -> Lease:
        if self.holder is None or self.acquired_at is None or self.expires_at is None:
            raise ValueError("a cleared slot is no lease")
        return Lease(
            self.subsystem, self.slot, self.holder, self.epoch, self.acquired_at, self.expires_at
        )


@dataclass(frozen=True)
class WaiterChanges:
    """Waiter rows to insert (subsystems, for the request's holder), touch and delete (ids)."""

    insert: tuple[str, ...] = ()
    touch: tuple[int, ...] = ()
    delete: tuple[int, ...] = ()


@dataclass(frozen=True)
class AcquireDecision:
    granted: bool
    leases: tuple[Lease, ...]  # when granted: one per requested subsystem, sorted by name
    blockers: tuple[Blocker, ...]  # when waiting: why, per subsystem
    slot_writes: tuple[SlotWrite, ...]
    waiters: WaiterChanges
    reclaimed: tuple[SlotRow, ...] = field(default=())  # expired leases freed


@dataclass(frozen=True)
class HolderDecision:
    """Result of renew / release / transfer: rows to write and the holder's leases after."""

    slot_writes: tuple[SlotWrite, ...]
    leases: tuple[Lease, ...]
    lost: tuple[str, ...] = ()  # subsystems whose lease had expired or been taken
    waiters: WaiterChanges = field(default_factory=WaiterChanges)
    refused: bool = False  # renew with epochs: one of them is stale, nothing renewed


def lease_of(row: SlotRow) -> Lease:
    if row.holder is None or row.acquired_at is None or row.expires_at is None:
        raise ValueError(f"slot {row.subsystem}/{row.slot} holds no lease")
    return Lease(row.subsystem, row.slot, row.holder, row.epoch, row.acquired_at, row.expires_at)


def tickets(waiters: Iterable[WaiterRow]) -> dict[str, int]:
    """Each waiting holder's place in line: the smallest id among its waiter rows."""
    result: dict[str, int] = {}
    for waiter in waiters:
        current = result.get(waiter.holder)
        if current is None or waiter.id < current:
            result[waiter.holder] = waiter.id
    return result


def next_epoch(rows: Iterable[SlotRow]) -> int:
    """The epoch of the next grant of a subsystem whose slot rows are `rows`."""
    return max((row.epoch for row in rows), default=0) + 1


def decide_acquire(
    request: LeaseRequest,
    slots: Sequence[SlotRow],
    waiters: Sequence[WaiterRow],
    now: datetime,
    waiter_ttl: timedelta,
) -> AcquireDecision:
    """Grant every requested subsystem or none; FIFO per subsystem; reclaim expired leases.

    `slots` must hold every existing slot row of the requested subsystems, including slots
    `0 .. max_active-1` (the store creates them first); `waiters` every waiter row of the
    repository (tickets are per holder across subsystems).
    """
    holder = request.holder
    requested = sorted(request.subsystems)
    by_subsystem: dict[str, list[SlotRow]] = {name: [] for name in requested}
    for row in slots:
        if row.subsystem in by_subsystem:
            by_subsystem[row.subsystem].append(row)
    for name in requested:
        present = {row.slot for row in by_subsystem[name]}
        missing = [slot for slot in range(request.subsystems[name]) if slot not in present]
        if missing:
            raise ValueError(f"slot rows {missing} of subsystem {name!r} must exist first")
        by_subsystem[name].sort(key=lambda row: row.slot)

    stale = [
        waiter for waiter in waiters if waiter.holder != holder and waiter.stale(now, waiter_ttl)
    ]
    stale_ids = {waiter.id for waiter in stale}
    current_waiters = [waiter for waiter in waiters if waiter.id not in stale_ids]
    line = tickets(current_waiters)
    my_ticket = line.get(holder)

    kept: list[SlotRow] = []
    picked: list[SlotRow] = []
    blockers: list[Blocker] = []
    for name in requested:
        rows = by_subsystem[name]
        max_active = request.subsystems[name]
        mine = [row for row in rows if row.held_by(holder, now)]
        if mine:
            kept.append(mine[0])
            continue
        if max_active == 0:
            blockers.append(Blocker(name, BlockReason.FROZEN))
            continue
        ahead = sorted(
            {
                waiter.holder
                for waiter in current_waiters
                if waiter.subsystem == name
                and waiter.holder != holder
                and (my_ticket is None or line[waiter.holder] < my_ticket)
            },
            key=lambda other: line[other],
        )
        if ahead:
            blockers.append(Blocker(name, BlockReason.QUEUED, tuple(ahead)))
            continue
        live = [row for row in rows if row.live(now)]
        free = [row for row in rows if row.slot < max_active and not row.live(now)]
        if len(live) >= max_active or not free:
            holders = tuple(sorted({row.holder for row in live if row.holder is not None}))
            blockers.append(Blocker(name, BlockReason.FULL, holders))
            continue
        picked.append(free[0])

    granted = not blockers
    writes: dict[tuple[str, int], SlotWrite] = {}
    reclaimed: list[SlotRow] = []
    for name in requested:
        for row in by_subsystem[name]:
            if row.holder is not None and not row.live(now):
                writes[(row.subsystem, row.slot)] = SlotWrite.cleared(row)
                reclaimed.append(row)
    leases: list[Lease] = []
    if granted:
        expires_at = now + request.ttl
        for row in kept:
            write = SlotWrite(
                row.subsystem, row.slot, holder, row.epoch, row.acquired_at or now, expires_at
            )
            writes[(row.subsystem, row.slot)] = write
            leases.append(write.as_lease())
        for row in picked:
            epoch = next_epoch(by_subsystem[row.subsystem])
            write = SlotWrite(row.subsystem, row.slot, holder, epoch, now, expires_at)
            writes[(row.subsystem, row.slot)] = write
            leases.append(write.as_lease())
        leases.sort(key=lambda lease: lease.subsystem)

    mine_waiting = [waiter for waiter in waiters if waiter.holder == holder]
    delete = [waiter.id for waiter in stale if waiter.subsystem in by_subsystem]
    insert: list[str] = []
    touch: list[int] = []
    if granted:
        delete += [waiter.id for waiter in mine_waiting]
    elif request.wait:
        still_needed = {blocker.subsystem for blocker in blockers} | {
            row.subsystem for row in picked
        }
        have_row = {waiter.subsystem: waiter.id for waiter in mine_waiting}
        for name in requested:
            if name in still_needed:
                if name in have_row:
                    touch.append(have_row[name])
                else:
                    insert.append(name)
        delete += [waiter.id for waiter in mine_waiting if waiter.subsystem not in still_needed]
    return AcquireDecision(
        granted=granted,
        leases=tuple(leases),
        blockers=tuple(blockers),
        slot_writes=tuple(writes[key] for key in sorted(writes)),
        waiters=WaiterChanges(tuple(insert), tuple(sorted(touch)), tuple(sorted(set(delete)))),
        reclaimed=tuple(reclaimed),
    )


def refusal_needs_no_write(
    request: LeaseRequest,
    decision: AcquireDecision,
    waiters: Sequence[WaiterRow],
    now: datetime,
    waiter_ttl: timedelta,
) -> bool:
    """Whether a refusal decided on an unlocked read may be answered without a write.

    True when the request is refused and its place in line needs no change: no waiter row to
    insert or drop, and its rows were touched within a third of `waiter_ttl`. Reclaiming
    expired leases and deleting other holders' stale rows can wait for the next writer. A
    refusal is always safe to give from a slightly old read (it is what an earlier ask would
    have got); grants are only ever decided under the row locks.
    """
    if decision.granted:
        return False
    if not request.wait:
        return True
    mine = {waiter.id: waiter for waiter in waiters if waiter.holder == request.holder}
    if decision.waiters.insert or any(waiter_id in mine for waiter_id in decision.waiters.delete):
        return False
    fresh_after = now - waiter_ttl / 3
    return all(mine[waiter_id].requested_at > fresh_after for waiter_id in decision.waiters.touch)


def decide_renew(
    holder: str,
    slots: Sequence[SlotRow],
    waiters: Sequence[WaiterRow],
    now: datetime,
    ttl: timedelta,
    epochs: Mapping[str, int] | None = None,
) -> HolderDecision:
    """Extend every live lease of `holder` to `now + ttl` and touch its waiter rows.

    With `epochs`, renew only if each named subsystem is still held live with that epoch;
    otherwise renew nothing and report the stale subsystems in `lost`.
    """
    if ttl <= timedelta(0):
        raise ValueError("a lease ttl must be positive")
    mine = sorted(
        (row for row in slots if row.holder == holder), key=lambda row: (row.subsystem, row.slot)
    )
    live = [row for row in mine if row.live(now)]
    lost = sorted({row.subsystem for row in mine if not row.live(now)})
    if epochs is not None:
        current = {row.subsystem: row.epoch for row in live}
        stale = sorted(name for name, epoch in epochs.items() if current.get(name) != epoch)
        if stale:
            leases = tuple(lease_of(row) for row in live)
            return HolderDecision((), leases, tuple(stale), refused=True)
    writes = tuple(
        SlotWrite(row.subsystem, row.slot, holder, row.epoch, row.acquired_at, now + ttl)
        for row in live
    )
    touch = tuple(sorted(waiter.id for waiter in waiters if waiter.holder == holder))
    return HolderDecision(
        writes,
        tuple(write.as_lease() for write in writes),
        tuple(lost),
        WaiterChanges(touch=touch),
    )


def decide_release(
    holder: str,
    slots: Sequence[SlotRow],
    waiters: Sequence[WaiterRow],
    subsystems: Iterable[str] | None = None,
) -> HolderDecision:
    """Clear `holder`'s slots (all, or those of `subsystems`) and drop its waiter rows there.

    Epochs stay as they are, so the next grant still gets a larger one.
    """
    wanted = None if subsystems is None else set(subsystems)
    mine = sorted(
        (
            row
            for row in slots
            if row.holder == holder and (wanted is None or row.subsystem in wanted)
        ),
        key=lambda row: (row.subsystem, row.slot),
    )
    delete = sorted(
        waiter.id
        for waiter in waiters
        if waiter.holder == holder and (wanted is None or waiter.subsystem in wanted)
    )
    return HolderDecision(
        tuple(SlotWrite.cleared(row) for row in mine),
        (),
        waiters=WaiterChanges(delete=tuple(delete)),
    )


def decide_transfer(
    from_holder: str,
    to_holder: str,
    slots: Sequence[SlotRow],
    waiters: Sequence[WaiterRow],
    now: datetime,
    ttl: timedelta,
    subsystems: Iterable[str] | None = None,
) -> HolderDecision:
    """Hand every live lease of `from_holder` (all, or those of `subsystems`) to `to_holder`
    (a human takeover and its resume), with new epochs.

    `slots` must hold every slot row of the subsystems moved. Where `to_holder`
    already holds the subsystem live, `from_holder`'s slot is simply released. Expired leases
    of `from_holder` are not transferred: they are reported in `lost` and cleared.
    """
    if from_holder == to_holder:
        raise ValueError("a lease is transferred to another holder")
    if not to_holder:
        raise ValueError("a transfer needs the new holder")
    if ttl <= timedelta(0):
        raise ValueError("a lease ttl must be positive")
    wanted = None if subsystems is None else set(subsystems)
    by_subsystem: dict[str, list[SlotRow]] = {}
    for row in slots:
        if wanted is None or row.subsystem in wanted:
            by_subsystem.setdefault(row.subsystem, []).append(row)
    writes: list[SlotWrite] = []
    leases: list[Lease] = []
    lost: list[str] = []
    for name in sorted(by_subsystem):
        rows = sorted(by_subsystem[name], key=lambda row: row.slot)
        theirs = [row for row in rows if row.holder == from_holder]
        if not theirs:
            continue
        already = [lease_of(row) for row in rows if row.held_by(to_holder, now)]
        for row in theirs:
            if not row.live(now):
                lost.append(name)
                writes.append(SlotWrite.cleared(row))
            elif already:  # the new holder has this subsystem: one slot is enough
                writes.append(SlotWrite.cleared(row))
            else:
                write = SlotWrite(name, row.slot, to_holder, next_epoch(rows), now, now + ttl)
                writes.append(write)
                already = [write.as_lease()]
        leases.extend(already[:1])
    delete = sorted(
        waiter.id
        for waiter in waiters
        if waiter.holder == from_holder and (wanted is None or waiter.subsystem in wanted)
    )
    return HolderDecision(
        tuple(writes), tuple(leases), tuple(sorted(set(lost))), WaiterChanges(delete=tuple(delete))
    )
