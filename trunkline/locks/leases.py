"""The store-backed lock manager: subsystem leases in the `locks` / `lock_waiters` tables.

Performs database I/O; the decisions themselves come from `trunkline.locks.decisions`.
Contract of every operation (acquire, renew, release, transfer):
- ONE transaction. It reads the time from the database clock (`database_now`) inside the
  transaction and never from this process.
- Rows are touched in one fixed order, by (subsystem, slot) name order: for each requested
  subsystem in sorted order, its slot rows are locked (`SELECT ... ORDER BY slot FOR UPDATE`
  on PostgreSQL; on SQLite the engine's `BEGIN IMMEDIATE` already serializes writers); if
  slots are missing they are created (`INSERT ... ON CONFLICT DO NOTHING`) and the subsystem's
  rows are locked again, before the next subsystem is touched. A
  transaction waiting for a row holds only rows that come earlier in that order, so two
  acquirers never deadlock. Waiter rows are written last, by id.
- Each grant bumps the epoch (fencing token) of the slot beyond every epoch the subsystem
  ever had; renewals keep it; releases and expiry leave it for the next grant to exceed.
Callers pass the repository's `max_active` per subsystem (from the policy) on every acquire.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, insert, select, update

from trunkline.locks.decisions import (
    AcquireDecision,
    Blocker,
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
    refusal_needs_no_write,
)
from trunkline.locks.fencing import StaleLease
from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.engine import read_only
from trunkline.store.tables import Lock, LockWaiter, TimelineEvent

log = logging.getLogger(__name__)

DEFAULT_WAITER_TTL = timedelta(minutes=2)


@dataclass(frozen=True)
class Grant:
    """Every requested subsystem is held; present `epochs` with each guarded write."""

    repo: str
    holder: str
    leases: tuple[Lease, ...]

    @property
    def epochs(self) -> dict[str, int]:
        return {lease.subsystem: lease.epoch for lease in self.leases}

    @property
    def expires_at(self) -> datetime:
        return min(lease.expires_at for lease in self.leases)


@dataclass(frozen=True)
class Waiting:
    """Nothing was taken; the holder is in line (if it asked to wait) for these reasons."""

    repo: str
    holder: str
    blockers: tuple[Blocker, ...]


@dataclass(frozen=True)
class LockSnapshot:
    """Every lease row with a holder and every waiter, for `trunkline locks`."""

    now: datetime
    leases: tuple[tuple[str, SlotRow], ...]  # (repo, row)
    waiters: tuple[tuple[str, WaiterRow], ...]  # (repo, row)


class LockManager:
    """Acquire, renew, release and transfer subsystem leases; see the module docstring."""

    def __init__(self, engine: Engine, *, waiter_ttl: timedelta = DEFAULT_WAITER_TTL) -> None:
        if waiter_ttl <= timedelta(0):
            raise ValueError("waiter_ttl must be positive")
        self.engine = engine
        self.waiter_ttl = waiter_ttl

    def acquire(
        self,
        repo: str,
        holder: str,
        subsystems: Mapping[str, int],
        ttl: timedelta,
        *,
        wait: bool = True,
    ) -> Grant | Waiting:
        """Take every subsystem (name -> max_active) for `ttl`, or none and wait in line.

        Idempotent for a holder: subsystems it already holds are kept with their epochs and
        extended. With `wait=False` a refused request does not join (or touch) the line.
        """
        request = LeaseRequest(holder, dict(subsystems), ttl, wait)
        refusal = self._refusal_from_a_read(repo, request)
        if refusal is not None:
            return refusal
        with self.engine.begin() as conn:
            rows: list[SlotRow] = []
            for name in sorted(request.subsystems):
                rows += _lock_subsystem(conn, repo, name, request.subsystems[name])
            now = database_now(conn)
            waiters = _waiters(conn, repo)
            decision = decide_acquire(request, rows, waiters, now, self.waiter_ttl)
            _apply(conn, repo, holder, now, decision.slot_writes, decision.waiters)
        _log_acquire(repo, holder, decision)
        if decision.granted:
            return Grant(repo, holder, decision.leases)
        return Waiting(repo, holder, decision.blockers)

    def _refusal_from_a_read(self, repo: str, request: LeaseRequest) -> Waiting | None:
        """Answer a waiter's repeated ask from a read-only transaction when nothing changed
        for it, so polling waiters do not queue for the write lock; None: decide for real."""
        with self.engine.connect() as connection:
            conn = read_only(connection)
            with conn.begin():
                now = database_now(conn)
                rows = conn.execute(
                    select(Lock).where(
                        Lock.repo_full_name == repo,
                        Lock.subsystem.in_(sorted(request.subsystems)),
                    )
                ).all()
                waiters = _waiters(conn, repo)
        slots = {(row.subsystem, row.slot): _slot_row(row) for row in rows}
        for name, max_active in request.subsystems.items():
            for slot in range(max_active):
                slots.setdefault((name, slot), SlotRow(name, slot))
        decision = decide_acquire(request, list(slots.values()), waiters, now, self.waiter_ttl)
        if refusal_needs_no_write(request, decision, waiters, now, self.waiter_ttl):
            return Waiting(repo, request.holder, decision.blockers)
        return None

    def renew(
        self,
        repo: str,
        holder: str,
        ttl: timedelta,
        epochs: Mapping[str, int] | None = None,
    ) -> tuple[Lease, ...]:
        """Heartbeat: extend every live lease of `holder` to now + ttl; touch its waiter rows.

        Returns the leases held afterwards (expired ones are not revived). With `epochs`,
        raises `StaleLease` and renews nothing unless each is still held with that epoch.
        """
        with self.engine.begin() as conn:
            rows = _lock_rows_of(conn, repo, holder)
            now = database_now(conn)
            waiters = _waiters(conn, repo, holder)
            decision = decide_renew(holder, rows, waiters, now, ttl, epochs)
            if decision.refused:
                raise StaleLease(repo, holder, decision.lost)
            _apply(conn, repo, holder, now, decision.slot_writes, decision.waiters)
        return decision.leases

    def release(self, repo: str, holder: str, subsystems: Iterable[str] | None = None) -> int:
        """Give up `holder`'s leases (all, or `subsystems`) and its place in line.

        For merge, close and cancel. Returns how many leases were cleared; idempotent.
        """
        with self.engine.begin() as conn:
            rows = _lock_rows_of(conn, repo, holder)
            now = database_now(conn)
            waiters = _waiters(conn, repo, holder)
            decision = decide_release(holder, rows, waiters, subsystems)
            _apply(conn, repo, holder, now, decision.slot_writes, decision.waiters)
        if decision.slot_writes:
            log.info(
                "locks released",
                extra={"repo": repo, "holder": holder, "count": len(decision.slot_writes)},
            )
        return len(decision.slot_writes)

    def leave_line(self, repo: str, holder: str) -> int:
        """Stop waiting: drop `holder`'s waiter rows (its leases stay); returns how many."""
        with self.engine.begin() as conn:
            ids = [waiter.id for waiter in _waiters(conn, repo, holder)]
            for waiter_id in ids:
                conn.execute(delete(LockWaiter).where(LockWaiter.id == waiter_id))
        return len(ids)

    def transfer(
        self,
        repo: str,
        from_holder: str,
        to_holder: str,
        ttl: timedelta,
        subsystems: Iterable[str] | None = None,
    ) -> HolderDecision:
        """A human takeover and its resume: `from_holder`'s live leases (all, or those of
        `subsystems`) now belong to `to_holder`.

        Each transferred lease gets a new epoch, so the old holder's guarded writes fail.
        """
        wanted = None if subsystems is None else set(subsystems)
        with self.engine.begin() as conn:
            names = sorted(
                name
                for name in set(
                    conn.execute(
                        select(Lock.subsystem).where(
                            Lock.repo_full_name == repo, Lock.holder == from_holder
                        )
                    ).scalars()
                )
                if wanted is None or name in wanted
            )
            rows: list[SlotRow] = []
            for name in names:
                rows += _lock_subsystem(conn, repo, name, 0)
            now = database_now(conn)
            waiters = _waiters(conn, repo, from_holder)
            decision = decide_transfer(from_holder, to_holder, rows, waiters, now, ttl, wanted)
            _apply(conn, repo, to_holder, now, decision.slot_writes, decision.waiters)
        log.info(
            "locks transferred",
            extra={
                "repo": repo,
                "from_holder": from_holder,
                "to_holder": to_holder,
                "subsystems": [lease.subsystem for lease in decision.leases],
            },
        )
        return decision

    def held(self, repo: str, holder: str) -> tuple[Lease, ...]:
        """The live leases of `holder` right now (database clock); read only."""
        with self.engine.connect() as connection:
            conn = read_only(connection)
            with conn.begin():
                now = database_now(conn)
                rows = _rows(conn, repo, holder)
        return tuple(
            Lease(r.subsystem, r.slot, holder, r.epoch, r.acquired_at or now, r.expires_at or now)
            for r in rows
            if r.live(now)
        )

    def snapshot(self, repo: str | None = None) -> LockSnapshot:
        """Every held (or expired, not yet reclaimed) lease and every waiter; read only."""
        lease_query = select(Lock).where(Lock.holder.is_not(None))
        waiter_query = select(LockWaiter)
        if repo is not None:
            lease_query = lease_query.where(Lock.repo_full_name == repo)
            waiter_query = waiter_query.where(LockWaiter.repo_full_name == repo)
        with self.engine.connect() as connection:
            conn = read_only(connection)
            with conn.begin():
                now = database_now(conn)
                leases = conn.execute(
                    lease_query.order_by(Lock.repo_full_name, Lock.subsystem, Lock.slot)
                ).all()
                waiters = conn.execute(
                    waiter_query.order_by(LockWaiter.repo_full_name, LockWaiter.id)
                ).all()
        return LockSnapshot(
            now,
            tuple((row.repo_full_name, _slot_row(row)) for row in leases),
            tuple((row.repo_full_name, _waiter_row(row)) for row in waiters),
        )


