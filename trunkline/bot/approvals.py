"""Human approvals from `pull_request_review` webhooks and `/trunkline approve`.

Performs I/O (the store, GitHub). A review `submitted` as APPROVED records (repo, PR,
`review.commit_id`, reviewer, `github_review`); a later CHANGES_REQUESTED review by the same
person, or the review's dismissal, removes it. `/trunkline approve` records (repo, PR,
current head SHA, commenter, `command`). Recording is idempotent (the table's unique key), and
every handler then re-evaluates the PR's gates through `GateRunner.refresh`, which also
re-reads the reviews from GitHub (so a dropped webhook is healed), posts the gate check runs
and submits `GatesUpdated` to the queue. Whether an approval *counts* is the approval gate's
decision (`trunkline.queue.gates`), not the recorder's: bots and the requester are recorded
and shown as "not counted".
"""

from __future__ import annotations

import logging

from trunkline.bot.approval_store import ApprovalRecords
from trunkline.bot.events import PullRequestReviewEvent
from trunkline.bot.gate_runner import GateReading, GateRunner, GitHubFor
from trunkline.bot.router import EventHandler, RoutedEvent, Router
from trunkline.github.port import GitHubPort
from trunkline.queue.gates import ApprovalSource

log = logging.getLogger(__name__)


def apply_review(store: ApprovalRecords, payload: PullRequestReviewEvent) -> str:
    """Record or remove the approval a review webhook describes; returns what was done."""
    repo = payload.repository.full_name
    pr = payload.pull_request.number
    review = payload.review
    if review.user is None:
        return "ignored: review without a user"
    user, sha = review.user.login, review.commit_id
    state = review.state.lower()
    if payload.action == "dismissed":
        store.remove(repo, pr, sha, user, ApprovalSource.GITHUB_REVIEW)
        return "removed"
    if payload.action != "submitted":
        return f"ignored: action {payload.action}"
    if state == "approved":
        store.record(repo, pr, sha, user, ApprovalSource.GITHUB_REVIEW)
        return "recorded"
    if state == "changes_requested":
        store.remove(repo, pr, sha, user, ApprovalSource.GITHUB_REVIEW)
        return "removed"
    return f"ignored: review state {state}"


def review_handler(runner: GateRunner, github_for: GitHubFor) -> EventHandler:
    """The `pull_request_review` handler (submitted, dismissed)."""

    def handle(event: RoutedEvent) -> None:
        payload = event.payload
        if not isinstance(payload, PullRequestReviewEvent):
            return
        done = apply_review(runner.approvals, payload)
        log.info(
            "review webhook",
            extra={
                "repo": payload.repository.full_name,
                "pr": payload.pull_request.number,
                "outcome": done,
            },
        )
        if payload.pull_request.state != "open":
            return
        installation = payload.installation.id if payload.installation else None
        runner.refresh(
            github_for(installation), payload.repository.full_name, payload.pull_request.number
        )

    return handle


def approve_head(
    runner: GateRunner, github: GitHubPort, repo: str, pr: int, user: str
) -> tuple[str, GateReading]:
    """`/trunkline approve`: record `user`'s approval of the PR's current head, re-evaluate.

    Returns the head SHA approved and the new reading (whose approval gate says whether the
    approval counts)."""
    head = github.get_pull(repo, pr).head_sha
    runner.approvals.record(repo, pr, head, user, ApprovalSource.COMMAND)
    return head, runner.refresh(github, repo, pr)


def register_approvals(router: Router, runner: GateRunner, github_for: GitHubFor) -> None:
    handler = review_handler(runner, github_for)
    router.add(handler, "pull_request_review", "submitted")
    router.add(handler, "pull_request_review", "dismissed")
