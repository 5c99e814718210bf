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
from trunkline.pipeline.model import Spend
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


def test_pipeline_role_runs_unfinished_runs_leave_their_spend_to_the_next_claim(
    engine: Engine, ref: ItemRef
) -> None:
    clock = FakeClock(current=NOW)
    ledger = RoleRunLedger(engine, clock, TTL)
    assert ledger.claim(ref, KEY, "first") == Claimed("first")
    # before its second call: 100 tokens / $0.10 spent, the call can cost 900 / $0.90
    assert ledger.note(ref, KEY, "first", Spend(100, Decimal("0.10")), Spend(900, Decimal("0.9")))
    assert not ledger.note(ref, KEY, "other", Spend(5, Decimal(0)), Spend())  # not the holder
    clock.advance(TTL.total_seconds() - 1)
    assert isinstance(ledger.claim(ref, KEY, "second"), Busy)
    clock.advance(TTL.total_seconds() + 1)
    # its replica died mid-call: the call counts at the most it could have cost
    assert ledger.claim(ref, KEY, "second") == Claimed("second", Spend(1000, Decimal("1.0")))
    assert not ledger.note(ref, KEY, "first", Spend(1, Decimal(0)), Spend())  # must not call
    # the second run fails before any call: released, what it carried is kept
    ledger.release(ref, KEY, "second")
    assert ledger.claim(ref, KEY, "third") == Claimed("third", Spend(1000, Decimal("1.0")))
    # the third calls once (50 tokens, carried included in what it notes), then raises
    assert ledger.note(ref, KEY, "third", Spend(1050, Decimal("1.05")), Spend(800, Decimal("0.8")))
    ledger.release(ref, KEY, "third")
    fourth = ledger.claim(ref, KEY, "fourth")
    assert fourth == Claimed("fourth", Spend(1850, Decimal("1.85")))
    # a recorded outcome ends the carrying: its event reports the run's spend
    assert ledger.record(ref, KEY, "fourth", RoleOutcome(event={"type": "done"}, tokens=1900))
    ledger.forget(ref, KEY)
    assert ledger.claim(ref, KEY, "fifth") == Claimed("fifth")
    # other commands carry nothing of this one's
    assert ledger.claim(ref, KEY + "-other", "sixth") == Claimed("sixth")


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
