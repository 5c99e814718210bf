"""Git in a work item's worktree, on the host, for the runtime (never for the model).

Performs I/O: runs `git` as a subprocess with a minimal environment, no global or system
config, hooks disabled and signing off, so nothing the agent wrote into the worktree can
make git execute code. The model never runs git; the runtime commits on its behalf with
the author from settings.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trunkline.errors import TerminalError

_SAFE_CONFIG = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "commit.gpgsign=false",
    "-c", "core.fsmonitor=false",
    "-c", "protocol.allow=never",
)  # fmt: skip


class GitCommandError(TerminalError):
    """A git command in the worktree failed."""


@dataclass(frozen=True)
class Author:
    name: str
    email: str


def _git(worktree: Path, *args: str, author: Author | None = None) -> str:
    with tempfile.TemporaryDirectory(prefix="trunkline-git-") as home:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "LANG": "C.UTF-8",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
        }
        if author is not None:
            env |= {
                "GIT_AUTHOR_NAME": author.name,
                "GIT_AUTHOR_EMAIL": author.email,
                "GIT_COMMITTER_NAME": author.name,
                "GIT_COMMITTER_EMAIL": author.email,
            }
        done = subprocess.run(
            ["git", *_SAFE_CONFIG, *args],
            cwd=worktree,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if done.returncode != 0:
        raise GitCommandError(f"git {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


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
    _git(worktree, "add", "--all")
    if not _git(worktree, "status", "--porcelain").strip():
        return None
    _git(worktree, "commit", "--no-verify", "--quiet", "-m", message, author=author)
    return head_sha(worktree)


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
