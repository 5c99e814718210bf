"""PeriodicRenewal: renews from a thread until the block exits or a renewal is refused."""

from __future__ import annotations

import threading

from trunkline.pipeline.periodic_renewal import MIN_PERIOD_SECONDS, PeriodicRenewal

WAIT = 10.0  # generous: these tests wait for events, they never time anything


class RecordingRenewal:
    """Counts renewals; refuses from call `refuse_at` on; signals after `signal_at` calls."""

    def __init__(self, refuse_at: int | None = None, signal_at: int = 1) -> None:
        self.calls = 0
        self.refuse_at = refuse_at
        self.signal_at = signal_at
        self.reached = threading.Event()
        self.threads: set[str] = set()

    def __call__(self) -> bool:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls >= self.signal_at:
            self.reached.set()
        return self.refuse_at is None or self.calls < self.refuse_at


def test_renews_repeatedly_from_a_named_thread_until_the_block_exits() -> None:
    renew = RecordingRenewal(signal_at=3)
    with PeriodicRenewal(renew, 0.01, "renewal-under-test") as renewal:
        assert renew.reached.wait(WAIT)
    assert renewal._thread is not None
    assert not renewal._thread.is_alive()
    calls = renew.calls
    assert calls >= 3
    assert renew.threads == {"renewal-under-test"}
    threading.Event().wait(5 * MIN_PERIOD_SECONDS)
    assert renew.calls == calls  # nothing renews after the block


def test_a_refused_renewal_ends_the_thread_while_the_block_still_runs() -> None:
    renew = RecordingRenewal(refuse_at=2, signal_at=2)
    with PeriodicRenewal(renew, 0.01, "refused") as renewal:
        assert renew.reached.wait(WAIT)
        assert renewal._thread is not None
        renewal._thread.join(WAIT)
        assert not renewal._thread.is_alive()
        assert renew.calls == 2  # never renewed after the refusal


def test_the_period_has_a_floor_and_leaving_at_once_renews_nothing() -> None:
    renew = RecordingRenewal()
    renewal = PeriodicRenewal(renew, 0.0, "floor")
    assert renewal.period == MIN_PERIOD_SECONDS
    with PeriodicRenewal(renew, 60.0, "slow"):
        pass
    assert renew.calls == 0
