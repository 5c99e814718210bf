"""The GitHub port: every GitHub operation trunkline performs, as a `typing.Protocol`.

Pure (an interface). Implementations: `adapter.PyGithubAdapter` (one installation of a
GitHub App, against github.com, GitHub Enterprise or the local forge) and `fake.FakeGitHub`
(in memory, for unit tests). Every method returns frozen snapshots from `model` and raises
only errors from `trunkline.github.errors`. `repo` is always `owner/name`. The composition
root wraps every installation's port in `redacting.RedactingGitHub`, so no secret reaches
GitHub in a text the port writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from trunkline.github.model import (
    CheckRun,
    CheckRunRequest,
    CheckRunUpdate,
    CombinedStatus,
    Comment,
    Commit,
    FileContent,
    Issue,
    IssueEvent,
    MergeMethod,
    MergeResult,
    Permission,
    PullFile,
    PullRequest,
    Ref,
    Review,
    ReviewComment,
    ReviewEvent,
    ReviewLineComment,
)


class GitHubPort(Protocol):
    def as_written(self, text: str) -> str:
        """The text GitHub holds after this port writes `text` (no I/O). A redacting port
        (`redacting.RedactingGitHub`) removes secrets; a caller that compares a body it built
        with one GitHub holds (idempotency) compares `as_written(body)`."""
        ...

    # -- reads ------------------------------------------------------------------------------

    def get_issue(self, repo: str, number: int) -> Issue:
        """The issue (or PR, seen as an issue) `number`. NotFoundError if missing."""
        ...

    def list_issues(
        self,
        repo: str,
        *,
        labels: Sequence[str] = (),
        state: str = "open",
        limit: int = 100,
    ) -> tuple[Issue, ...]:
        """Issues in `state` (`open`, `closed`, `all`) carrying every one of `labels`, most
        recently updated first, at most `limit`. Like GitHub's list, it includes pull requests
        (`Issue.is_pull_request`)."""
        ...

    def list_issue_events(self, repo: str, number: int) -> tuple[IssueEvent, ...]:
        """The issue's event log, oldest first (`labeled` / `unlabeled` with the label's name
        and the actor who changed it, and GitHub's other kinds)."""
        ...

    def get_pull(self, repo: str, number: int, *, wait_for_mergeable: bool = False) -> PullRequest:
        """The PR `number`. With `wait_for_mergeable`, re-polls (bounded) while GitHub is still
        computing `mergeable`; the result may still be `Mergeability.UNKNOWN`, which callers
        must treat as not mergeable."""
        ...

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        """The open pull request from branch `head` (of `repo` itself) into `base`, if any."""
        ...

    def list_pull_files(self, repo: str, number: int) -> tuple[PullFile, ...]:
        """Files the PR changes (GitHub lists at most 3000)."""
        ...

    def list_reviews(self, repo: str, number: int) -> tuple[Review, ...]:
        """Reviews of the PR, oldest first, each bound to the commit it reviewed."""
        ...

    def list_review_comments(self, repo: str, number: int) -> tuple[ReviewComment, ...]:
        """The line comments on the PR's diff, oldest first, each with its review's id."""
        ...

    def list_pull_commits(self, repo: str, number: int) -> tuple[Commit, ...]:
        """The PR's commits, oldest first (GitHub lists at most 250)."""
        ...

    def compare_commits(self, repo: str, base: str, head: str) -> tuple[Commit, ...]:
        """The commits reachable from `head` and not from `base`, oldest first (GitHub's
        compare `base...head`; at most 250). NotFoundError if either is unknown."""
        ...

    def list_check_runs(self, repo: str, sha: str) -> tuple[CheckRun, ...]:
        """Check runs reported on the commit `sha`."""
        ...

    def get_combined_status(self, repo: str, sha: str) -> CombinedStatus:
        """Commit statuses (the older API) on `sha`, combined."""
        ...

    def get_permission(self, repo: str, login: str) -> Permission:
        """`login`'s role on the repository; Permission.NONE if not a collaborator."""
        ...

    def get_file(self, repo: str, path: str, ref: str) -> FileContent | None:
        """The text of `path` at `ref` (branch, tag or SHA); None if there is no such file."""
        ...

    def list_issue_comments(self, repo: str, number: int) -> tuple[Comment, ...]:
        """Comments on an issue or PR, oldest first."""
        ...

    def get_ref(self, repo: str, ref: str) -> Ref:
        """`ref` (`heads/main` or `refs/heads/main`). NotFoundError if missing."""
        ...

    # -- writes -----------------------------------------------------------------------------

    def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> tuple[str, ...]:
        """Add labels (creating unknown ones); returns the labels the item now has."""
        ...

    def remove_label(self, repo: str, number: int, label: str) -> None:
        """Remove a label; removing one the item does not have is not an error."""
        ...

    def create_comment(self, repo: str, number: int, body: str) -> Comment: ...

    def edit_comment(self, repo: str, comment_id: int, body: str) -> Comment: ...

    def upsert_sticky_comment(self, repo: str, number: int, key: str, body: str) -> Comment:
        """Create or edit in place the item's one comment for `key` (see `sticky`)."""
        ...

    def create_check_run(self, repo: str, request: CheckRunRequest) -> CheckRun: ...

    def update_check_run(
        self, repo: str, check_run_id: int, update: CheckRunUpdate
    ) -> CheckRun: ...

    def rerequest_check_run(self, repo: str, check_run_id: int) -> None:
        """Ask the check run's App to run it again on the same commit (GitHub's
        `check-runs/{id}/rerequest`: a `check_run` `rerequested` webhook to that App)."""
        ...

    def create_ref(self, repo: str, ref: str, sha: str) -> Ref:
        """Create `ref` at `sha`. RefExistsError if it exists."""
        ...

    def update_ref(self, repo: str, ref: str, sha: str, *, force: bool = False) -> Ref:
        """Move `ref` to `sha`. Without `force`, NonFastForwardError unless it fast-forwards."""
        ...

    def delete_ref(self, repo: str, ref: str) -> None:
        """Delete `ref`; deleting a missing ref is not an error."""
        ...

    def create_pull(
        self, repo: str, *, title: str, head: str, base: str, body: str = "", draft: bool = False
    ) -> PullRequest: ...

    def merge_pull(
        self,
        repo: str,
        number: int,
        *,
        sha: str,
        method: MergeMethod,
        commit_title: str | None = None,
        commit_message: str | None = None,
    ) -> MergeResult:
        """Merge only if the head is still `sha`: StaleMergeShaError (409) otherwise,
        NotMergeableError (405) if GitHub refuses."""
        ...

    def create_review(
        self,
        repo: str,
        number: int,
        *,
        commit_sha: str,
        event: ReviewEvent,
        body: str,
        comments: Sequence[ReviewLineComment] = (),
    ) -> Review:
        """Submit a review bound to `commit_sha`, with line comments on the diff. A comment on
        a line outside the diff makes GitHub refuse the review (`ValidationFailedError`)."""
        ...

    def close_issue(self, repo: str, number: int, *, reason: str = "completed") -> Issue:
        """Close issue `number` with `state_reason` (`completed` or `not_planned`); closing a
        closed issue is not an error."""
        ...

    def close_pull(self, repo: str, number: int) -> PullRequest:
        """Close pull request `number` without merging; closing a closed (or merged) pull
        request is not an error."""
        ...
