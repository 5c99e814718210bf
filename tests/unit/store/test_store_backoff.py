"""Retry decisions: exponential backoff with jitter, caps, dead-lettering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.errors import RetryableError, TerminalError
from trunkline.store.backoff import BackoffPolicy, decide_failure, retry_delay

POLICY = BackoffPolicy(base_seconds=2.0, factor=2.0, cap_seconds=60.0, jitter=0.5)


@pytest.mark.parametrize(
    ("attempt", "fraction", "expected"),
    [
        (1, 0.0, 1.0),
        (1, 1.0, 2.0),
        (2, 0.0, 2.0),
        (3, 0.5, 6.0),
        (5, 1.0, 32.0),
        (6, 1.0, 60.0),  # capped
        (50, 0.0, 30.0),
        (10_000, 1.0, 60.0),
    ],
)
def test_retry_delay_table(attempt: int, fraction: float, expected: float) -> None:
    assert retry_delay(POLICY, attempt, fraction) == pytest.approx(expected)


@given(attempt=st.integers(1, 500), fraction=st.floats(0, 1, exclude_max=True))
def test_delay_stays_within_the_jitter_band_and_the_cap(attempt: int, fraction: float) -> None:
    raw = min(POLICY.cap_seconds, POLICY.base_seconds * POLICY.factor ** min(attempt - 1, 64))
    delay = retry_delay(POLICY, attempt, fraction)
    assert raw * (1 - POLICY.jitter) <= delay <= raw
    assert delay <= POLICY.cap_seconds


@given(attempt=st.integers(1, 40))
def test_the_upper_bound_never_shrinks_with_more_attempts(attempt: int) -> None:
    assert retry_delay(POLICY, attempt + 1, 0.999) >= retry_delay(POLICY, attempt, 0.999)


def test_retry_after_hint_is_a_lower_bound() -> None:
    assert retry_delay(POLICY, 1, 0.0, retry_after=45.0) == 45.0
    assert retry_delay(POLICY, 6, 1.0, retry_after=1.0) == 60.0


def test_invalid_policies_and_attempts_are_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="factor"):
        BackoffPolicy(factor=0.5)
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(POLICY, 0, 0.5)


@pytest.mark.parametrize(
    ("error", "attempts", "max_attempts", "dead", "delay"),
    [
        (TerminalError("bad input"), 1, 5, True, 0.0),
        (RetryableError("502"), 1, 5, False, 1.0),
        (RetryableError("rate limited", retry_after=120.0), 1, 5, False, 120.0),
        (RuntimeError("surprise"), 2, 5, False, 2.0),
        (RuntimeError("surprise"), 5, 5, True, 0.0),
        (RetryableError("502"), 5, 5, True, 0.0),
    ],
)
def test_decide_failure(
    error: Exception, attempts: int, max_attempts: int, dead: bool, delay: float
) -> None:
    decision = decide_failure(POLICY, error, attempts, max_attempts, random_fraction=0.0)
    assert decision.dead is dead
    assert decision.delay == pytest.approx(delay)
    assert type(error).__name__ in decision.reason
    if dead and not isinstance(error, TerminalError):
        assert f"after {attempts} attempts" in decision.reason
