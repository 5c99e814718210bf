"""Crash points on the merge path: where tests kill the bot to prove nothing is lost.

Performs I/O only in `KillingCrashPoints` (it SIGKILLs its own process). Production uses
`NO_CRASH_POINTS` (does nothing). Tests set `TRUNKLINE_TEST_CRASH_AT=name:count` in a worker
process's environment: the `count`-th time that process passes the point `name`, it kills
itself with SIGKILL (no clean-up, no `finally`, exactly like a power cut of the process).
`crash_points_from_env` reads the variable once, at the composition root.

The points (`CrashPoint`):
- `claimed`: an effect job was claimed, nothing performed yet;
- `integration_built`: the integration commit exists (and is pushed), not reported yet;
- `checks_passed`: a step that emitted `FastForwardBase` was committed (the fast-forward is
  persisted in the outbox but not performed);
- `fast_forwarded`: the base ref was moved, `FastForwarded` not reported yet;
- `before_comment`: a comment is about to be posted.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

CRASH_ENV = "TRUNKLINE_TEST_CRASH_AT"


class CrashPoint(StrEnum):
    CLAIMED = "claimed"
    INTEGRATION_BUILT = "integration_built"
    CHECKS_PASSED = "checks_passed"
    FAST_FORWARDED = "fast_forwarded"
    BEFORE_COMMENT = "before_comment"


class CrashPoints(Protocol):
    def hit(self, point: CrashPoint) -> None:
        """Passing `point` (may not return, in tests)."""
        ...


class NoCrashPoints:
    """Production: crash points are no-ops."""

    def hit(self, point: CrashPoint) -> None:
        return None


NO_CRASH_POINTS = NoCrashPoints()


@dataclass
class KillingCrashPoints:
    """SIGKILL this process the `count`-th time `point` is passed."""

    point: CrashPoint
    count: int
    passed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, point: CrashPoint) -> None:
        if point is not self.point:
            return
        with self._lock:
            self.passed += 1
            if self.passed == self.count:
                os.kill(os.getpid(), signal.SIGKILL)


def parse_crash_spec(spec: str) -> KillingCrashPoints:
    """`name:count` (count >= 1; `name` alone means 1) -> crash points; ValueError if bad."""
    name, _, count_text = spec.strip().partition(":")
    try:
        point = CrashPoint(name)
    except ValueError:
        known = ", ".join(point.value for point in CrashPoint)
        raise ValueError(f"{CRASH_ENV}: unknown crash point {name!r}; known: {known}") from None
    count = int(count_text) if count_text else 1
    if count < 1:
        raise ValueError(f"{CRASH_ENV}: count must be >= 1, got {count}")
    return KillingCrashPoints(point, count)


def crash_points_from_env(environ: Mapping[str, str]) -> CrashPoints:
    spec = environ.get(CRASH_ENV, "").strip()
    return parse_crash_spec(spec) if spec else NO_CRASH_POINTS
