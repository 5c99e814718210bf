"""A work item's leases while it holds them: the fence its writes present, the heartbeat of a
job that works under them, and the keep-alive of every holding item.

Performs database I/O through `trunkline.locks` (`LockManager`, `fencing.guarded`). Contract:

- `fence_for(locks, repo, holder, subsystems)`: the `ItemFence` a job presents with every
  write it makes under the item's leases — the epochs the lock manager holds for `holder`
  when the job starts (so a takeover's transfer, a release or an expiry before the job makes
  it stale). Every subsystem must be live for `holder`, else `StaleLease` at once (nothing
  was written). No subsystems: None (there is nothing to fence).
- `check(engine, fence)`: one transaction calling `guarded`: the check made right before a
  write outside the database (a push, a pull request) — see docs/locks.md for why such a
  write can only be checked "right before", and `branch_push` for the compare-and-swap that
  narrows what a holder paused between the check and the push could do.
  Writes to the database present the fence inside their own transaction instead
  (`PipelineService.submit(..., fence=...)`).
- `LeaseHeartbeat(locks, fence, ttl)`: while a job works under the leases (the executor), a
  thread renews them every `ttl / 3` with the fence's epochs; a refused renewal (the leases
  were lost) sets `lost`, which the job's `should_stop` reads, and stops renewing; a renewal
  that fails any other way (a busy or unreachable database) is retried the next period.
- `renew_held_leases(service, locks, ttl)`: the keep-alive tick: every item whose state holds
  locks gets `LockManager.renew(repo, holder, ttl)` (extends live leases only, never revives
  an expired one), so an item keeps its leases while it waits for a review, an approval or
  the merge queue, and loses them within `ttl` once no bot runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from sqlalchemy import Connection, Engine

from trunkline.errors import RetryableError
from trunkline.locks.fencing import StaleLease, guarded
from trunkline.locks.leases import LockManager
from trunkline.pipeline.model import LockStatus, WorkItem
from trunkline.pipeline.periodic_renewal import MIN_PERIOD_SECONDS, PeriodicRenewal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemFence:
    """What a write made under an item's leases presents: holder and epochs."""

    repo: str
    holder: str
    epochs: Mapping[str, int]

    def guard(self, conn: Connection) -> None:
        """`guarded` on `conn` (the caller's open transaction), first thing in it."""
        guarded(conn, self.repo, self.holder, self.epochs)


def fence_for(
    locks: LockManager, repo: str, holder: str, subsystems: Iterable[str]
) -> ItemFence | None:
    """The live epochs of `holder` for `subsystems` now; `StaleLease` if any is not held."""
    wanted = sorted(set(subsystems))
    if not wanted:
        return None
    held = {lease.subsystem: lease.epoch for lease in locks.held(repo, holder)}
    missing = [name for name in wanted if name not in held]
    if missing:
        raise StaleLease(repo, holder, missing)
    return ItemFence(repo, holder, {name: held[name] for name in wanted})


def check(engine: Engine, fence: ItemFence | None) -> None:
    """Raise `StaleLease` unless every lease of `fence` is still held with its epoch."""
    if fence is None:
        return
    with engine.begin() as conn:
        guarded(conn, fence.repo, fence.holder, fence.epochs)


class LeaseHeartbeat:
    """Renews a fence's leases every `ttl / 3` from a thread while the `with` block runs."""

    def __init__(self, locks: LockManager, fence: ItemFence | None, ttl: timedelta) -> None:
        self.locks = locks
        self.fence = fence
        self.ttl = ttl
        self.period = max(ttl.total_seconds() / 3, MIN_PERIOD_SECONDS)
        self.renewals = 0
        self._lost: StaleLease | None = None
        self._renewal: PeriodicRenewal | None = None

    @property
    def lost(self) -> StaleLease | None:
        """The refusal, once a renewal found the leases gone (None while they are held)."""
        return self._lost

    def beat(self) -> bool:
        """Renew once; False once the leases are lost."""
        if self.fence is None or self._lost is not None:
            return self._lost is None
        try:
            self.locks.renew(self.fence.repo, self.fence.holder, self.ttl, self.fence.epochs)
        except StaleLease as error:
            log.warning(
                "work item lost its leases",
                extra={"holder": self.fence.holder, "error": str(error)},
            )
            self._lost = error
            return False
        except (RetryableError, OSError) as error:  # a busy database: try again next beat
            log.warning("lease renewal failed; will retry", extra={"error": str(error)})
            return True
        self.renewals += 1
        return True

    def __enter__(self) -> LeaseHeartbeat:
        if self._renewal is not None:
            raise RuntimeError("a LeaseHeartbeat runs one block only")
        if self.fence is not None:
            name = f"lease-heartbeat-{self.fence.holder}"
            self._renewal = PeriodicRenewal(self.beat, self.period, name).__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._renewal is not None:
            self._renewal.__exit__(kind, error, traceback)


def renew_held_leases(items: Iterable[WorkItem], locks: LockManager, ttl: timedelta) -> int:
    """Extend the live leases of every item that holds its locks; returns how many holders
    were renewed. Errors of one holder do not stop the others."""
    renewed = 0
    for item in items:
        if item.locks is not LockStatus.HELD or not item.lock_subsystems:
            continue
        try:
            if locks.renew(item.repo, item.holder, ttl):
                renewed += 1
        except Exception as error:
            log.warning(
                "lease keep-alive failed", extra={"item": item.key, "error": str(error)[:300]}
            )
    return renewed
