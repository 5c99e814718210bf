"""The error hierarchy every part of trunkline raises from.

Pure; performs no I/O. Runners decide what to do with an error by its class alone:
a `RetryableError` may succeed if tried again later (network, rate limit, lock busy),
a `TerminalError` never will (bad input, permission denied, a conflict that needs a human).
Retries, backoff and timeouts live in the runners, never in the code that raises.
"""

from __future__ import annotations


class TrunklineError(Exception):
    """Base class of every error trunkline raises on purpose."""


class RetryableError(TrunklineError):
    """The operation may succeed if tried again later.

    `retry_after` is a hint in seconds (for example from a `retry-after` header); a runner
    waits at least that long before the next attempt.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalError(TrunklineError):
    """Trying again cannot help: the input, the permissions or the world must change first."""


class ConfigurationError(TerminalError):
    """Settings or files the operator gave are missing or invalid."""
