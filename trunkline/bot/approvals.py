"""Human approvals from `pull_request_review` webhooks and `/trunkline approve`.

Performs I/O (the store, GitHub). A review `submitted` as APPROVED records (repo, PR,
`review.commit_id`, reviewer, `github_review`); a later CHANGES_REQUESTED review by the same
person, or the review's dismissal, removes it. `/trunkline approve` records (repo, PR,
head SHA the comment was written for, commenter, `command`), decided at the comment's
`created_at` (GitHub's clock), so the same person's CHANGES_REQUESTED review submitted after
the comment withdraws it even when the comment's job runs later; the head at job time counts
only if it was observed as the head before the comment was written (`bind_approval`);
otherwise nothing is recorded and the reply asks to approve again naming the SHA
(`/trunkline approve <sha>`, which binds to that SHA if it is the head). Recording is
idempotent (the table's unique key), and every handler then re-evaluates the PR's gates
through `GateRunner.refresh`, which also re-reads the reviews from GitHub (so a dropped
webhook is healed), posts the gate check runs and submits `GatesUpdated` to the queue.
Whether an approval *counts* is the approval gate's decision (`trunkline.queue.gates`), not
the recorder's: bots, the requester and contributors are recorded and shown as "not counted".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from trunkline.bot.approval_store import ApprovalRecords
from trunkline.bot.events import PullRequest as PullRequestPayload
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
        # withdraws the person's approval of that SHA whatever its source: an earlier review
        # approval, or a `/trunkline approve` written before this review
        store.remove(repo, pr, sha, user, ApprovalSource.GITHUB_REVIEW)
        store.remove(repo, pr, sha, user, ApprovalSource.COMMAND, before=review.submitted_at)
        return "removed"
    return f"ignored: review state {state}"


def observe_payload(runner: GateRunner, repo: str, pull: PullRequestPayload) -> None:
    """A webhook's pull request snapshot: its head was the head at its `updated_at`."""
    if pull.updated_at is not None:
        runner.approvals.observe_head(repo, pull.number, pull.head.sha, pull.updated_at)


def review_handler(runner: GateRunner, github_for: GitHubFor) -> EventHandler:
    """The `pull_request_review` handler (submitted, dismissed)."""

    def handle(event: RoutedEvent) -> None:
        payload = event.payload
        if not isinstance(payload, PullRequestReviewEvent):
            return
        done = apply_review(runner.approvals, payload)
        observe_payload(runner, payload.repository.full_name, payload.pull_request)
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


@dataclass(frozen=True)
class ApprovalBinding:
    """The head SHA a `/trunkline approve` binds to, or why it binds to none."""

    sha: str | None
    refusal: str = ""


def bind_approval(
    *,
    login: str,
    pr: int,
    head: str,
    head_since: datetime | None,
    written_at: datetime | None,
    named: str | None,
) -> ApprovalBinding:
    """Which head a `/trunkline approve` comment approves (pure).

    `named` (a SHA written in the command) binds to the head if it is the head's full SHA, or
    a prefix of it written when that head was already there (a short prefix alone could name
    a look-alike commit pushed later); else to nothing. Without it, the current `head` counts
    only if it was observed as the head (`head_since`, GitHub's clock) strictly before the
    comment was written (`written_at`):
    a push between the comment and this job must not turn the approval into one of a commit
    the approver never saw. If that cannot be shown, nothing binds and the refusal names
    the SHA to approve explicitly."""
    seen_before = written_at is not None and head_since is not None and head_since < written_at
    if named is not None:
        if named.lower() == head.lower():
            return ApprovalBinding(head)  # the full SHA names exactly one commit
        if head.lower().startswith(named.lower()) and seen_before:
            return ApprovalBinding(head)  # a prefix, and that head was there when written
        if head.lower().startswith(named.lower()):
            return ApprovalBinding(
                None,
                f"Sorry @{login}, `{named}` is a prefix of the head of #{pr}, but I cannot be "
                "sure that head was there when you wrote your comment (another commit can "
                "share a short prefix), so I recorded nothing. To approve it, name the whole "
                f"SHA: `/trunkline approve {head}`.",
            )
        return ApprovalBinding(
            None,
            f"Sorry @{login}, `{named}` is not the head of #{pr}: the head is `{head}`, "
            "so I recorded nothing. Approvals bind to the exact commit; to approve the head, "
            f"comment `/trunkline approve {head}`.",
        )
    if seen_before:
        return ApprovalBinding(head)
    return ApprovalBinding(
        None,
        f"Sorry @{login}, I cannot be sure that `{head}` was already the head of #{pr} when "
        "you wrote your comment (it may have been pushed since), so I recorded nothing. "
        f"If you approve it, comment `/trunkline approve {head}`.",
    )


def approve_head(
    runner: GateRunner,
    github: GitHubPort,
    repo: str,
    pr: int,
    user: str,
    *,
    written_at: datetime | None,
    named: str | None = None,
) -> tuple[ApprovalBinding, GateReading | None]:
    """`/trunkline approve`: record `user`'s approval of the head the comment was written
    for (`bind_approval`) and re-evaluate. Returns the binding and the new reading (whose
    approval gate says whether the approval counts), or no reading if nothing was recorded."""
    pull = github.get_pull(repo, pr)
    runner.observe(repo, pull)
    binding = bind_approval(
        login=user,
        pr=pr,
        head=pull.head_sha,
        head_since=runner.approvals.head_since(repo, pr, pull.head_sha),
        written_at=written_at,
        named=named,
    )
    if binding.sha is None:
        log.info(
            "approval not bound",
            extra={"repo": repo, "pr": pr, "user": user, "head": pull.head_sha},
        )
        return binding, None
    # decided when the comment was written (GitHub's clock), however late this job runs: a
    # "changes requested" by the same person submitted after it withdraws it
    runner.approvals.record(
        repo, pr, binding.sha, user, ApprovalSource.COMMAND, decided_at=written_at
    )
    return binding, runner.refresh(github, repo, pr)


def register_approvals(router: Router, runner: GateRunner, github_for: GitHubFor) -> None:
    handler = review_handler(runner, github_for)
    router.add(handler, "pull_request_review", "submitted")
    router.add(handler, "pull_request_review", "dismissed")
