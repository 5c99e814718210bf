"""Data the workspace hands out: frozen snapshots of mirrors, worktrees, diffs and integrations.

Pure; performs no I/O. Paths inside a repository are `str` (decoded with `surrogateescape`,
so names that are not UTF-8 survive a round trip); filesystem locations are `Path`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

_REPO_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Identity:
    """Who commits: the App's bot identity (name and e-mail) as git records it."""

    name: str
    email: str


@dataclass(frozen=True)
class RepositorySpec:
    """One repository the workspace mirrors: `owner/name` and its clone URL.

    The URL must carry no credentials: tokens are passed per command, never stored.
    """

    full_name: str
    url: str

    def __post_init__(self) -> None:
        if not _REPO_NAME.match(self.full_name) or ".." in self.full_name:
            raise ValueError(f"repository name must look like owner/name, got {self.full_name!r}")
        parts = urlsplit(self.url)
        if parts.username is not None or parts.password is not None:
            raise ValueError("repository URL must not contain credentials; pass a token instead")

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


def slugify(title: str, *, max_length: int = 40) -> str:
    """A branch-safe slug of an issue title: lowercase ASCII words joined by '-'."""
    slug = _SLUG_CHARS.sub("-", title.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    return slug or "work"


def work_branch(item_number: int, slug: str) -> str:
    """The branch of a work item: `trunkline/issue-<n>-<slug>`."""
    if item_number <= 0:
        raise ValueError(f"work item numbers are positive, got {item_number}")
    return f"trunkline/issue-{item_number}-{slugify(slug)}"


@dataclass(frozen=True)
class Worktree:
    """A checked-out worktree of one work item, on its own branch."""

    repository: str
    item_number: int
    branch: str
    path: Path
    base_sha: str


class MergeMethod(StrEnum):
    MERGE = "merge"
    SQUASH = "squash"
    REBASE = "rebase"


@dataclass(frozen=True)
class IntegrationCommit:
    """A clean integration of `head_sha` onto `base_sha`; `sha` exists only in the mirror."""

    method: MergeMethod
    base_sha: str
    head_sha: str
    sha: str
    tree_sha: str


@dataclass(frozen=True)
class IntegrationConflict:
    """The integration would conflict; nothing was left behind in any repository state.

    `paths` are the conflicting paths, sorted; for a rebase `failed_commit` is the PR commit
    whose replay conflicted.
    """

    method: MergeMethod
    base_sha: str
    head_sha: str
    paths: tuple[str, ...]
    failed_commit: str | None = None


IntegrationResult = IntegrationCommit | IntegrationConflict


class ChangeKind(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"
    RENAMED = "renamed"
    COPIED = "copied"
    TYPE_CHANGED = "type_changed"


@dataclass(frozen=True)
class FileChange:
    """One path's change. `added_lines`/`deleted_lines` are None for binary files."""

    path: str
    kind: ChangeKind
    old_path: str | None = None
    added_lines: int | None = 0
    deleted_lines: int | None = 0
    similarity: int | None = None

    @property
    def binary(self) -> bool:
        return self.added_lines is None or self.deleted_lines is None

    @property
    def lines_changed(self) -> int:
        return (self.added_lines or 0) + (self.deleted_lines or 0)


@dataclass(frozen=True)
class DiffDescription:
    """What changed between two commits, for the policy engine (scope and risk)."""

    base_sha: str
    head_sha: str
    files: tuple[FileChange, ...]

    def _paths(self, kind: ChangeKind) -> tuple[str, ...]:
        return tuple(change.path for change in self.files if change.kind is kind)

    @property
    def added(self) -> tuple[str, ...]:
        return self._paths(ChangeKind.ADDED)

    @property
    def modified(self) -> tuple[str, ...]:
        return self._paths(ChangeKind.MODIFIED) + self._paths(ChangeKind.TYPE_CHANGED)

    @property
    def deleted(self) -> tuple[str, ...]:
        return self._paths(ChangeKind.DELETED)

    @property
    def renamed(self) -> tuple[tuple[str, str], ...]:
        """(old path, new path) pairs."""
        return tuple(
            (change.old_path or change.path, change.path)
            for change in self.files
            if change.kind is ChangeKind.RENAMED
        )

    @property
    def touched_paths(self) -> tuple[str, ...]:
        """Every path the change touches, old names of renames included, sorted."""
        paths = {change.path for change in self.files}
        paths.update(change.old_path for change in self.files if change.old_path)
        return tuple(sorted(paths))

    @property
    def lines_added(self) -> int:
        return sum(change.added_lines or 0 for change in self.files)

    @property
    def lines_deleted(self) -> int:
        return sum(change.deleted_lines or 0 for change in self.files)

    @property
    def lines_changed(self) -> int:
        return self.lines_added + self.lines_deleted
