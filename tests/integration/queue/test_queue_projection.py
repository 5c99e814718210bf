"""`queue_entries` follows the queue state in the same transaction (SQLite and PostgreSQL).

The dashboard, `/metrics` and `trunkline status` read these rows, so they must show each live
entry's state, position and gates, and how and why an entry left.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from trunkline.clock import FakeClock
from trunkline.queue.effects import BuildIntegration
from trunkline.queue.events import (
    CheckCompleted,
    Dequeue,
    Enqueue,
    FastForwarded,
    GateReport,
    GatesUpdated,
    IntegrationBuilt,
)
from trunkline.queue.model import ALL_GATES, CheckConclusion, Gate, Priority, QueueConfig
from trunkline.queue.service import QueueService
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade
from trunkline.store.tables import QueueEntry

BASE = "main"
CONFIG = QueueConfig(base=BASE, required_checks=("ci",))
PASSING = tuple(GateReport(gate, True) for gate in ALL_GATES)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'projection.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _rows(engine: Engine, repo: str) -> dict[int, list[Any]]:
    with engine.connect() as conn:
        found = conn.execute(
            select(QueueEntry).where(QueueEntry.repo_full_name == repo).order_by(QueueEntry.id)
        ).all()
    rows: dict[int, list[Any]] = {}
    for row in found:
        rows.setdefault(row.pr_number, []).append(row)
    return rows


def test_queue_entries_follow_the_queue_from_enqueue_to_merge(engine: Engine) -> None:
    repo = f"acme/p{uuid.uuid4().hex[:10]}"
    service = QueueService(engine, FakeClock(current=datetime(2026, 5, 1, 9, tzinfo=UTC)))
    service.submit(
        repo, BASE, Enqueue(7, "b" * 40, Priority.NORMAL), config=CONFIG, base_sha="a" * 40
    )
    service.submit(repo, BASE, Enqueue(8, "d" * 40, Priority.HIGH))
    service.submit(repo, BASE, GatesUpdated(8, "d" * 40, (GateReport(Gate.SCOPE, False, "x"),)))

    rows = _rows(engine, repo)
    (seven,), (eight,) = rows[7], rows[8]
    assert (seven.state, seven.data["gates"]["scope"]) == ("waiting", "pending")
    assert (eight.state, eight.data["gates"]["scope"], eight.priority) == ("waiting", "failed", 2)
    assert eight.priority > seven.priority  # high sorts first in the dashboard's order

    effects = service.submit(repo, BASE, GatesUpdated(7, "b" * 40, PASSING))
    (build,) = [effect for effect in effects if isinstance(effect, BuildIntegration)]
    assert _rows(engine, repo)[7][0].state == "building"
    service.submit(repo, BASE, IntegrationBuilt(build.build_id, "c" * 40))
    (testing,) = _rows(engine, repo)[7]
    assert (testing.state, testing.integration_sha) == ("testing", "c" * 40)
    assert set(testing.data["gates"].values()) == {"passed"}

    service.submit(repo, BASE, CheckCompleted("c" * 40, "ci", CheckConclusion.SUCCESS, "green"))
    service.submit(repo, BASE, FastForwarded(build.build_id, "c" * 40))
    service.submit(repo, BASE, Dequeue(8, "alice", "not needed"))

    rows = _rows(engine, repo)
    (merged,), (dequeued,) = rows[7], rows[8]
    assert (merged.state, merged.integration_sha) == ("merged", "c" * 40)
    assert merged.reason
    assert (dequeued.state, dequeued.reason is not None) == ("dequeued", True)


def test_a_pr_enqueued_again_gets_a_new_row(engine: Engine) -> None:
    repo = f"acme/r{uuid.uuid4().hex[:10]}"
    service = QueueService(engine, FakeClock(current=datetime(2026, 5, 1, 9, tzinfo=UTC)))
    service.submit(repo, BASE, Enqueue(3, "e" * 40, Priority.LOW), config=CONFIG, base_sha="a" * 40)
    service.submit(repo, BASE, Dequeue(3, "bob", "later"))
    service.submit(repo, BASE, Enqueue(3, "e" * 40, Priority.LOW))
    states = [row.state for row in _rows(engine, repo)[3]]
    assert states == ["dequeued", "waiting"]
