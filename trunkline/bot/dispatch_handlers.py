"""Webhook handlers of the dispatch pipeline: GitHub events -> pipeline events.

Performs I/O through its collaborators: the GitHub port of the delivery's installation
(re-reads: the labeller's permission, the PR's head) and `PipelineService.submit` (one
transaction per event). Runs inside the `process_delivery` job (at-least-once), which is
safe because the state machine ignores duplicates: a repeated `Labeled` for a live item, a
review of a SHA already handled, a head already known all decide to "no change".

- `issues.labeled` / `issues.unlabeled` (issues only, not PRs) -> `Labeled` / `Unlabeled`;
  the permission comes from `GitHubPort.get_permission`, never from the payload. A label a
  bot applies starts nothing: work is handed over by people (`/trunkline retry` puts the
  label back itself and submits the commenter's `Labeled`).
- `pull_request_review.submitted` on a PR of a work item -> `HumanReview` with the review's
  body and its line comments (`path:line: text`), from a user whose API-read permission is at
  least the policy's `dispatch.min_permission` (reviews by bots, including the App's own
  verdicts, and by anyone else are ignored here; the approval gate reads reviews itself).
- `pull_request.synchronize` -> `PrHeadChanged` with the head read through the API.
- `pull_request.closed` -> `Merged` (merged) or `PrClosed` (unless the merge queue merged the
  PR: a squash merge closes it without a GitHub merge, and the queue reports the merge).
- `queue_departure_job`: the merge queue's departures (`QueueService.departure_job_kind`,
  enqueued in the queue step's own transaction) -> `Merged(pr, merged_sha)` /
  `Ejected(pr, reason)` / `Dequeued(pr, reason)` (while the PR is still open) for the work
  item whose PR left the queue.
- `admission_tick()`: a periodic task that runs `PipelineService.admit` for every repository
  with items (a safety net: admission also runs after every decision that frees a slot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from trunkline.bot.events import IssuesEvent, PullRequestEvent, PullRequestReviewEvent
from trunkline.bot.router import RoutedEvent, Router
from trunkline.errors import RetryableError
from trunkline.github.model import Permission as GitHubPermission
from trunkline.github.port import GitHubPort
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.runner import PipelineService
from trunkline.pipeline.states import WorkState
from trunkline.pipeline.store import load_item
from trunkline.policies.model import Permission
from trunkline.store.jobs import ClaimedJob
from trunkline.store.tables import QueueEntry

QUEUE_DEPARTURE_JOB = "pipeline_queue_departure"

log = logging.getLogger(__name__)

_REVIEW_STATES = {
    "approved": ev.HumanReviewState.APPROVED,
    "changes_requested": ev.HumanReviewState.CHANGES_REQUESTED,
    "commented": ev.HumanReviewState.COMMENTED,
}


def policy_permission(permission: GitHubPermission) -> Permission | None:
    """GitHub's role as the policy's permission (None: no access)."""
    if permission is GitHubPermission.NONE:
        return None
    return Permission(permission.value)


def is_bot_sender(login: str | None, account_type: str | None) -> bool:
    """A webhook's user is a bot (an App, `github-actions[bot]`, ...): its actions steer nothing."""
    return account_type == "Bot" or (login or "").lower().endswith("[bot]")


