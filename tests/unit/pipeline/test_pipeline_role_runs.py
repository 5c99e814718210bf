"""`trunkline.pipeline.role_runs` on SQLite and PostgreSQL: one claim per command, the
recorded outcome reused, expired claims taken over, concurrent claims with one winner."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine

from trunkline.agents.work_item_rows import ItemRef, read_data
from trunkline.clock import FakeClock
from trunkline.pipeline.role_runs import (
    KEEP,
    LEDGER_KEY,
    Busy,
    Claimed,
    ClaimKeeper,
    Recorded,
    RoleOutcome,
    RoleRunLedger,
)
from trunkline.store.testing import migrated_engine

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TTL = timedelta(seconds=30)
KEY = "acme/web#4:run1:v6:run-executor"


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
def ref() -> ItemRef:
    """An item of its own per test: the PostgreSQL database is shared by the session."""
    return ItemRef(f"acme/web-{uuid.uuid4().hex[:10]}", 4)


def test_pipeline_role_runs_second_delivery_waits_then_reuses_the_outcome(
    engine: Engine, ref: ItemRef
) -> None:
    ledger = RoleRunLedger(engine, FakeClock(current=NOW), TTL)
    assert ledger.claim(ref, KEY, "first") == Claimed("first")
    busy = ledger.claim(ref, KEY, "second")
    assert isinstance(busy, Busy)
    assert busy.holder == "first"
    assert busy.expires_at == NOW + TTL
    assert ledger.outcome(ref, KEY) is None

    outcome = RoleOutcome(
        event={"type": "ExecutionDone"}, head="a" * 40, tokens=120, usd=Decimal("0.25")
    )
    assert ledger.record(ref, KEY, "second", outcome) is False  # not the holder
    assert ledger.record(ref, KEY, "first", outcome) is True
    assert ledger.claim(ref, KEY, "second") == Recorded(outcome)
    assert ledger.claim(ref, KEY, "third") == Recorded(outcome)
    assert ledger.outcome(ref, KEY) == outcome
    # other commands are claimed independently
    assert ledger.claim(ref, KEY + "-other", "second") == Claimed("second")


def test_pipeline_role_runs_failures_are_recorded_and_reused(engine: Engine, ref: ItemRef) -> None:
    ledger = RoleRunLedger(engine, FakeClock(current=NOW), TTL)
    assert ledger.claim(ref, KEY, "first") == Claimed("first")
    failure = RoleOutcome(code="invalid_output", message="no product", tokens=7)
    assert ledger.record(ref, KEY, "first", failure)
    found = ledger.claim(ref, KEY, "retry")
    assert isinstance(found, Recorded)
    assert found.outcome.failed
    assert found.outcome == failure


def test_pipeline_role_runs_expired_claim_is_taken_over_and_the_old_holder_is_fenced(
    engine: Engine, ref: ItemRef
) -> None:
    clock = FakeClock(current=NOW)
    ledger = RoleRunLedger(engine, clock, TTL)
    assert ledger.claim(ref, KEY, "died") == Claimed("died")
    clock.advance(TTL.total_seconds() - 1)
    assert isinstance(ledger.claim(ref, KEY, "retry"), Busy)
    assert ledger.renew(ref, KEY, "died")  # a live holder keeps its claim
    clock.advance(TTL.total_seconds() - 1)
    assert isinstance(ledger.claim(ref, KEY, "retry"), Busy)
    clock.advance(2)
    assert ledger.claim(ref, KEY, "retry") == Claimed("retry")
    # the holder that was taken over can neither renew nor report
    assert not ledger.renew(ref, KEY, "died")
    assert not ledger.record(ref, KEY, "died", RoleOutcome(event={"type": "late"}))
    assert ledger.record(ref, KEY, "retry", RoleOutcome(event={"type": "on time"}))
    assert ledger.outcome(ref, KEY) == RoleOutcome(event={"type": "on time"})


def test_pipeline_role_runs_release_and_forget_let_the_run_be_made_again(
    engine: Engine, ref: ItemRef
) -> None:
    ledger = RoleRunLedger(engine, FakeClock(current=NOW), TTL)
    assert ledger.claim(ref, KEY, "first") == Claimed("first")
    ledger.release(ref, KEY, "other")  # only the holder releases
    assert isinstance(ledger.claim(ref, KEY, "second"), Busy)
    ledger.release(ref, KEY, "first")
    assert ledger.claim(ref, KEY, "second") == Claimed("second")
    assert ledger.record(ref, KEY, "second", RoleOutcome(head="b" * 40))
    ledger.forget(ref, KEY)
    assert ledger.claim(ref, KEY, "third") == Claimed("third")


def test_pipeline_role_runs_keeps_the_newest_records(engine: Engine, ref: ItemRef) -> None:
    clock = FakeClock(current=NOW)
    ledger = RoleRunLedger(engine, clock, TTL)
    for n in range(KEEP + 3):
        clock.advance(1)
        assert ledger.claim(ref, f"{KEY}-{n}", "t") == Claimed("t")
    kept = read_data(engine, ref)[LEDGER_KEY]
    assert len(kept) == KEEP
    assert f"{KEY}-0" not in kept
    assert f"{KEY}-{KEEP + 2}" in kept


def test_pipeline_role_runs_concurrent_claims_have_one_winner(engine: Engine, ref: ItemRef) -> None:
    ledger = RoleRunLedger(engine, FakeClock(current=NOW), TTL)
    ledger.claim(ref, "warm-up", "t")  # the row exists: every claimant races on its version
    barrier = threading.Barrier(6)
    results: list[object] = []

    def deliver(token: str) -> None:
        barrier.wait()
        results.append(ledger.claim(ref, KEY, token))

    threads = [threading.Thread(target=deliver, args=(f"d{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [result for result in results if isinstance(result, Claimed)]
    assert len(results) == 6
    assert len(winners) == 1
    assert all(
        isinstance(result, Busy) and result.holder == winners[0].token
        for result in results
        if result is not winners[0]
    )


def test_pipeline_role_runs_keeper_renews_until_the_claim_is_taken_over(
    engine: Engine, ref: ItemRef
) -> None:
    clock = FakeClock(current=NOW)
    ledger = RoleRunLedger(engine, clock, TTL)
    assert ledger.claim(ref, KEY, "runner") == Claimed("runner")
    keeper = ClaimKeeper(ledger, ref, KEY, "runner")
    clock.advance(TTL.total_seconds() - 1)
    assert keeper.beat()
    clock.advance(TTL.total_seconds() - 1)
    assert isinstance(ledger.claim(ref, KEY, "retry"), Busy)  # renewed: still live
    clock.advance(TTL.total_seconds() + 1)
    assert ledger.claim(ref, KEY, "retry") == Claimed("retry")
    assert not keeper.beat()
    assert keeper.lost
