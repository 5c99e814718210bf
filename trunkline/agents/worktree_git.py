"""Git in a work item's worktree, on the host, for the runtime (never for the model).

Performs I/O: runs `git` through the workspace's runner (`trunkline.workspace.gitrunner`),
hardened for checkouts an agent has written into: no global or system config, hooks
disabled, fsmonitor off, no transport protocols, signing off, so nothing the agent wrote
into the worktree can make git execute code. Committing goes through the workspace's one
implementation (`trunkline.workspace.workspace.commit_worktree`) with that hardening; the
author is the workspace `Identity` (from settings). The model never runs git.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from trunkline.workspace.errors import GitCommandError
from trunkline.workspace.gitrunner import run_git
from trunkline.workspace.model import Identity
from trunkline.workspace.workspace import commit_worktree

_SAFE_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgsign=false",
    "-c", "core.fsmonitor=false",
    "-c", "protocol.allow=never",
)  # fmt: skip
_SAFE_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}

Author = Identity  # who the runtime commits as (name and e-mail)

__all__ = [
    "Author",
    "GitCommandError",
    "changed_files",
    "commit_all",
    "diff_since",
    "discard_changes_outside",
    "head_sha",
    "log_since",
]


def _git(worktree: Path, *args: str) -> str:
    return os.fsdecode(run_git(worktree, *_SAFE_CONFIG, *args, env_extra=_SAFE_ENV).stdout)


def head_sha(worktree: Path) -> str:
    return _git(worktree, "rev-parse", "HEAD").strip()


def changed_files(worktree: Path, base: str) -> list[str]:
    out = _git(worktree, "diff", "--name-only", f"{base}..HEAD")
    return [line for line in out.splitlines() if line]


def diff_since(worktree: Path, base: str, cap: int = 200_000) -> str:
    text = _git(worktree, "diff", "--no-ext-diff", "--no-textconv", f"{base}..HEAD")
    return text if len(text) <= cap else text[:cap] + "\n... (diff truncated)"


def log_since(worktree: Path, base: str) -> str:
    return _git(worktree, "log", "--format=%h %an: %s", f"{base}..HEAD")


def commit_all(worktree: Path, message: str, author: Author) -> str | None:
    """Commit every change in the worktree; the new SHA, or None when nothing changed."""
    return commit_worktree(worktree, message, author, git_options=_SAFE_CONFIG, env_extra=_SAFE_ENV)


def discard_changes_outside(worktree: Path, allowed: Callable[[str], bool]) -> list[str]:
    """Undo uncommitted changes to paths `allowed` rejects; the paths undone.

    Commands run in the sandbox can write anywhere in the worktree, so the write scope of
    the file tools alone does not bound what would be committed: this does. A changed file
    that exists at HEAD is restored; a new one is removed (a symlink is removed itself,
    never followed).
    """
    _git(worktree, "add", "--all")
    staged = _git(worktree, "diff", "--cached", "--name-only", "--no-renames", "-z")
    discarded = []
    for path in (p for p in staged.split("\0") if p):
        if allowed(path):
            continue
        if _git(worktree, "ls-tree", "--name-only", "HEAD", "--", path).strip():
            _git(worktree, "restore", "--source=HEAD", "--staged", "--worktree", "--", path)
        else:
            _git(worktree, "rm", "--cached", "--quiet", "--", path)
            target = worktree / path
            if target.is_symlink() or target.is_file():
                target.unlink()
        discarded.append(path)
    return discarded
