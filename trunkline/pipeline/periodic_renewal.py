"""A thread that renews something every `period` seconds while a `with` block runs.

Performs no I/O itself; the `renew` callable it is given does (a lease renewal, a claim
renewal). Contract: `PeriodicRenewal(renew, period, name)` used as a context manager starts
one daemon thread named `name` that waits `period` seconds (at least `MIN_PERIOD_SECONDS`),
calls `renew()`, and repeats until the block exits or `renew()` returns False (what it renews
is lost: renewing again cannot bring it back). An exception out of `renew()` is a failed
attempt, not a loss: it is logged (type and message only) and the next period tries again, so
an unexpected database error cannot silently end the renewals while the work goes on. Leaving
the block stops the thread and waits for it (at most `STOP_JOIN_SECONDS`: a renewal in flight
finishes first). One instance runs one block: entering it again is a `RuntimeError`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

MIN_PERIOD_SECONDS = 0.05
STOP_JOIN_SECONDS = 30.0


class PeriodicRenewal:
    def __init__(self, renew: Callable[[], bool], period: float, name: str) -> None:
        self.renew = renew
        self.period = max(period, MIN_PERIOD_SECONDS)
        self.name = name
        self.failures = 0  # renewals that raised (each retried the next period)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                if not self.renew():
                    return
            except Exception as error:
                self.failures += 1
                log.warning(
                    "renewal failed; will retry",
                    extra={"renewal": self.name, "error": f"{type(error).__name__}: {error}"[:300]},
                )

    def __enter__(self) -> PeriodicRenewal:
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: a PeriodicRenewal runs one block only")
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
