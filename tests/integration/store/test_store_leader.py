"""Leader lease and the scheduler: exactly one replica runs the periodic tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from trunkline.store.jobs import JobStore
from trunkline.store.leader import LeaderLease
from trunkline.store.scheduler import LeaderScheduler, PeriodicRegistry, default_registry
from trunkline.store.testing import migrated_engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'leader.db'}")
    yield engine
    engine.dispose()


def _expire(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE scheduler_leases SET expires_at = '2000-01-01 00:00:00.000000'"))


def test_one_holder_at_a_time_with_a_new_epoch_on_every_takeover(engine: Engine) -> None:
    first = LeaderLease(engine, name="scheduler", holder="a", ttl_seconds=30)
    second = LeaderLease(engine, name="scheduler", holder="b", ttl_seconds=30)
    won = first.acquire_or_renew()
    assert (won.leader, won.epoch) == (True, 1)
    lost = second.acquire_or_renew()
    assert (lost.leader, lost.holder, lost.epoch) == (False, "a", 1)
    assert first.acquire_or_renew().epoch == 1  # renewal keeps the epoch
    _expire(engine)
    taken = second.acquire_or_renew()
    assert (taken.leader, taken.epoch) == (True, 2)
    assert not first.acquire_or_renew().leader
    second.release()
    assert first.acquire_or_renew().epoch == 3


def test_only_the_leaders_scheduler_runs_tasks(engine: Engine) -> None:
    runs: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def registry_for(name: str) -> PeriodicRegistry:
        registry = PeriodicRegistry()

        def tick() -> None:
            with lock:
                runs[name] += 1

        registry.register("tick", 0.05, tick)
        return registry

    first = LeaderScheduler(engine, registry_for("a"), lease_seconds=30, holder="a")
    second = LeaderScheduler(engine, registry_for("b"), lease_seconds=30, holder="b")
    first.start()
    second.start()
    try:
        deadline = time.monotonic() + 30
        while runs["a"] < 5:
            assert time.monotonic() < deadline, runs
            time.sleep(0.02)
        assert first.is_leader
        assert not second.is_leader
    finally:
        first.stop()  # releases the lease on a clean stop
    try:
        assert second.elect()
        deadline = time.monotonic() + 30
        while runs["b"] < 3:
            assert time.monotonic() < deadline, runs
            time.sleep(0.02)
    finally:
        second.stop()
    assert second.epoch == first.epoch + 1


def test_default_registry_sweeps_leases_and_tolerates_missing_or_failing_hooks(
    engine: Engine,
) -> None:
    registry = default_registry(JobStore(engine, lease_seconds=30), sweep_seconds=1)
    assert set(registry.tasks) == {"lease_sweep", "reconciler", "queue_tick"}
    registry.tasks["reconciler"].function()  # no reconcilers yet: a no-op
    seen: list[str] = []

    def failing() -> None:
        raise RuntimeError("boom")

    registry.register_reconciler(failing)
    registry.register_reconciler(lambda: seen.append("reconciled"))
    registry.register_queue_tick(lambda: seen.append("ticked"))
    registry.tasks["reconciler"].function()
    registry.tasks["queue_tick"].function()
    registry.tasks["lease_sweep"].function()
    assert seen == ["reconciled", "ticked"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("lease_sweep", 1, lambda: None)
