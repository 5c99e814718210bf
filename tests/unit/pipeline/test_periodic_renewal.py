"""PeriodicRenewal: renews from a thread until the block exits or a renewal is refused; a
renewal that raises is retried, never the end of the renewals."""

from __future__ import annotations

import threading

import pytest

from trunkline.pipeline.periodic_renewal import MIN_PERIOD_SECONDS, PeriodicRenewal

WAIT = 10.0  # generous: these tests wait for events, they never time anything


def is_running(renewal: PeriodicRenewal) -> bool:
    return renewal.running  # a call: the type checker does not narrow it between asserts


class RecordingRenewal:
    """Counts renewals; raises for the first `raise_first` calls; refuses from call
    `refuse_at` on; sets `reached` once `signal_at` calls were made."""

    def __init__(
        self, *, refuse_at: int | None = None, signal_at: int = 1, raise_first: int = 0
    ) -> None:
        self.calls = 0
        self.refuse_at = refuse_at
        self.signal_at = signal_at
        self.raise_first = raise_first
        self.reached = threading.Event()
        self.threads: set[str] = set()

    def __call__(self) -> bool:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls >= self.signal_at:
            self.reached.set()
        if self.calls <= self.raise_first:
            raise ConnectionError("database unreachable")
        return self.refuse_at is None or self.calls < self.refuse_at


def test_renews_repeatedly_from_its_named_thread_and_stops_with_the_block() -> None:
    renew = RecordingRenewal(signal_at=3)
    with PeriodicRenewal(renew, 0.01, "renewal-under-test") as renewal:
        assert renew.reached.wait(WAIT)
        assert is_running(renewal)
    assert not is_running(renewal)
    assert renew.calls >= 3
    assert renew.threads == {"renewal-under-test"}


def test_a_refused_renewal_ends_the_thread_while_the_block_still_runs() -> None:
    renew = RecordingRenewal(refuse_at=2, signal_at=2)
    with PeriodicRenewal(renew, 0.01, "refused") as renewal:
        assert renew.reached.wait(WAIT)
        assert renewal._thread is not None
        renewal._thread.join(WAIT)
        assert not is_running(renewal)
        assert renew.calls == 2  # never renewed after the refusal


def test_a_renewal_that_raises_is_retried_the_next_period() -> None:
    renew = RecordingRenewal(raise_first=2, signal_at=4)
    with PeriodicRenewal(renew, 0.01, "flaky-database") as renewal:
        assert renew.reached.wait(WAIT)
        assert is_running(renewal)  # two errors did not end the renewals
    assert renewal.failures == 2
    assert not is_running(renewal)


def test_leaving_the_block_stops_a_thread_waiting_out_a_long_period() -> None:
    renew = RecordingRenewal()
    with PeriodicRenewal(renew, 3600.0, "slow") as renewal:
        assert is_running(renewal)
    assert not is_running(renewal)  # stopped by the block's exit, not by a 30 s join timeout
    assert renew.calls == 0


def test_the_period_has_a_floor_and_an_instance_runs_one_block() -> None:
    renew = RecordingRenewal()
    assert PeriodicRenewal(renew, 0.0, "floor").period == MIN_PERIOD_SECONDS
    renewal = PeriodicRenewal(renew, 3600.0, "once")
    with renewal, pytest.raises(RuntimeError, match="one block"):
        renewal.__enter__()
