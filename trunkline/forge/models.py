"""The forge's records: plain mutable dataclasses of primitives, owned by `ForgeState`.

Pure; performs no I/O. Every record is flat (ids instead of nested objects) so the whole
state serialises to one JSON snapshot with `dataclasses.asdict` and loads back with
`Record(**fields)`. Timestamps are POSIX seconds (floats, UTC); renderers turn them into
GitHub's ISO 8601 `Z` strings. Records are mutable because they are the forge's own storage
rows, changed only under the state lock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Permission(enum.IntEnum):
    """Repository roles, ordered so that `>=` means "at least"."""

    NONE = 0
    READ = 1
    TRIAGE = 2
    WRITE = 3
    MAINTAIN = 4
    ADMIN = 5

    @property
    def github_name(self) -> str:
        """The role name GitHub's collaborator APIs use (`role_name`)."""
        return {1: "read", 2: "triage", 3: "write", 4: "maintain", 5: "admin"}.get(
            int(self), "none"
        )

    @property
    def legacy_name(self) -> str:
        """The legacy `permission` value: admin, write, read or none."""
        if self >= Permission.MAINTAIN:
            return "admin" if self is Permission.ADMIN else "write"
        if self >= Permission.WRITE:
            return "write"
        return "read" if self >= Permission.READ else "none"

    @classmethod
    def parse(cls, name: str) -> Permission:
        aliases = {"pull": "read", "push": "write", "triage": "triage", "maintain": "maintain"}
        key = aliases.get(name.lower(), name.lower())
        for member in cls:
            if member.github_name == key:
                return member
        raise ValueError(f"unknown permission {name!r}: use read/triage/write/maintain/admin")


@dataclass
class User:
    id: int
    login: str
    type: str = "User"  # "User", "Bot" or "Organization"
    name: str | None = None
    email: str | None = None
    site_admin: bool = False
    created_at: float = 0.0


@dataclass
class App:
    id: int
    slug: str
    name: str
    owner_id: int
    bot_user_id: int
    public_key_pem: str
    created_at: float
    webhook_url: str | None = None
    webhook_secret: str | None = None


@dataclass
class Installation:
    id: int
    app_id: int
    account_id: int
    repository_ids: list[int] = field(default_factory=list)
    created_at: float = 0.0


@dataclass
class Token:
    """A bearer token: an installation token (expires) or a user's personal token."""

    token: str
    installation_id: int | None = None
    user_id: int | None = None
    expires_at: float | None = None


@dataclass
class CiConfig:
    command: str = "python -m pytest -q"
    branches: list[str] = field(default_factory=lambda: ["*"])
    check_name: str = "ci"
    duration_seconds: float = 0.0
    force_failure: bool = False
    flake_probability: float = 0.0
    seed: int = 0
    timeout_seconds: float = 600.0


@dataclass
class Repo:
    id: int
    owner_id: int
    name: str
    created_at: float
    updated_at: float
    pushed_at: float
    private: bool = False
    description: str | None = None
    default_branch: str = "main"
    permissions: dict[str, int] = field(default_factory=dict)  # str(user id) -> Permission
    protected_branches: list[str] = field(default_factory=list)
    admins_may_push_protected: bool = False
    ci: dict[str, object] | None = None  # CiConfig fields, or None: no simulated CI
    next_number: int = 1
    refs: dict[str, str] = field(default_factory=dict)  # last refs the forge has seen


@dataclass
class Label:
    id: int
    repo_id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class Issue:
    """An issue or a pull request (GitHub numbers both from one sequence)."""

    id: int
    repo_id: int
    number: int
    title: str
    user_id: int
    created_at: float
    updated_at: float
    body: str | None = None
    state: str = "open"
    state_reason: str | None = None
    closed_at: float | None = None
    closed_by_id: int | None = None
    locked: bool = False
    label_ids: list[int] = field(default_factory=list)
    assignee_ids: list[int] = field(default_factory=list)
    comment_count: int = 0
    is_pull: bool = False
    pull_id: int | None = None  # pull requests have a second id, as on GitHub
    head_ref: str | None = None
    head_sha: str | None = None
    base_ref: str | None = None
    draft: bool = False
    merged: bool = False
    merged_at: float | None = None
    merged_by_id: int | None = None
    merge_commit_sha: str | None = None


@dataclass
class IssueEvent:
    """An entry of an issue's event log (`labeled` / `unlabeled`, with the label's name and
    color as they were); recorded when labels change through the API or by seeding."""

    id: int
    repo_id: int
    number: int
    actor_id: int
    event: str
    created_at: float
    label_name: str | None = None
    label_color: str | None = None


@dataclass
class Comment:
    id: int
    repo_id: int
    number: int
    user_id: int
    body: str
    created_at: float
    updated_at: float


@dataclass
class Review:
    id: int
    repo_id: int
    number: int
    user_id: int
    state: str
    commit_id: str
    submitted_at: float
    body: str | None = None


@dataclass
class ReviewComment:
    id: int
    review_id: int
    repo_id: int
    number: int
    user_id: int
    path: str
    body: str
    commit_id: str
    created_at: float
    line: int | None = None
    side: str = "RIGHT"


@dataclass
class CommitStatus:
    id: int
    repo_id: int
    sha: str
    state: str
    context: str
    creator_id: int
    created_at: float
    updated_at: float
    description: str | None = None
    target_url: str | None = None


@dataclass
class CheckSuite:
    id: int
    repo_id: int
    app_id: int
    head_sha: str
    head_branch: str | None
    created_at: float
    updated_at: float


@dataclass
class CheckRun:
    id: int
    repo_id: int
    suite_id: int
    app_id: int
    head_sha: str
    name: str
    status: str
    started_at: float
    conclusion: str | None = None
    completed_at: float | None = None
    external_id: str | None = None
    details_url: str | None = None
    output_title: str | None = None
    output_summary: str | None = None
    output_text: str | None = None