def _lock_subsystem(conn: Connection, repo: str, name: str, max_active: int) -> list[SlotRow]:
    """Lock every slot row of the subsystem, creating slots 0..max_active-1 first if missing."""
    query = (
        select(Lock)
        .where(Lock.repo_full_name == repo, Lock.subsystem == name)
        .order_by(Lock.slot)
        .with_for_update()
    )
    rows = [_slot_row(row) for row in conn.execute(query).all()]
    present = {row.slot for row in rows}
    missing = [slot for slot in range(max_active) if slot not in present]
    if not missing:
        return rows
    for slot in missing:
        insert_ignoring_conflicts(
            conn,
            Lock.__table__,  # type: ignore[arg-type]
            {"repo_full_name": repo, "subsystem": name, "slot": slot, "holder": None, "epoch": 0},
            ["repo_full_name", "subsystem", "slot"],
        )
    return [_slot_row(row) for row in conn.execute(query).all()]


def _lock_rows_of(conn: Connection, repo: str, holder: str) -> list[SlotRow]:
    """Lock `holder`'s slot rows, in the fixed (subsystem, slot) order."""
    result = conn.execute(
        select(Lock)
        .where(Lock.repo_full_name == repo, Lock.holder == holder)
        .order_by(Lock.subsystem, Lock.slot)
        .with_for_update()
    ).all()
    return [_slot_row(row) for row in result]


