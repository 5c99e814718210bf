"""What to do with a rate-limited response: wait how long, or give up. Pure; no I/O.

GitHub's rules (docs "Rate limits for the REST API", "Best practices"):
1. a `retry-after` header (primary limits): wait that many seconds;
2. else `x-ratelimit-remaining: 0`: wait until `x-ratelimit-reset` (epoch seconds);
3. a secondary limit (403/429 whose message says so, or a bare 429): wait at least a
   minute (and at least any retry-after), doubling per attempt; give up after a bound.
The adapter performs the waiting through the injected `Clock`; giving up raises
`RateLimitedError` (retryable) carrying the wait the caller should honour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_SECONDARY_HINTS = ("secondary rate limit", "abuse detection", "abuse rate limit")
_PRIMARY_HINTS = ("api rate limit exceeded", "rate limit exceeded")


@dataclass(frozen=True)
class RateLimitPolicy:
    secondary_first_wait: float = 60.0
    backoff_factor: float = 2.0
    max_attempts: int = 4
    max_single_wait: float = 900.0
    reset_slack: float = 1.0


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    retry_after: float
    reason: str


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def is_rate_limited(status: int, headers: Mapping[str, str], message: str) -> bool:
    """Whether a response is a (primary or secondary) rate limit rather than a real refusal."""
    if status == 429:
        return True
    if status != 403:
        return False
    lowered = message.lower()
    if any(hint in lowered for hint in _SECONDARY_HINTS + _PRIMARY_HINTS):
        return True
    return (
        _header(headers, "retry-after") is not None
        or _header(headers, "x-ratelimit-remaining") == "0"
    )


def is_secondary(status: int, headers: Mapping[str, str], message: str) -> bool:
    """A secondary ("abuse") limit: said so in the message, or a bare 429 with no primary
    limit headers."""
    lowered = message.lower()
    if any(hint in lowered for hint in _SECONDARY_HINTS):
        return True
    primary = any(hint in lowered for hint in _PRIMARY_HINTS)
    return (
        status == 429
        and not primary
        and _header(headers, "retry-after") is None
        and _header(headers, "x-ratelimit-remaining") != "0"
    )


def decide(
    status: int,
    headers: Mapping[str, str],
    message: str,
    attempt: int,
    now_epoch: float,
    policy: RateLimitPolicy,
) -> Wait | GiveUp | None:
    """None if this is not a rate limit; else how long to wait before attempt `attempt + 1`
    (`attempt` counts rate-limited responses so far, from 0), or give up."""
    if not is_rate_limited(status, headers, message):
        return None
    retry_after = _number(_header(headers, "retry-after"))
    remaining = _header(headers, "x-ratelimit-remaining")
    reset = _number(_header(headers, "x-ratelimit-reset"))
    backoff = policy.secondary_first_wait * policy.backoff_factor**attempt
    if is_secondary(status, headers, message):
        # Never sooner than retry-after, and never sooner than the minute-long backoff.
        wait, reason = max(retry_after or 0.0, backoff), "secondary limit backoff"
    elif retry_after is not None:
        wait, reason = max(retry_after, 0.0), "retry-after"
    elif remaining == "0" and reset is not None:
        wait, reason = max(reset - now_epoch, 0.0) + policy.reset_slack, "primary limit reset"
    else:
        wait, reason = backoff, "rate limit backoff"
    if attempt >= policy.max_attempts or wait > policy.max_single_wait:
        return GiveUp(wait, reason)
    return Wait(wait, reason)


def wait_before_next_request(
    headers: Mapping[str, str], now_epoch: float, policy: RateLimitPolicy
) -> float:
    """After a successful response: seconds to wait before the next request (0 if none).

    When `x-ratelimit-remaining` is 0 the next request would be refused until the reset.
    """
    if _header(headers, "x-ratelimit-remaining") != "0":
        return 0.0
    reset = _number(_header(headers, "x-ratelimit-reset"))
    if reset is None:
        return 0.0
    return max(reset - now_epoch, 0.0) + policy.reset_slack
