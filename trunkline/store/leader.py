"""Leader election through a lease row: among replicas sharing a database, one holds it.

Performs database I/O. The row `scheduler_leases(name)` names the holder, an `epoch` (bumped on
every change of holder: a fencing token) and `expires_at` on the database clock. A holder renews
before expiry; when it stops renewing (crash, partition) another replica takes over after the
lease runs out. The row is locked (`FOR UPDATE`; on SQLite the `BEGIN IMMEDIATE` write lock)
while it is read and changed, so two replicas never both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, select, update

from trunkline.store.dialect import database_now, insert_ignoring_conflicts
from trunkline.store.tables import SchedulerLease


@dataclass(frozen=True)
class Leadership:
    holder: str
    epoch: int
    leader: bool


class LeaderLease:
    def __init__(self, engine: Engine, *, name: str, holder: str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.engine = engine
        self.name = name
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_seconds)

    def acquire_or_renew(self) -> Leadership:
        """Renew our lease, or take it if free or expired; says who leads afterwards."""
        with self.engine.begin() as conn:
            now = database_now(conn)
            insert_ignoring_conflicts(
                conn,
                SchedulerLease.__table__,  # type: ignore[arg-type]
                {"name": self.name, "holder": None, "epoch": 0, "expires_at": None},
                ["name"],
            )
            row = conn.execute(
                select(SchedulerLease.holder, SchedulerLease.epoch, SchedulerLease.expires_at)
                .where(SchedulerLease.name == self.name)
                .with_for_update()
            ).one()
            expired = row.expires_at is None or row.expires_at <= now
            if row.holder == self.holder and not expired:
                epoch = row.epoch
            elif row.holder == self.holder or expired:
                epoch = row.epoch + 1
            else:
                return Leadership(holder=row.holder, epoch=row.epoch, leader=False)
            conn.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == self.name)
                .values(holder=self.holder, epoch=epoch, expires_at=now + self.ttl)
            )
            return Leadership(holder=self.holder, epoch=epoch, leader=True)

    def release(self) -> None:
        """Give the lease up now (clean shutdown) so another replica need not wait."""
        with self.engine.begin() as conn:
            conn.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == self.name, SchedulerLease.holder == self.holder)
                .values(holder=None, expires_at=None)
            )
