"""`RedactingGitHub`: the GitHub port with every free text it writes passed through a redactor.

Performs no I/O itself (the wrapped port does). The composition root wraps each installation's
port (`InstallationClients.for_installation`), so comment and sticky-comment bodies, check-run
titles, summaries and texts, pull request titles and bodies, review bodies and line comments,
and merge commit titles and messages never carry a secret, whoever built them (an exception's
text, a check's summary, a sandbox's output, an agent's plan). Reads pass through unchanged.

`as_written(text)` is the redacted text: callers that compare a body they built with the one
GitHub holds compare `github.as_written(body)`, so they stay idempotent.

`READS` and `PLAIN_WRITES` (writes whose arguments are names, numbers and SHAs, never free
text) name the port methods that need no redaction; every other method redacts. A test holds
the three lists to the port, so a new port method is classified before it ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from trunkline.agents.redaction import Redactor
from trunkline.github.model import (
    CheckRun,
    CheckRunOutput,
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
from trunkline.github.port import GitHubPort

READS = frozenset(
    {
        "as_written",
        "get_issue",
        "list_issues",
        "list_issue_events",
        "get_pull",
        "find_open_pull",
        "list_pull_files",
        "list_reviews",
        "list_review_comments",
        "list_pull_commits",
        "compare_commits",
        "list_check_runs",
        "get_combined_status",
        "get_permission",
        "get_file",
        "list_issue_comments",
        "get_ref",
    }
)
PLAIN_WRITES = frozenset(
    {
        "add_labels",
        "remove_label",
        "rerequest_check_run",
        "create_ref",
        "update_ref",
        "delete_ref",
        "close_issue",
        "close_pull",
    }
)


class RedactingGitHub:
    """A `GitHubPort` that redacts every free text before `inner` writes it."""

    def __init__(self, inner: GitHubPort, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor

    def as_written(self, text: str) -> str:
        return self.inner.as_written(self.redactor.redact(text))

    def _output(self, output: CheckRunOutput | None) -> CheckRunOutput | None:
        if output is None:
            return None
        return CheckRunOutput(
            title=self.redactor.redact(output.title),
            summary=self.redactor.redact(output.summary),
            text=self.redactor.redact(output.text) if output.text is not None else None,
        )

    def _optional(self, text: str | None) -> str | None:
        return self.redactor.redact(text) if text is not None else None

    # -- reads ------------------------------------------------------------------------------

    def get_issue(self, repo: str, number: int) -> Issue:
        return self.inner.get_issue(repo, number)

    def list_issues(
        self,
        repo: str,
        *,
        labels: Sequence[str] = (),
        state: str = "open",
        limit: int = 100,
    ) -> tuple[Issue, ...]:
        return self.inner.list_issues(repo, labels=labels, state=state, limit=limit)

    def list_issue_events(self, repo: str, number: int) -> tuple[IssueEvent, ...]:
        return self.inner.list_issue_events(repo, number)

    def get_pull(self, repo: str, number: int, *, wait_for_mergeable: bool = False) -> PullRequest:
        return self.inner.get_pull(repo, number, wait_for_mergeable=wait_for_mergeable)

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        return self.inner.find_open_pull(repo, head=head, base=base)

    def list_pull_files(self, repo: str, number: int) -> tuple[PullFile, ...]:
        return self.inner.list_pull_files(repo, number)

    def list_reviews(self, repo: str, number: int) -> tuple[Review, ...]:
        return self.inner.list_reviews(repo, number)

    def list_review_comments(self, repo: str, number: int) -> tuple[ReviewComment, ...]:
        return self.inner.list_review_comments(repo, number)

    def list_pull_commits(self, repo: str, number: int) -> tuple[Commit, ...]:
        return self.inner.list_pull_commits(repo, number)

    def compare_commits(self, repo: str, base: str, head: str) -> tuple[Commit, ...]:
        return self.inner.compare_commits(repo, base, head)

    def list_check_runs(self, repo: str, sha: str) -> tuple[CheckRun, ...]:
        return self.inner.list_check_runs(repo, sha)

    def get_combined_status(self, repo: str, sha: str) -> CombinedStatus:
        return self.inner.get_combined_status(repo, sha)

    def get_permission(self, repo: str, login: str) -> Permission:
        return self.inner.get_permission(repo, login)

    def get_file(self, repo: str, path: str, ref: str) -> FileContent | None:
        return self.inner.get_file(repo, path, ref)

    def list_issue_comments(self, repo: str, number: int) -> tuple[Comment, ...]:
        return self.inner.list_issue_comments(repo, number)

    def get_ref(self, repo: str, ref: str) -> Ref:
        return self.inner.get_ref(repo, ref)

    # -- writes without free text -----------------------------------------------------------

    def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> tuple[str, ...]:
        return self.inner.add_labels(repo, number, labels)

    def remove_label(self, repo: str, number: int, label: str) -> None:
        self.inner.remove_label(repo, number, label)

    def rerequest_check_run(self, repo: str, check_run_id: int) -> None:
        self.inner.rerequest_check_run(repo, check_run_id)

    def create_ref(self, repo: str, ref: str, sha: str) -> Ref:
        return self.inner.create_ref(repo, ref, sha)

    def update_ref(self, repo: str, ref: str, sha: str, *, force: bool = False) -> Ref:
        return self.inner.update_ref(repo, ref, sha, force=force)

    def delete_ref(self, repo: str, ref: str) -> None:
        self.inner.delete_ref(repo, ref)

    def close_issue(self, repo: str, number: int, *, reason: str = "completed") -> Issue:
        return self.inner.close_issue(repo, number, reason=reason)

    def close_pull(self, repo: str, number: int) -> PullRequest:
        return self.inner.close_pull(repo, number)

    # -- writes of free text (redacted) -----------------------------------------------------

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        return self.inner.create_comment(repo, number, self.redactor.redact(body))

    def edit_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        return self.inner.edit_comment(repo, comment_id, self.redactor.redact(body))

    def upsert_sticky_comment(self, repo: str, number: int, key: str, body: str) -> Comment:
        return self.inner.upsert_sticky_comment(repo, number, key, self.redactor.redact(body))

    def create_check_run(self, repo: str, request: CheckRunRequest) -> CheckRun:
        return self.inner.create_check_run(
            repo, replace(request, output=self._output(request.output))
        )

    def update_check_run(self, repo: str, check_run_id: int, update: CheckRunUpdate) -> CheckRun:
        return self.inner.update_check_run(
            repo, check_run_id, replace(update, output=self._output(update.output))
        )

    def create_pull(
        self, repo: str, *, title: str, head: str, base: str, body: str = "", draft: bool = False
    ) -> PullRequest:
        return self.inner.create_pull(
            repo,
            title=self.redactor.redact(title),
            head=head,
            base=base,
            body=self.redactor.redact(body),
            draft=draft,
        )

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
        return self.inner.merge_pull(
            repo,
            number,
            sha=sha,
            method=method,
            commit_title=self._optional(commit_title),
            commit_message=self._optional(commit_message),
        )

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
        return self.inner.create_review(
            repo,
            number,
            commit_sha=commit_sha,
            event=event,
            body=self.redactor.redact(body),
            comments=[replace(c, body=self.redactor.redact(c.body)) for c in comments],
        )
