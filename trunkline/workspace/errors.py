"""Errors the workspace raises. Pure; performs no I/O.

Messages name the git command and git's own message; they never contain a token, because
tokens never appear in a command line (they travel in one subprocess's environment).
"""

from __future__ import annotations

from trunkline.errors import RetryableError, TerminalError


class GitCommandError(TerminalError):
    """A local git command failed in a way retrying will not fix."""

    def __init__(self, args: tuple[str, ...], status: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} exited {status}: {stderr.strip()}")
        self.git_args = args
        self.status = status
        self.stderr = stderr


class GitTransportError(RetryableError):
    """Talking to the remote failed (network, server error, expired credentials)."""


class PushRejectedError(TerminalError):
    """The remote refused the push, e.g. not a fast-forward or a protected branch.

    Re-read the remote state and decide again; pushing the same thing again cannot help.
    """


class MirrorBusyError(RetryableError):
    """Another worker holds the mirror's lock longer than we were willing to wait."""
