"""Delivery storage: one row and one job per delivery id, whatever the batching or threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from sqlalchemy import Engine, text

from trunkline.store.deliveries import (
    IncomingDelivery,
    list_deliveries,
    load_delivery,
    mark_delivery,
    record_batch,
)
from trunkline.store.delivery_writer import DeliveryWriter, WriterStoppedError
from trunkline.store.tables import DeliveryState
from trunkline.store.testing import migrated_engine, temporary_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = migrated_engine(f"sqlite:///{tmp_path / 'deliveries.db'}")
        yield engine
        engine.dispose()
        return
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL, durable_commits=False) as url:
        engine = migrated_engine(url)
        yield engine
        engine.dispose()


def _delivery(delivery_id: str, state: DeliveryState = DeliveryState.PENDING) -> IncomingDelivery:
    return IncomingDelivery(
        delivery_id=delivery_id,
        event="issues",
        action="opened",
        installation_id=2**40,
        repo_full_name="acme/widgets",
        payload='{"action": "opened"}',
        state=state,
        error=None if state is DeliveryState.PENDING else "malformed JSON",
    )


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        deliveries = conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
        jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    return int(deliveries), int(jobs)


def test_record_batch_stores_each_id_once_and_jobs_only_for_pending(engine: Engine) -> None:
    with engine.begin() as conn:
        new = record_batch(
            conn,
            [
                _delivery("a"),
                _delivery("a"),
                _delivery("r", DeliveryState.REJECTED),
                _delivery("b"),
            ],
        )
    assert new == [True, False, True, True]
    with engine.begin() as conn:
        assert record_batch(conn, [_delivery("b")]) == [False]
    assert _counts(engine) == (3, 2)
    stored = load_delivery(engine, "a")
    assert stored is not None
    assert stored.payload == '{"action": "opened"}'
    assert stored.record.received_at.tzinfo is not None
    assert stored.record.installation_id == 2**40
    mark_delivery(engine, "a", DeliveryState.PROCESSED, datetime.now(UTC))
    states = {record.delivery_id: record.state for record in list_deliveries(engine, limit=10)}
    assert states == {"a": "processed", "r": "rejected", "b": "pending"}
    assert load_delivery(engine, "missing") is None


def test_the_writer_stores_concurrent_submissions_once_each(engine: Engine) -> None:
    committed: list[int] = []
    writer = DeliveryWriter(engine, max_batch=16, on_committed=committed.append)
    results: list[bool] = []
    lock = threading.Lock()

    def submit(thread: int) -> None:
        futures = [writer.submit(_delivery(f"d-{(thread + n) % 40}")) for n in range(50)]
        outcomes = [future.result(timeout=60) for future in futures]
        with lock:
            results.extend(outcomes)

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.stop()
    assert len(results) == 200
    assert results.count(True) == 40
    assert sum(committed) == 40
    assert _counts(engine) == (40, 40)
    stopped = writer.submit(_delivery("late"))
    with pytest.raises(WriterStoppedError):
        stopped.result(timeout=5)
