"""Moving and releasing one work item's leases, whichever holder name they are under.

Performs database I/O through `LockManager` only. A work item's leases are under its own
holder (`issue-<n>`, or `human:<login>:issue-<n>` while taken over): everything such a
holder has is the item's, so it is moved or released whole. Leases taken over before the
item was part of the human holder's name are under the shared `human:<login>`
(`legacy_human_holder`); of those, only the item's own `subsystems` (recorded by the
pipeline when it took them) are moved or released, and none the item's new holder already
has. Both calls are idempotent: a second call finds nothing left to move.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from trunkline.locks.holders import legacy_human_holder, parse_holder
from trunkline.locks.leases import LockManager


def _shared_holder(holder: str) -> str | None:
    """The legacy shared holder behind a per-item human holder, if `holder` is one."""
    parsed = parse_holder(holder)
    if parsed.login is None or parsed.issue is None:
        return None
    return legacy_human_holder(parsed.login)


def transfer_item_leases(
    locks: LockManager,
    repo: str,
    from_holder: str,
    to_holder: str,
    ttl: timedelta,
    subsystems: Iterable[str],
) -> tuple[str, ...]:
    """Move the item's leases from `from_holder` to `to_holder`; the subsystems moved.

    A shared `human:<login>` holder gives up only `subsystems`; a per-item human holder gives
    up all it has, then the shared holder of the same person the item's `subsystems` that
    `to_holder` still lacks (leases taken over before the per-item names).
    """
    wanted = sorted(set(subsystems))
    if parse_holder(from_holder).is_legacy_human:
        return _transfer_missing(locks, repo, from_holder, to_holder, ttl, wanted)
    moved = [lease.subsystem for lease in locks.transfer(repo, from_holder, to_holder, ttl).leases]
    shared = _shared_holder(from_holder)
    if shared is not None and wanted:
        moved += _transfer_missing(locks, repo, shared, to_holder, ttl, wanted)
    return tuple(sorted(set(moved)))


def _transfer_missing(
    locks: LockManager,
    repo: str,
    shared: str,
    to_holder: str,
    ttl: timedelta,
    wanted: list[str],
) -> tuple[str, ...]:
    has = {lease.subsystem for lease in locks.held(repo, to_holder)}
    missing = [name for name in wanted if name not in has]
    if not missing:
        return ()
    decision = locks.transfer(repo, shared, to_holder, ttl, missing)
    return tuple(lease.subsystem for lease in decision.leases)


def release_item_leases(
    locks: LockManager, repo: str, holder: str, subsystems: Iterable[str]
) -> int:
    """Release the item's leases under `holder` and its place in line; how many were cleared.

    A shared `human:<login>` holder releases only `subsystems`; a per-item human holder
    releases all it has, then the shared holder of the same person the item's `subsystems`
    the per-item holder did not have.
    """
    wanted = sorted(set(subsystems))
    if parse_holder(holder).is_legacy_human:
        return locks.release(repo, holder, wanted) if wanted else 0
    shared = _shared_holder(holder)
    had = {lease.subsystem for lease in locks.held(repo, holder)} if shared else set()
    cleared = locks.release(repo, holder)
    missing = [name for name in wanted if name not in had]
    if shared is not None and missing:
        cleared += locks.release(repo, shared, missing)
    return cleared
