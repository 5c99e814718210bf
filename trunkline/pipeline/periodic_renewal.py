"""A thread that renews something every `period` seconds while a `with` block runs.

Performs no I/O itself; the `renew` callable it is given does (a lease renewal, a claim
renewal). Contract: `PeriodicRenewal(renew, period, name)` used as a context manager starts
one daemon thread named `name` that waits `period` seconds, calls `renew()`, and repeats until
the block exits or `renew()` returns False (what it renews is lost: renewing again cannot bring
it back). Leaving the block stops the thread and waits for it (at most 30 s, a renewal in
flight finishes first). `renew` handles its own errors: an exception it lets out ends the
thread, as a False would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

MIN_PERIOD_SECONDS = 0.05
STOP_JOIN_SECONDS = 30.0


class PeriodicRenewal:
    def __init__(self, renew: Callable[[], bool], period: float, name: str) -> None:
        self.renew = renew
        self.period = max(period, MIN_PERIOD_SECONDS)
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            if not self.renew():
                return

    def __enter__(self) -> PeriodicRenewal:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_JOIN_SECONDS)