@dataclass
class DispatchHandlers:
    service: PipelineService
    github_for: Callable[[int | None], GitHubPort]
    #: Told the installation of every delivery before the repository's policy is read.
    note_installation: Callable[[str, int | None], None] = lambda repo, installation: None

    def register(self, router: Router) -> None:
        router.add(self.on_labeled, "issues", "labeled")
        router.add(self.on_unlabeled, "issues", "unlabeled")
        router.add(self.on_review, "pull_request_review", "submitted")
        router.add(self.on_synchronize, "pull_request", "synchronize")
        router.add(self.on_closed, "pull_request", "closed")

    # -- issues --------------------------------------------------------------------------

    def on_labeled(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, IssuesEvent) or payload.label is None:
            return
        if payload.issue.is_pull_request or payload.sender is None:
            return
        repo = payload.repository.full_name
        installation = payload.installation.id if payload.installation else None
        self.note_installation(repo, installation)
        if payload.label.name != self.service.config_for(repo).dispatch_label:
            return
        if is_bot_sender(payload.sender.login, payload.sender.type):
            return  # trunkline's own label (`/trunkline retry`) or another automation's
        github = self.github_for(installation)
        permission = policy_permission(github.get_permission(repo, payload.sender.login))
        self.service.submit(
            repo,
            payload.issue.number,
            ev.Labeled(
                repo, payload.issue.number, payload.sender.login, permission, payload.label.name
            ),
            installation_id=installation,
            title=payload.issue.title,
        )

    def on_unlabeled(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, IssuesEvent) or payload.label is None:
            return
        if payload.issue.is_pull_request or payload.sender is None:
            return
        repo = payload.repository.full_name
        if self.service.item(repo, payload.issue.number) is None:
            return
        self.service.submit(
            repo,
            payload.issue.number,
            ev.Unlabeled(payload.sender.login, payload.label.name),
        )

    # -- pull requests -------------------------------------------------------------------

    def _item_of_pr(self, repo: str, pr: int) -> WorkItem | None:
        for item in self.service.items(repo):
            if item.pr == pr:
                return item
        return None

    def on_review(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, PullRequestReviewEvent):
            return
        review = payload.review
        login = review.user.login if review.user else None
        if login is None or is_bot_sender(login, review.user.type if review.user else None):
            return
        state = _REVIEW_STATES.get(review.state.lower())
        if state is None:
            return
        repo = payload.repository.full_name
        pr = payload.pull_request.number
        item = self._item_of_pr(repo, pr)
        if item is None:
            return
        installation = payload.installation.id if payload.installation else None
        github = self.github_for(installation)
        permission = policy_permission(github.get_permission(repo, login))
        if not self.service.config_for(repo).may_dispatch(permission):
            # steering the agents is for people who may hand them work; anyone else's review
            # is still read by the approval gate, which decides whether it counts
            log.info(
                "review by a user without dispatch permission ignored",
                extra={"repo": repo, "pr": pr, "user": login},
            )
            return
        comments: tuple[str, ...] = (review.body,) if review.body else ()
        comments += tuple(
            f"{note.path}:{note.line}: {note.body}" if note.line else f"{note.path}: {note.body}"
            for note in github.list_review_comments(repo, pr)
            if note.review_id == review.id and note.body
        )
        self.service.submit(
            repo, item.issue, ev.HumanReview(review.commit_id, state, login, comments)
        )

    def on_synchronize(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, PullRequestEvent):
            return
        repo = payload.repository.full_name
        item = self._item_of_pr(repo, payload.number)
        if item is None:
            return
        installation = payload.installation.id if payload.installation else None
        head = self.github_for(installation).get_pull(repo, payload.number).head_sha
        self.service.submit(repo, item.issue, ev.PrHeadChanged(payload.number, head))

    def on_closed(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, PullRequestEvent):
            return
        repo = payload.repository.full_name
        item = self._item_of_pr(repo, payload.number)
        if item is None:
            return
        pull = payload.pull_request
        if pull.merged:
            sha = self._merged_sha(repo, payload.number) or pull.head.sha
            event: ev.Event = ev.Merged(payload.number, sha)
        elif self._queue_merged(repo, payload.number):
            return  # squashed by the queue, which reports the merge itself
        else:
            by = payload.sender.login if payload.sender else "someone"
            event = ev.PrClosed(payload.number, by)
        self.service.submit(repo, item.issue, event)

    def _queue_rows(self, repo: str, pr: int) -> list[tuple[str, str | None]]:
        with self.service.engine.connect() as conn:
            rows = conn.execute(
                select(QueueEntry.state, QueueEntry.integration_sha)
                .where(QueueEntry.repo_full_name == repo, QueueEntry.pr_number == pr)
                .order_by(QueueEntry.id.desc())
                .limit(1)
            ).all()
        return [(row.state, row.integration_sha) for row in rows]

    def _queue_merged(self, repo: str, pr: int) -> bool:
        return any(state == "merged" for state, _ in self._queue_rows(repo, pr))

    def _merged_sha(self, repo: str, pr: int) -> str:
        """The commit the base moved to when the queue merged `pr` (its integration commit);
        "" when the queue did not merge it."""
        for state, sha in self._queue_rows(repo, pr):
            if state == "merged" and sha:
                return sha
        return ""

    # -- merge queue ---------------------------------------------------------------------

    def queue_departure_job(self, job: ClaimedJob) -> None:
        """A PR left the merge queue: merged -> `Merged` (a fact in any state), ejected ->
        `Ejected`, dequeued while still open -> `Dequeued` (both accepted only in
        `queued_for_merge`, for the item's own PR, so a departure the pipeline caused itself
        by leaving the queue decides nothing). A dequeue because the PR was closed or merged
        outside the queue is left to `pull_request.closed`, the delivery that caused it."""
        repo = str(job.payload["repo"])
        pr = int(job.payload["pr"])
        item = self._item_of_pr(repo, pr)
        if item is None:
            return  # not a work item's PR (a person's PR in the queue)
        state = job.payload["state"]
        reason = str(job.payload.get("reason") or "")
        if state == "merged":
            sha = str(job.payload.get("merged_sha") or job.payload.get("head_sha") or "")
            self.service.submit(repo, item.issue, ev.Merged(pr, sha))
            return
        if item.state is WorkState.READY:
            # the queue acted before the item recorded its own Enqueue (a slow or retried
            # Enqueue job): deliver this once the item is queued_for_merge, never drop it
            raise RetryableError(
                f"{repo}#{item.issue} has not recorded entering the queue yet", retry_after=2.0
            )
        if state == "ejected":
            event: ev.Event = ev.Ejected(pr, reason or "ejected from the queue")
        elif state == "dequeued":
            if item.state is not WorkState.QUEUED_FOR_MERGE or not self._pull_open(item):
                return
            event = ev.Dequeued(pr, reason or "dequeued")
        else:
            return
        self.service.submit(repo, item.issue, event)

    def _pull_open(self, item: WorkItem) -> bool:
        assert item.pr is not None
        with self.service.engine.connect() as conn:
            installation = load_item(conn, item.repo, item.issue, for_update=False)
        github = self.github_for(installation.installation_id)
        return github.get_pull(item.repo, item.pr).state == "open"

    # -- periodic ------------------------------------------------------------------------

    def admission_tick(self) -> None:
        for repo in self.service.repositories():
            self.service.admit(repo)