def _rows(conn: Connection, repo: str, holder: str) -> list[SlotRow]:
    result = conn.execute(
        select(Lock)
        .where(Lock.repo_full_name == repo, Lock.holder == holder)
        .order_by(Lock.subsystem, Lock.slot)
    ).all()
    return [_slot_row(row) for row in result]


def _waiters(conn: Connection, repo: str, holder: str | None = None) -> list[WaiterRow]:
    query = select(LockWaiter).where(LockWaiter.repo_full_name == repo)
    if holder is not None:
        query = query.where(LockWaiter.holder == holder)
    return [_waiter_row(row) for row in conn.execute(query.order_by(LockWaiter.id)).all()]


def _slot_row(row: object) -> SlotRow:
    return SlotRow(
        subsystem=row.subsystem,  # type: ignore[attr-defined]
        slot=row.slot,  # type: ignore[attr-defined]
        holder=row.holder,  # type: ignore[attr-defined]
        epoch=row.epoch,  # type: ignore[attr-defined]
        acquired_at=row.acquired_at,  # type: ignore[attr-defined]
        expires_at=row.expires_at,  # type: ignore[attr-defined]
    )


def _waiter_row(row: object) -> WaiterRow:
    return WaiterRow(
        id=row.id,  # type: ignore[attr-defined]
        subsystem=row.subsystem,  # type: ignore[attr-defined]
        holder=row.holder,  # type: ignore[attr-defined]
        requested_at=row.requested_at,  # type: ignore[attr-defined]
    )


