"""Retry decisions for failed jobs: exponential backoff with jitter, dead-letter after a cap.

Pure; performs no I/O. The runner supplies the random fraction, so tests are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

from trunkline.errors import RetryableError, TerminalError


@dataclass(frozen=True)
class BackoffPolicy:
    """delay(n) = min(cap, base * factor**(n-1)), then `jitter` of it is randomised.

    With jitter 0.5 a delay lies in [raw/2, raw]: retries of many jobs that failed together
    spread out instead of arriving as a thundering herd.
    """

    base_seconds: float = 2.0
    factor: float = 2.0
    cap_seconds: float = 600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < 0 or self.factor < 1:
            raise ValueError("backoff needs base >= 0, cap >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")


def retry_delay(
    policy: BackoffPolicy,
    attempt: int,
    random_fraction: float,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    `random_fraction` is uniform in [0, 1). A server's `retry_after` hint is a lower bound.
    """
    if attempt < 1:
        raise ValueError("attempts are counted from 1")
    exponent = min(attempt - 1, 64)
    raw = min(policy.cap_seconds, policy.base_seconds * policy.factor**exponent)
    delay = raw * (1 - policy.jitter) + raw * policy.jitter * random_fraction
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay


@dataclass(frozen=True)
class FailureDecision:
    """What to do with a job whose attempt failed: retry after `delay` seconds, or dead-letter."""

    dead: bool
    delay: float
    reason: str


def decide_failure(
    policy: BackoffPolicy,
    error: BaseException,
    attempts: int,
    max_attempts: int,
    random_fraction: float,
) -> FailureDecision:
    """TerminalError -> dead now; otherwise retry with backoff until `max_attempts` is used."""
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, TerminalError):
        return FailureDecision(dead=True, delay=0.0, reason=reason)
    if attempts >= max_attempts:
        return FailureDecision(
            dead=True, delay=0.0, reason=f"{reason} (gave up after {attempts} attempts)"
        )
    retry_after = error.retry_after if isinstance(error, RetryableError) else None
    delay = retry_delay(policy, attempts, random_fraction, retry_after)
    return FailureDecision(dead=False, delay=delay, reason=reason)
