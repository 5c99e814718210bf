"""`trunkline.pipeline.store` on SQLite and PostgreSQL: load/save, optimistic versions,
other owners' `data` keys preserved, one timeline row per transition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from trunkline.agents.work_item_rows import ItemRef, change_data
from trunkline.pipeline import events as ev
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.machine import decide, start
from trunkline.pipeline.store import (
    PipelineConflictError,
    list_items,
    load_item,
    new_transitions,
    save_item,
)
from trunkline.policies.model import Permission
from trunkline.store.tables import TimelineEvent
from trunkline.store.tables import WorkItem as WorkItemRow
from trunkline.store.testing import migrated_engine

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = PipelineConfig()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = migrated_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def repo() -> str:
    """A repository of its own per test: the PostgreSQL database is shared by the session."""
    return f"acme/web-{uuid.uuid4().hex[:10]}"


def _labeled(repo: str, issue: int) -> ev.Labeled:
    return ev.Labeled(repo, issue, "maya", Permission.WRITE, "agent")


def test_pipeline_store_round_trips_an_item_with_its_timeline(engine: Engine, repo: str) -> None:
    created, _ = decide(None, _labeled(repo, 4), NOW, CONFIG)
    assert created is not None
    with engine.begin() as conn:
        stored = load_item(conn, repo, 4)
        assert stored.item is None
        assert stored.row_id is None
        save_item(conn, stored, created, NOW, installation_id=12)
    started, _ = start(created, NOW, CONFIG)
    assert started is not None
    with engine.begin() as conn:
        stored = load_item(conn, repo, 4)
        assert stored.item == created
        assert stored.installation_id == 12
        save_item(conn, stored, started, NOW)
    with engine.connect() as conn:
        again = load_item(conn, repo, 4, for_update=False)
        assert again.item == started
        assert again.installation_id == 12
        assert list_items(conn, repo) == [started]
        row = conn.execute(
            select(WorkItemRow.state, WorkItemRow.version).where(WorkItemRow.repo_full_name == repo)
        ).one()
        timeline = conn.execute(
            select(TimelineEvent.kind, TimelineEvent.from_state, TimelineEvent.to_state)
            .where(TimelineEvent.repo_full_name == repo)
            .order_by(TimelineEvent.id)
        ).all()
    assert (row.state, row.version) == ("planning", 2)
    assert [tuple(t) for t in timeline] == [
        ("transition", None, "queued"),
        ("transition", "queued", "planning"),
    ]


def test_pipeline_store_refuses_a_stale_write(engine: Engine, repo: str) -> None:
    created, _ = decide(None, _labeled(repo, 5), NOW, CONFIG)
    assert created is not None
    with engine.begin() as conn:
        save_item(conn, load_item(conn, repo, 5), created, NOW)
    with engine.connect() as conn:
        stale = load_item(conn, repo, 5, for_update=False)
    # someone else (the agents runtime) changes the row meanwhile
    change_data(engine, ItemRef(repo, 5), lambda data: {**data, "takeover": {"active": False}})
    started, _ = start(created, NOW, CONFIG)
    assert started is not None
    with pytest.raises(PipelineConflictError), engine.begin() as conn:
        save_item(conn, stale, started, NOW)
    with engine.begin() as conn:
        fresh = load_item(conn, repo, 5)
        save_item(conn, fresh, started, NOW)
    with engine.connect() as conn:
        data = conn.execute(
            select(WorkItemRow.data).where(WorkItemRow.repo_full_name == repo)
        ).scalar_one()
    assert data["takeover"] == {"active": False}  # the other owner's key survives
    assert data["pipeline"]["state"] == "planning"


def test_pipeline_store_creating_twice_conflicts(engine: Engine, repo: str) -> None:
    created, _ = decide(None, _labeled(repo, 6), NOW, CONFIG)
    assert created is not None
    with engine.connect() as conn:
        first = load_item(conn, repo, 6, for_update=False)
    with engine.begin() as conn:
        save_item(conn, first, created, NOW)
    with pytest.raises(PipelineConflictError), engine.begin() as conn:
        save_item(conn, first, created, NOW)


def test_pipeline_store_new_transitions_survive_a_bounded_history() -> None:
    created, _ = decide(
        None, ev.Labeled("acme/web", 7, "maya", Permission.WRITE, "agent"), NOW, CONFIG
    )
    assert created is not None
    started, _ = start(created, NOW, CONFIG)
    assert started is not None
    assert new_transitions(created.history, started.history) == started.history[-1:]
    assert new_transitions(started.history, started.history[1:]) == ()
    assert new_transitions((), started.history) == started.history