def _apply(
    conn: Connection,
    repo: str,
    holder: str,
    now: datetime,
    writes: Sequence[SlotWrite],
    changes: WaiterChanges,
) -> None:
    for write in sorted(writes, key=lambda w: (w.subsystem, w.slot)):
        conn.execute(
            update(Lock)
            .where(
                Lock.repo_full_name == repo,
                Lock.subsystem == write.subsystem,
                Lock.slot == write.slot,
            )
            .values(
                holder=write.holder,
                epoch=write.epoch,
                acquired_at=write.acquired_at,
                expires_at=write.expires_at,
            )
        )
        if write.holder is None or write.acquired_at == now:  # a grant or a release, not a renewal
            _record_history(conn, repo, holder, now, write)
    # one id order for every waiter row this transaction locks (deletes and touches alike)
    touched = set(changes.touch) - set(changes.delete)
    for waiter_id in sorted(set(changes.delete) | touched):
        if waiter_id in touched:
            conn.execute(
                update(LockWaiter).where(LockWaiter.id == waiter_id).values(requested_at=now)
            )
        else:
            conn.execute(delete(LockWaiter).where(LockWaiter.id == waiter_id))
    for name in changes.insert:
        insert_ignoring_conflicts(
            conn,
            LockWaiter.__table__,  # type: ignore[arg-type]
            {"repo_full_name": repo, "subsystem": name, "holder": holder, "requested_at": now},
            ["repo_full_name", "subsystem", "holder"],
        )


def _record_history(conn: Connection, repo: str, by: str, now: datetime, write: SlotWrite) -> None:
    """The lock history: one `timeline_events` row (kind `lock`) per grant or release, in the
    same transaction as the slot write, so replaying them in id order gives the holders."""
    conn.execute(
        insert(TimelineEvent).values(
            work_item_id=None,
            repo_full_name=repo,
            kind="lock",
            message=f"{write.subsystem}[{write.slot}]: {write.holder or 'released by ' + by}",
            data={
                "subsystem": write.subsystem,
                "slot": write.slot,
                "holder": write.holder,
                "epoch": write.epoch,
                "by": by,
            },
            created_at=now,
        )
    )


def _log_acquire(repo: str, holder: str, decision: AcquireDecision) -> None:
    for row in decision.reclaimed:
        log.info(
            "expired lease reclaimed",
            extra={"repo": repo, "subsystem": row.subsystem, "holder": row.holder},
        )
    if decision.granted:
        log.info(
            "locks granted",
            extra={
                "repo": repo,
                "holder": holder,
                "epochs": {lease.subsystem: lease.epoch for lease in decision.leases},
            },
        )
    else:
        log.debug(
            "locks busy",
            extra={
                "repo": repo,
                "holder": holder,
                "blocked": [(b.subsystem, b.reason.value, b.holders) for b in decision.blockers],
            },
        )
