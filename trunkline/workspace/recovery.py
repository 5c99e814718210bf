"""Crash recovery and worktree bookkeeping for one mirror; callers hold the mirror's lock.

Performs I/O (git subprocesses, file removal). A process killed mid-operation can leave:
git lock files (`index.lock`, `HEAD.lock`, `refs/**.lock`, `packed-refs.lock`, a worktree's
`locked` marker written while `git worktree add` runs), a worktree directory that git never
registered (or whose registration points nowhere), a temporary integration worktree, a
half-made mirror (`*.git.tmp-*`) and local work branches nobody has checked out. Lock files
are removed only when older than the recovering process, so a live git run elsewhere keeps
its locks.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from trunkline.workspace.gitrunner import run_git

INTEGRATION_PREFIX = ".integration-"
WORK_BRANCH_PREFIX = "refs/heads/trunkline/issue-"
_ITEM_DIR = re.compile(r"^issue-(\d+)$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryReport:
    mirror: Path
    removed_lock_files: tuple[Path, ...] = ()
    removed_worktrees: tuple[Path, ...] = ()
    removed_directories: tuple[Path, ...] = ()
    deleted_branches: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (
            self.removed_lock_files
            or self.removed_worktrees
            or self.removed_directories
            or self.deleted_branches
        )


def registered_worktrees(mirror: Path) -> dict[Path, str | None]:
    """Linked worktrees git knows of: path -> checked-out branch (short name) or None."""
    raw = run_git(mirror, "worktree", "list", "--porcelain", "-z").stdout
    result: dict[Path, str | None] = {}
    current: Path | None = None
    for field in os.fsdecode(raw).split("\0"):
        if field.startswith("worktree "):
            current = Path(field[len("worktree ") :])
            result[current] = None
        elif field.startswith("branch ") and current is not None:
            result[current] = field[len("branch ") :].removeprefix("refs/heads/")
        elif field == "bare" and current is not None:
            result.pop(current, None)
            current = None
    result.pop(mirror, None)
    return result


def remove_worktree_locked(mirror: Path, path: Path) -> None:
    """Unregister and delete one worktree, whatever state it is in."""
    run_git(mirror, "worktree", "remove", "--force", "--force", str(path), check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    run_git(mirror, "worktree", "prune")


def _head_resolves(worktree: Path) -> bool:
    """Whether the worktree's HEAD names a commit the mirror has: a process killed while the
    worktree was being made can leave a HEAD naming nothing, and every later fetch of the
    mirror then fails with "bad object worktrees/.../HEAD"."""
    result = run_git(worktree, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    return result.status == 0


def stale_lock_files(git_dir: Path, older_than: float) -> list[Path]:
    """Git lock files and `worktree add` markers under `git_dir` older than `older_than`."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(git_dir):
        if directory == str(git_dir / "objects"):
            subdirs[:] = [name for name in subdirs if name in ("info", "pack")]
        here = Path(directory)
        for name in files:
            is_marker = name == "locked" and here.parent.name == "worktrees"
            if not (name.endswith(".lock") or is_marker):
                continue
            candidate = here / name
            try:
                if candidate.lstat().st_mtime < older_than:
                    found.append(candidate)
            except FileNotFoundError:
                continue
    return sorted(found)


def recover_locked(
    mirror: Path,
    worktrees_root: Path,
    started_at: float,
    active_items: Collection[int] | None,
) -> RecoveryReport:
    removed_dirs: list[Path] = []
    for leftover in sorted(mirror.parent.glob(f"{mirror.name}.tmp-*")):
        shutil.rmtree(leftover, ignore_errors=True)
        removed_dirs.append(leftover)
    if not (mirror / "HEAD").is_file():
        if mirror.exists():
            shutil.rmtree(mirror, ignore_errors=True)
            removed_dirs.append(mirror)
        if worktrees_root.exists():
            shutil.rmtree(worktrees_root, ignore_errors=True)
            removed_dirs.append(worktrees_root)
        return RecoveryReport(mirror, removed_directories=tuple(removed_dirs))

    locks = stale_lock_files(mirror, started_at)
    for lock in locks:
        lock.unlink(missing_ok=True)
    run_git(mirror, "worktree", "prune")

    removed_worktrees: list[Path] = []
    kept: dict[Path, str | None] = {}
    for path, branch in registered_worktrees(mirror).items():
        if path.parent != worktrees_root:
            kept[path] = branch  # not ours to judge
            continue
        match = _ITEM_DIR.match(path.name)
        healthy = match is not None and (path / ".git").is_file() and _head_resolves(path)
        wanted = active_items is None or (match is not None and int(match[1]) in active_items)
        if healthy and wanted:
            kept[path] = branch
        else:
            remove_worktree_locked(mirror, path)
            removed_worktrees.append(path)

    if worktrees_root.is_dir():
        for child in sorted(worktrees_root.iterdir()):
            if child not in kept and child not in removed_worktrees:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
                removed_dirs.append(child)
    run_git(mirror, "worktree", "prune")

    checked_out = {branch for branch in kept.values() if branch}
    deleted: list[str] = []
    refs = run_git(mirror, "for-each-ref", "--format=%(refname)", "refs/heads/trunkline/")
    for ref in refs.text.splitlines():
        if not ref.startswith(WORK_BRANCH_PREFIX):
            continue
        short = ref.removeprefix("refs/heads/")
        if short not in checked_out:
            run_git(mirror, "update-ref", "-d", ref)
            deleted.append(short)
    report = RecoveryReport(
        mirror,
        removed_lock_files=tuple(locks),
        removed_worktrees=tuple(removed_worktrees),
        removed_directories=tuple(removed_dirs),
        deleted_branches=tuple(deleted),
    )
    if not report.clean:
        log.warning(
            "workspace recovery cleaned up after a previous process",
            extra={
                "mirror": str(mirror),
                "lock_files": [str(path) for path in report.removed_lock_files],
                "worktrees": [str(path) for path in report.removed_worktrees],
                "directories": [str(path) for path in report.removed_directories],
                "branches": list(report.deleted_branches),
            },
        )
    return report
