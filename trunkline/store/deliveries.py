"""Webhook deliveries: record one (with its processing job, atomically), list, load, mark.

Performs database I/O. `record_rows`/`record_batch` run inside the caller's transaction: each
delivery row is inserted with `ON CONFLICT (delivery_id) DO NOTHING` and, only if it is new and
pending, its `process_delivery` job (key `delivery:<id>`) is inserted in the same transaction
(`ON CONFLICT (key) DO NOTHING`). A repeated delivery id therefore adds nothing, on either
dialect and under any concurrency. Intake is the hottest write path, so these use fixed SQL on
the DB-API cursor instead of compiling SQLAlchemy statements per row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from trunkline.store.dialect import database_now
from trunkline.store.engine import read_only
from trunkline.store.jobs import NewJob
from trunkline.store.tables import Delivery, DeliveryState, JobState

PROCESS_DELIVERY = "process_delivery"


@dataclass(frozen=True)
class IncomingDelivery:
    """A delivery as received; `state` is pending (to process) or rejected (with `error`)."""

    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repo_full_name: str | None
    payload: str
    state: DeliveryState = DeliveryState.PENDING
    error: str | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repo_full_name: str | None
    state: str
    received_at: datetime
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repo": self.repo_full_name,
            "state": self.state,
            "received_at": self.received_at.isoformat(),
            "error": self.error,
        }


def process_job_for(delivery_id: str) -> NewJob:
    return NewJob(
        kind=PROCESS_DELIVERY,
        key=f"delivery:{delivery_id}",
        payload={"delivery_id": delivery_id},
        priority=10,
    )


_SQLITE_SQL = (
    "INSERT INTO deliveries (delivery_id, event, action, installation_id, repo_full_name, "
    "received_at, state, error, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (delivery_id) DO NOTHING",
    "INSERT INTO jobs (key, kind, payload, priority, run_at, attempts, max_attempts, state, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
)
_POSTGRES_SQL = (
    "INSERT INTO deliveries (delivery_id, event, action, installation_id, repo_full_name, "
    "received_at, state, error, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (delivery_id) DO NOTHING",
    "INSERT INTO jobs (key, kind, payload, priority, run_at, attempts, max_attempts, state, "
    "created_at, updated_at) VALUES (%s, %s, CAST(%s AS jsonb), %s, %s, 0, %s, %s, %s, %s) "
    "ON CONFLICT (key) DO NOTHING",
)


def record_batch(conn: Connection, deliveries: list[IncomingDelivery]) -> list[bool]:
    """`record_rows` inside a SQLAlchemy transaction the caller opened."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        return record_rows(cursor, conn.dialect.name == "sqlite", deliveries, database_now(conn))
    finally:
        cursor.close()


def record_rows(
    cursor: Any, sqlite: bool, deliveries: list[IncomingDelivery], now: datetime
) -> list[bool]:
    """Record deliveries (and jobs for pending ones) in the cursor's open transaction, fast.

    One `INSERT ... ON CONFLICT DO NOTHING` per row; the driver's `rowcount` (1 or 0) says
    whether the delivery was new. Returns that flag per delivery, in order.
    """
    stamp: Any = now
    if sqlite:  # SQLAlchemy's SQLite DATETIME text format, naive UTC
        stamp = now.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    delivery_sql, job_sql = _SQLITE_SQL if sqlite else _POSTGRES_SQL
    results: list[bool] = []
    for delivery in deliveries:
        cursor.execute(
            delivery_sql,
            (
                delivery.delivery_id,
                delivery.event,
                delivery.action,
                delivery.installation_id,
                delivery.repo_full_name,
                stamp,
                str(delivery.state),
                delivery.error,
                delivery.payload,
            ),
        )
        new = cursor.rowcount == 1
        results.append(new)
        if new and delivery.state is DeliveryState.PENDING:
            job = process_job_for(delivery.delivery_id)
            cursor.execute(
                job_sql,
                (
                    job.key,
                    job.kind,
                    json.dumps(job.payload),
                    job.priority,
                    stamp,
                    job.max_attempts,
                    str(JobState.QUEUED),
                    stamp,
                    stamp,
                ),
            )
    return results


def _record(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=row.delivery_id,
        event=row.event,
        action=row.action,
        installation_id=row.installation_id,
        repo_full_name=row.repo_full_name,
        state=row.state,
        received_at=row.received_at,
        error=row.error,
    )


_SUMMARY = (
    Delivery.delivery_id,
    Delivery.event,
    Delivery.action,
    Delivery.installation_id,
    Delivery.repo_full_name,
    Delivery.state,
    Delivery.received_at,
    Delivery.error,
)


def list_deliveries(engine: Engine, *, limit: int) -> list[DeliveryRecord]:
    """The newest `limit` deliveries, newest first."""
    with engine.connect() as conn:
        rows = read_only(conn).execute(select(*_SUMMARY).order_by(Delivery.id.desc()).limit(limit))
        return [_record(row) for row in rows]


@dataclass(frozen=True)
class StoredDelivery:
    record: DeliveryRecord
    payload: str


def load_delivery(engine: Engine, delivery_id: str) -> StoredDelivery | None:
    with engine.connect() as conn:
        row = (
            read_only(conn)
            .execute(select(*_SUMMARY, Delivery.payload).where(Delivery.delivery_id == delivery_id))
            .first()
        )
    if row is None:
        return None
    return StoredDelivery(record=_record(row), payload=row.payload)


def mark_delivery(
    engine: Engine, delivery_id: str, state: DeliveryState, now: datetime, error: str | None = None
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(Delivery.delivery_id == delivery_id)
            .values(state=state, error=error, processed_at=now)
        )
