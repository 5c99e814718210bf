"""Hypothesis stateful model of the lease core: random interleavings of acquire, poll, release,
renew, fenced writes, human takeovers and time passing over several holders and subsystems
(max_active 1..3).

Invariants after every step: at most max_active live holders per subsystem; one slot per
holder and subsystem; epochs of a subsystem only grow and are never reused; a grant is
all-or-nothing; a live lease is never lost before its expiry; a newcomer or later waiter never
takes a subsystem an earlier (live) waiter waits for. At the end every waiter is granted once
the holders release (no starvation).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trunkline.locks.memory import MemoryLockTable

HOLDERS = ("h0", "h1", "h2", "h3", "h4")
SUBSYSTEMS = ("a", "b", "c")
TTL = timedelta(seconds=30)
START = datetime(2026, 1, 1, tzinfo=UTC)

holders = st.sampled_from(HOLDERS)
subsets = st.sets(st.sampled_from(SUBSYSTEMS), min_size=1, max_size=3)


class LeaseModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # waiter rows never go stale here, so tickets are stable (staleness: table tests)
        self.table = MemoryLockTable(waiter_ttl=timedelta(days=365))
        self.now = START
        self.max_active: dict[str, int] = {}
        self.wanted: dict[str, frozenset[str]] = {}  # holder -> subsystems it waits for/holds
        self.holding: dict[str, dict[str, int]] = {}  # holder -> {subsystem: epoch}
        self.expires: dict[str, datetime] = {}  # holder -> when its leases run out
        self.wait_order: dict[str, int] = {}  # holder -> arrival in line
        self.arrivals = 0
        self.max_epoch: dict[str, int] = dict.fromkeys(SUBSYSTEMS, 0)
        self.humans: set[str] = set()  # holders after a takeover

    @initialize(capacities=st.tuples(*(st.integers(1, 3) for _ in SUBSYSTEMS)))
    def capacities(self, capacities: tuple[int, ...]) -> None:
        self.max_active = dict(zip(SUBSYSTEMS, capacities, strict=True))

    def _acquire(self, holder: str) -> None:
        names = self.wanted[holder]
        before = set(self.table.leases_of(holder, self.now))
        decision = self.table.acquire(
            holder, {name: self.max_active[name] for name in names}, TTL, self.now
        )
        after = self.table.leases_of(holder, self.now)
        if not decision.granted:
            assert set(after) == before  # nothing taken
            self.wait_order.setdefault(holder, self._arrive())
            return
        assert set(after) >= names  # everything taken
        newly = names - before
        mine = self.wait_order.get(holder)
        for other, order in self.wait_order.items():
            if other == holder or other in self.holding:
                continue
            if mine is None or order < mine:
                shared = newly & self.wanted[other]
                assert not shared, f"{holder} overtook {other} on {sorted(shared)}"
        for name in newly:
            epoch = after[name].epoch
            assert epoch > self.max_epoch[name], (name, epoch, self.max_epoch[name])
            self.max_epoch[name] = epoch
        self.holding[holder] = {name: after[name].epoch for name in names}
        self.expires[holder] = self.now + TTL
        self.wait_order.pop(holder, None)

    def _arrive(self) -> int:
        self.arrivals += 1
        return self.arrivals

    def _forget(self, holder: str) -> None:
        self.wanted.pop(holder, None)
        self.holding.pop(holder, None)
        self.expires.pop(holder, None)
        self.wait_order.pop(holder, None)

    @rule(holder=holders, names=subsets)
    def request(self, holder: str, names: set[str]) -> None:
        if holder in self.wanted:
            return
        self.wanted[holder] = frozenset(names)
        self._acquire(holder)

    @rule(holder=holders)
    def poll(self, holder: str) -> None:
        if holder in self.wanted and holder not in self.holding:
            self._acquire(holder)

    @rule(holder=holders)
    def release(self, holder: str) -> None:
        if holder in self.wanted:
            self.table.release(holder, self.now)
            self._forget(holder)
            assert not self.table.leases_of(holder, self.now)

    @rule(holder=holders)
    def renew(self, holder: str) -> None:
        if holder not in self.holding:
            return
        decision = self.table.renew(holder, TTL, self.now, self.holding[holder])
        # a live lease is never taken away before it runs out
        assert decision.refused is (self.now >= self.expires[holder])
        if decision.refused:
            self.table.release(holder, self.now)
            self._forget(holder)
        else:
            self.expires[holder] = self.now + TTL

    @rule(holder=holders)
    def fenced_write(self, holder: str) -> None:
        if holder in self.holding:
            ok = self.table.fence_ok(holder, self.holding[holder], self.now)
            assert ok is (self.now < self.expires[holder])

    @rule(holder=holders)
    def human_takeover(self, holder: str) -> None:
        if holder not in self.holding or self.now >= self.expires[holder]:
            return
        human = f"human-for-{holder}"
        epochs = self.holding[holder]
        decision = self.table.transfer(holder, human, TTL, self.now)
        taken = {lease.subsystem: lease for lease in decision.leases}
        assert set(taken) == set(epochs)
        for name, lease in taken.items():
            assert lease.holder == human
            assert lease.epoch > self.max_epoch[name]
            self.max_epoch[name] = lease.epoch
        assert not self.table.fence_ok(holder, epochs, self.now)  # the agent is fenced off
        assert self.table.fence_ok(human, {n: t.epoch for n, t in taken.items()}, self.now)
        self.humans.add(human)
        self._forget(holder)

    @rule(seconds=st.sampled_from([1, 10, 29, 31, 45]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @invariant()
    def at_most_max_active(self) -> None:
        for name, capacity in self.max_active.items():
            live = self.table.live_holders(name, self.now)
            assert len(live) <= capacity, (name, live)
            assert len(live) == len(set(live)), (name, live)

    @invariant()
    def epochs_never_reused(self) -> None:
        for name in self.max_active:
            epochs = [row.epoch for row in self.table.slots.values() if row.subsystem == name]
            granted = [epoch for epoch in epochs if epoch > 0]
            assert len(granted) == len(set(granted)), (name, epochs)
            assert max(epochs, default=0) <= self.max_epoch[name]

    @precondition(lambda self: bool(self.max_active))
    @rule()
    def drain(self) -> None:
        """Holders finish; every waiter is then granted, earliest first (no starvation)."""
        for holder in [*self.holding, *self.humans]:
            self.table.release(holder, self.now)
            self._forget(holder)
        self.humans.clear()
        line = sorted(self.wait_order, key=self.wait_order.__getitem__)
        for _ in range(len(line) + 1):
            if not self.wait_order:
                break
            # poll latest arrivals first: the earliest must still win
            for holder in sorted(self.wait_order, key=self.wait_order.__getitem__, reverse=True):
                self._acquire(holder)
            for holder in list(self.holding):
                self.table.release(holder, self.now)
                self._forget(holder)
        assert not self.wait_order, f"starved: {sorted(self.wait_order)}"
        for holder in line:
            self.wanted.pop(holder, None)


LeaseModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLeaseModel = LeaseModel.TestCase
