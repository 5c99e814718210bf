"""Frozen snapshots of GitHub objects, and the requests the port accepts.

Pure; performs no I/O. These are what the rest of trunkline sees of GitHub: never PyGithub
objects, never raw JSON. Repositories are named `owner/name`; refs are full names
(`refs/heads/main`); datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Mergeability(StrEnum):
    """GitHub's `mergeable`: true, false, or null (still computing) which is never mergeable."""

    MERGEABLE = "mergeable"
    CONFLICTING = "conflicting"
    UNKNOWN = "unknown"


class Permission(StrEnum):
    """A user's role on a repository, weakest first."""

    NONE = "none"
    READ = "read"
    TRIAGE = "triage"
    WRITE = "write"
    MAINTAIN = "maintain"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Permission).index(self)

    def at_least(self, other: Permission) -> bool:
        return self.rank >= other.rank


class ReviewState(StrEnum):
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    COMMENTED = "COMMENTED"
    DISMISSED = "DISMISSED"
    PENDING = "PENDING"


class ReviewEvent(StrEnum):
    APPROVE = "APPROVE"
    REQUEST_CHANGES = "REQUEST_CHANGES"
    COMMENT = "COMMENT"


class MergeMethod(StrEnum):
    MERGE = "merge"
    SQUASH = "squash"
    REBASE = "rebase"


class CheckStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class CheckConclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    ACTION_REQUIRED = "action_required"
    STALE = "stale"


@dataclass(frozen=True)
class Actor:
    login: str
    is_bot: bool = False


@dataclass(frozen=True)
class Issue:
    repo: str
    number: int
    title: str
    body: str
    state: str
    author: Actor
    labels: tuple[str, ...] = ()
    is_pull_request: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True)
class IssueEvent:
    """One entry of an issue's event log (GitHub's `issues/list-events`): who did what, when.
    `label` is the label's name for `labeled` / `unlabeled` events (None for others)."""

    id: int
    event: str
    actor: Actor
    created_at: datetime | None = None
    label: str | None = None


@dataclass(frozen=True)
class PullRequest:
    repo: str
    number: int
    title: str
    body: str
    state: str
    author: Actor
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str
    head_repo: str | None = None
    labels: tuple[str, ...] = ()
    draft: bool = False
    merged: bool = False
    merge_commit_sha: str | None = None
    mergeable: Mergeability = Mergeability.UNKNOWN
    mergeable_state: str = "unknown"
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PullFile:
    path: str
    status: str
    additions: int
    deletions: int
    previous_path: str | None = None


@dataclass(frozen=True)
class Review:
    id: int
    author: Actor
    state: ReviewState
    commit_sha: str | None
    body: str = ""
    submitted_at: datetime | None = None


@dataclass(frozen=True)
class Commit:
    """A commit as the commits APIs list it; `author` / `committer` are the GitHub accounts
    linked to the git author and committer (None when GitHub links none, e.g. an unknown
    e-mail address)."""

    sha: str
    parents: tuple[str, ...]
    message: str
    author: Actor | None = None
    committer: Actor | None = None


@dataclass(frozen=True)
class ReviewComment:
    """A line comment on a PR's diff, as GitHub lists it (`review_id`: the review it is part
    of; `line`: None when GitHub no longer places it on the diff)."""

    id: int
    review_id: int | None
    author: Actor
    path: str
    line: int | None
    body: str


@dataclass(frozen=True)
class ReviewLineComment:
    """A line comment of a review: `line` of `path` on the right (new) side of the diff."""

    path: str
    line: int
    body: str


@dataclass(frozen=True)
class CheckRun:
    id: int
    name: str
    head_sha: str
    status: CheckStatus
    conclusion: CheckConclusion | None = None
    external_id: str | None = None
    details_url: str | None = None
    app_slug: str | None = None
    title: str | None = None
    summary: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class CommitStatus:
    context: str
    state: str
    description: str | None = None
    target_url: str | None = None


@dataclass(frozen=True)
class CombinedStatus:
    sha: str
    state: str
    statuses: tuple[CommitStatus, ...] = ()


@dataclass(frozen=True)
class FileContent:
    path: str
    ref: str
    sha: str
    text: str


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    author: Actor
    html_url: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Ref:
    ref: str
    sha: str


@dataclass(frozen=True)
class MergeResult:
    merged: bool
    sha: str | None
    message: str = ""


@dataclass(frozen=True)
class CheckRunOutput:
    title: str
    summary: str
    text: str | None = None


@dataclass(frozen=True)
class CheckRunRequest:
    """What to create; `conclusion` requires `status=completed` (GitHub enforces it too)."""

    name: str
    head_sha: str
    status: CheckStatus = CheckStatus.QUEUED
    conclusion: CheckConclusion | None = None
    output: CheckRunOutput | None = None
    details_url: str | None = None
    external_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class CheckRunUpdate:
    """Fields to change on an existing check run; None leaves a field as it is."""

    status: CheckStatus | None = None
    conclusion: CheckConclusion | None = None
    output: CheckRunOutput | None = None
    details_url: str | None = None
    completed_at: datetime | None = None


def full_ref(ref: str) -> str:
    """`heads/main` or `refs/heads/main` -> `refs/heads/main`."""
    ref = ref.strip("/")
    return ref if ref.startswith("refs/") else f"refs/{ref}"


def split_repo(repo: str) -> tuple[str, str]:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"repository must look like owner/name, got {repo!r}")
    return owner, name
