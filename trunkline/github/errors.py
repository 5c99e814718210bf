"""Typed errors of the GitHub port. Pure; performs no I/O.

Every adapter (the PyGithub one and the fake) raises these and nothing else, so callers
decide by class: `RetryableError` subclasses may succeed later, `TerminalError` ones need
the world to change (re-read state and decide again; never retry blindly).
"""

from __future__ import annotations

from trunkline.errors import RetryableError, TerminalError


class GitHubError(TerminalError):
    """A request GitHub refused for a reason retrying cannot fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(GitHubError):
    """401 even with a freshly minted installation token (wrong App id, key or installation)."""


class PermissionDeniedError(GitHubError):
    """403 that is not a rate limit: the App lacks a permission or the branch is protected."""


class NotFoundError(GitHubError):
    """404: the object does not exist, or the installation cannot see it."""


class ValidationFailedError(GitHubError):
    """422 (or another 4xx) for a reason not covered by a more specific error."""


class ConflictError(GitHubError):
    """409 outside of merging (e.g. the repository is empty)."""


class StaleMergeShaError(ConflictError):
    """409 on merge: the PR head is no longer the `sha` we decided on. Re-read, re-decide."""


class NotMergeableError(GitHubError):
    """405 on merge: conflicts, failing required checks or branch protection."""


class NonFastForwardError(ValidationFailedError):
    """422 on a ref update with force=false: the new SHA does not descend from the old."""


class RefExistsError(ValidationFailedError):
    """422 on ref creation: the ref already exists."""


class RateLimitedError(RetryableError):
    """Rate limited longer than the adapter is willing to wait; `retry_after` says how long."""


class GitHubUnavailableError(RetryableError):
    """5xx, a timeout or a broken connection."""
