"""Typed webhook payloads for the events trunkline handles (a trust boundary: extra ignored).

Pure; performs no I/O. Only the fields trunkline reads are modelled; everything else in a
payload is ignored, so GitHub adding fields never breaks intake. A test checks every field here
against GitHub's published webhook schemas (../shared/github/webhooks-api.json): a field that
is required here is required there, and a field that may be null there is optional here.
Events are prompts to look, not facts: handlers re-read state from GitHub before acting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from trunkline.errors import TerminalError


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(Model):
    login: str
    id: int
    type: str | None = None


class Actor(Model):
    """A user where GitHub's schema does not promise the fields (e.g. an issue's author)."""

    login: str | None = None
    id: int | None = None
    type: str | None = None


class InstallationAccount(Model):
    """A user, organization or enterprise (enterprises have a slug, no login)."""

    id: int | None = None
    login: str | None = None
    slug: str | None = None


class InstallationRef(Model):
    id: int


class Installation(Model):
    id: int
    account: InstallationAccount | None = None


class RepositoryRef(Model):
    id: int | None = None
    name: str | None = None
    full_name: str | None = None


class Repository(Model):
    id: int
    name: str
    full_name: str
    owner: Account | None = None
    private: bool
    default_branch: str | None = None


class Label(Model):
    name: str


def _names(labels: list[Label | None]) -> tuple[str, ...]:
    return tuple(label.name for label in labels if label is not None)


class Issue(Model):
    number: int
    title: str
    body: str | None = None
    state: str | None = None
    user: Actor | None = None
    labels: list[Label | None] = []
    pull_request: dict[str, Any] | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        return _names(self.labels)

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None


class Comment(Model):
    id: int
    body: str
    user: Account | None = None
    created_at: datetime | None = None


class GitRef(Model):
    ref: str
    sha: str


class PullRequest(Model):
    number: int
    state: str
    title: str
    body: str | None = None
    draft: bool | None = None
    merged: bool | None = None
    user: Actor | None = None
    labels: list[Label | None] = []
    head: GitRef
    base: GitRef
    updated_at: datetime | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        return _names(self.labels)


class Review(Model):
    id: int
    state: str
    commit_id: str
    body: str | None = None
    user: Account | None = None
    submitted_at: datetime | None = None


class CheckSuite(Model):
    id: int
    head_sha: str
    head_branch: str | None = None
    status: str | None = None
    conclusion: str | None = None


class CheckRunApp(Model):
    slug: str | None = None


class CheckRun(Model):
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None = None
    app: CheckRunApp | None = None


class MergeGroup(Model):
    head_sha: str
    head_ref: str
    base_ref: str
    base_sha: str


class WebhookPayload(Model):
    """Fields every event may carry (`action` is declared by the events that have one)."""

    installation: InstallationRef | None = None
    repository: Repository | None = None
    sender: Account | None = None


class IssuesEvent(WebhookPayload):
    action: str
    issue: Issue
    repository: Repository
    label: Label | None = None


class IssueCommentEvent(WebhookPayload):
    action: str
    issue: Issue
    comment: Comment
    repository: Repository


class PullRequestEvent(WebhookPayload):
    action: str
    number: int
    pull_request: PullRequest
    repository: Repository
    label: Label | None = None


class PullRequestReviewEvent(WebhookPayload):
    action: str
    review: Review
    pull_request: PullRequest
    repository: Repository


class CheckRunEvent(WebhookPayload):
    action: str
    check_run: CheckRun
    repository: Repository


class CheckSuiteEvent(WebhookPayload):
    action: str
    check_suite: CheckSuite
    repository: Repository


class StatusEvent(WebhookPayload):
    id: int
    sha: str
    state: str
    context: str
    description: str | None = None
    target_url: str | None = None
    repository: Repository


class PushEvent(WebhookPayload):
    ref: str
    before: str
    after: str
    created: bool
    deleted: bool
    forced: bool
    repository: Repository


class MergeGroupEvent(WebhookPayload):
    action: str
    merge_group: MergeGroup


class InstallationEvent(WebhookPayload):
    action: str
    installation: Installation  # type: ignore[assignment]
    repositories: list[RepositoryRef] | None = None


class InstallationRepositoriesEvent(WebhookPayload):
    action: str
    installation: Installation  # type: ignore[assignment]
    repository_selection: str
    repositories_added: list[RepositoryRef]
    repositories_removed: list[RepositoryRef]


EVENT_MODELS: dict[str, type[WebhookPayload]] = {
    "issues": IssuesEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request": PullRequestEvent,
    "pull_request_review": PullRequestReviewEvent,
    "check_run": CheckRunEvent,
    "check_suite": CheckSuiteEvent,
    "status": StatusEvent,
    "push": PushEvent,
    "merge_group": MergeGroupEvent,
    "installation": InstallationEvent,
    "installation_repositories": InstallationRepositoriesEvent,
}


class PayloadMismatchError(TerminalError):
    """A payload of a handled event does not have the shape trunkline needs."""


def parse_payload(event: str, data: dict[str, Any]) -> WebhookPayload | None:
    """The typed payload of `event`, or None for events trunkline does not model.

    Raises `PayloadMismatchError` (naming the bad fields) when a handled event does not fit.
    """
    model = EVENT_MODELS.get(event)
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()[:10]
        )
        raise PayloadMismatchError(f"{event} payload does not match: {problems}") from error
