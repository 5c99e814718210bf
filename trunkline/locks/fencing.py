"""Fencing: a write made under a lease happens only while that exact lease is still held.

Performs database I/O on the connection it is given, inside the caller's transaction.

The pattern every guarded write follows (a stale holder then changes nothing):
1. Acquire leases with `LockManager.acquire` and keep the `Grant`'s `epochs`
   ({subsystem: epoch}); heartbeat with `LockManager.renew`.
2. For each write made on behalf of the lease, open ONE transaction and, first thing in it,
   call `guarded(conn, repo, holder, epochs)`. It locks the presented lease rows (`FOR UPDATE`
   on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already holds the write lock) and checks, on the
   database clock, that each is still held by `holder`, with that epoch, and not expired.
   Otherwise it raises `StaleLease` before anything was written.
3. Make the write on the same connection, then commit. While the transaction is open the
   lease rows stay locked, so nobody can reclaim or take them over between check and write:
   a competing acquire waits and, once it commits, issues a larger epoch that every later
   guarded write of the old holder fails against.
`FencedWriter.write` does steps 2-3 for a callable. Never check the epoch in one transaction
and write in another; never cache "I still hold it" across transactions.
Writes outside the database (a push, a comment) cannot be fenced by the row lock: record the
intent as a guarded row first (a job, an outbox entry) and let the effect runner perform it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from sqlalchemy import Connection, Engine, select

from trunkline.errors import TerminalError
from trunkline.store.dialect import database_now
from trunkline.store.tables import Lock

T = TypeVar("T")


class StaleLease(TerminalError):  # noqa: N818 (the name the design uses)
    """The holder no longer holds a lease with the epoch it presented; nothing was written."""

    def __init__(self, repo: str, holder: str, subsystems: Iterable[str]) -> None:
        self.repo = repo
        self.holder = holder
        self.subsystems = tuple(sorted(subsystems))
        super().__init__(
            f"{holder} no longer holds {', '.join(self.subsystems)} in {repo} "
            "with the epoch it presented (expired, released or taken over); nothing was written"
        )


def guarded(conn: Connection, repo: str, holder: str, epochs: Mapping[str, int]) -> None:
    """Lock and check the presented leases in `conn`'s transaction; raise `StaleLease` if any
    is not held by `holder` with that epoch or has expired on the database clock."""
    if not epochs:
        raise ValueError("a guarded write presents at least one lease")
    stale: list[str] = []
    rows = conn.execute(
        select(Lock.subsystem, Lock.holder, Lock.epoch, Lock.expires_at)
        .where(
            Lock.repo_full_name == repo,
            Lock.subsystem.in_(sorted(epochs)),
            Lock.holder == holder,
        )
        .order_by(Lock.subsystem, Lock.slot)
        .with_for_update()
    ).all()
    now = database_now(conn)
    current = {
        row.subsystem: row.epoch
        for row in rows
        if row.expires_at is not None and row.expires_at > now
    }
    stale = [name for name, epoch in sorted(epochs.items()) if current.get(name) != epoch]
    if stale:
        raise StaleLease(repo, holder, stale)


class FencedWriter:
    """Runs a write in one transaction behind `guarded`; a stale holder changes nothing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(
        self,
        repo: str,
        holder: str,
        epochs: Mapping[str, int],
        action: Callable[[Connection], T],
    ) -> T:
        """Check the leases, then run `action(conn)` in the same transaction and commit."""
        with self.engine.begin() as conn:
            guarded(conn, repo, holder, epochs)
            return action(conn)
