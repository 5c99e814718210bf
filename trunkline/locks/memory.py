"""An in-memory lease table that applies the decision core exactly as the store does.

Pure; performs no I/O (time is passed in). A small fake for tests and models of code that
takes locks (the merge queue engine, the work item runner): the same decisions, the same
FIFO tickets, epochs and expiry as `trunkline.locks.leases.LockManager`, without a database.
Covers one repository.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from trunkline.locks.decisions import (
    AcquireDecision,
    HolderDecision,
    Lease,
    LeaseRequest,
    SlotRow,
    SlotWrite,
    WaiterChanges,
    WaiterRow,
    decide_acquire,
    decide_release,
    decide_renew,
    decide_transfer,
)

DEFAULT_WAITER_TTL = timedelta(minutes=2)


class MemoryLockTable:
    """Slot rows and waiter rows in dictionaries; every operation is one atomic step."""

    def __init__(self, *, waiter_ttl: timedelta = DEFAULT_WAITER_TTL) -> None:
        self.waiter_ttl = waiter_ttl
        self.slots: dict[tuple[str, int], SlotRow] = {}
        self.waiters: dict[int, WaiterRow] = {}
        self._next_waiter_id = 1

    def acquire(
        self,
        holder: str,
        subsystems: Mapping[str, int],
        ttl: timedelta,
        now: datetime,
        *,
        wait: bool = True,
    ) -> AcquireDecision:
        request = LeaseRequest(holder, dict(subsystems), ttl, wait)
        for name, max_active in sorted(subsystems.items()):
            for slot in range(max_active):
                self.slots.setdefault((name, slot), SlotRow(name, slot))
        rows = [row for row in self.slots.values() if row.subsystem in subsystems]
        decision = decide_acquire(
            request, rows, sorted(self.waiters.values(), key=_by_id), now, self.waiter_ttl
        )
        self._apply(decision.slot_writes, decision.waiters, holder, now)
        return decision

    def renew(
        self, holder: str, ttl: timedelta, now: datetime, epochs: Mapping[str, int] | None = None
    ) -> HolderDecision:
        decision = decide_renew(holder, self._rows_of(holder), self._waiters(), now, ttl, epochs)
        self._apply(decision.slot_writes, decision.waiters, holder, now)
        return decision

    def release(
        self, holder: str, now: datetime, subsystems: Iterable[str] | None = None
    ) -> HolderDecision:
        decision = decide_release(holder, self._rows_of(holder), self._waiters(), subsystems)
        self._apply(decision.slot_writes, decision.waiters, holder, now)
        return decision

    def transfer(
        self,
        from_holder: str,
        to_holder: str,
        ttl: timedelta,
        now: datetime,
        subsystems: Iterable[str] | None = None,
    ) -> HolderDecision:
        wanted = None if subsystems is None else set(subsystems)
        names = {row.subsystem for row in self._rows_of(from_holder)}
        if wanted is not None:
            names &= wanted
        rows = [row for row in self.slots.values() if row.subsystem in names]
        decision = decide_transfer(from_holder, to_holder, rows, self._waiters(), now, ttl, wanted)
        self._apply(decision.slot_writes, decision.waiters, to_holder, now)
        return decision

    def live_holders(self, subsystem: str, now: datetime) -> list[str]:
        return sorted(
            row.holder
            for row in self.slots.values()
            if row.subsystem == subsystem and row.live(now) and row.holder is not None
        )

    def leases_of(self, holder: str, now: datetime) -> dict[str, Lease]:
        return {
            row.subsystem: Lease(
                row.subsystem,
                row.slot,
                holder,
                row.epoch,
                row.acquired_at or now,
                row.expires_at or now,
            )
            for row in self.slots.values()
            if row.held_by(holder, now)
        }

    def fence_ok(self, holder: str, epochs: Mapping[str, int], now: datetime) -> bool:
        """What a guarded write checks: each presented lease is live with that epoch."""
        held = self.leases_of(holder, now)
        return bool(epochs) and all(
            name in held and held[name].epoch == epoch for name, epoch in epochs.items()
        )

    def waiting_holders(self, subsystem: str) -> list[str]:
        return [waiter.holder for waiter in self._waiters() if waiter.subsystem == subsystem]

    def _rows_of(self, holder: str) -> list[SlotRow]:
        return [row for row in self.slots.values() if row.holder == holder]

    def _waiters(self) -> list[WaiterRow]:
        return sorted(self.waiters.values(), key=_by_id)

    def _apply(
        self,
        writes: Iterable[SlotWrite],
        changes: WaiterChanges,
        holder: str,
        now: datetime,
    ) -> None:
        for write in writes:
            self.slots[(write.subsystem, write.slot)] = SlotRow(
                write.subsystem,
                write.slot,
                write.holder,
                write.epoch,
                write.acquired_at,
                write.expires_at,
            )
        for waiter_id in changes.delete:
            self.waiters.pop(waiter_id, None)
        for waiter_id in changes.touch:
            if waiter_id in self.waiters:
                self.waiters[waiter_id] = replace(self.waiters[waiter_id], requested_at=now)
        for name in changes.insert:
            self.waiters[self._next_waiter_id] = WaiterRow(self._next_waiter_id, name, holder, now)
            self._next_waiter_id += 1


def _by_id(waiter: WaiterRow) -> int:
    return waiter.id
