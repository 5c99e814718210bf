"""A recording, in-memory GitHub for unit tests of other areas.

Pure in-memory state; performs no I/O. It implements `GitHubPort` with GitHub's semantics
for the operations trunkline uses (merge checks the head `sha`, ref updates without force
must fast-forward over a commit graph you seed, labels and comments behave like GitHub's)
and records every port call in `calls`. Seed it with the `add_*`/`set_*` methods; make the
next call of an operation fail with `fail_next`. Not thread-safe: one test, one fake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from trunkline.errors import TrunklineError
from trunkline.github.errors import (
    NonFastForwardError,
    NotFoundError,
    NotMergeableError,
    RefExistsError,
    StaleMergeShaError,
    ValidationFailedError,
)
from trunkline.github.model import (
    Actor,
    CheckRun,
    CheckRunRequest,
    CheckRunUpdate,
    CheckStatus,
    CombinedStatus,
    Comment,
    Commit,
    CommitStatus,
    FileContent,
    Issue,
    IssueEvent,
    Mergeability,
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
    ReviewState,
    full_ref,
)
from trunkline.github.sticky import find_sticky, sticky_body

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RecordedCall:
    operation: str
    repo: str
    args: tuple[object, ...] = ()


@dataclass
class FakeRepository:
    issues: dict[int, Issue] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    pull_files: dict[int, tuple[PullFile, ...]] = field(default_factory=dict)
    reviews: dict[int, list[Review]] = field(default_factory=dict)
    line_comments: dict[int, list[ReviewComment]] = field(default_factory=dict)
    comments: dict[int, list[int]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    commit_meta: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    files: dict[tuple[str, str], str] = field(default_factory=dict)
    check_runs: list[CheckRun] = field(default_factory=list)
    statuses: dict[str, list[CommitStatus]] = field(default_factory=dict)
    permissions: dict[str, Permission] = field(default_factory=dict)
    issue_events: dict[int, list[IssueEvent]] = field(default_factory=dict)
    next_number: int = 1


class FakeGitHub:
    """In-memory GitHub. `bot_login` authors everything the port writes."""

    def __init__(self, bot_login: str = "trunkline[bot]") -> None:
        self.bot = Actor(bot_login, is_bot=True)
        self.repos: dict[str, FakeRepository] = {}
        self.comments: dict[int, tuple[str, Comment]] = {}
        self.calls: list[RecordedCall] = []
        self.review_comments: dict[tuple[str, int], list[ReviewLineComment]] = {}
        self._failures: dict[str, list[TrunklineError]] = {}
        self._next_id = 1000

    # -- seeding and inspection -------------------------------------------------------------

    def add_repo(
        self, repo: str, *, default_branch: str = "main", root_sha: str = "0" * 40
    ) -> None:
        state = self.repos.setdefault(repo, FakeRepository())
        state.parents.setdefault(root_sha, ())
        state.refs.setdefault(f"refs/heads/{default_branch}", root_sha)

    def add_commit(
        self,
        repo: str,
        sha: str,
        *parents: str,
        message: str = "",
        author: str | None = None,
        committer: str | None = None,
    ) -> str:
        """A commit of the graph; `author` / `committer` are the linked GitHub logins."""
        state = self._repo(repo)
        state.parents[sha] = tuple(parents)
        state.commit_meta[sha] = (message, author, committer)
        return sha

    def set_ref(self, repo: str, ref: str, sha: str) -> None:
        self._repo(repo).refs[full_ref(ref)] = sha

    def set_file(self, repo: str, ref: str, path: str, text: str) -> None:
        self._repo(repo).files[(ref, path)] = text

    def set_permission(self, repo: str, login: str, permission: Permission) -> None:
        self._repo(repo).permissions[login] = permission

    def add_issue(
        self,
        repo: str,
        *,
        title: str,
        body: str = "",
        author: str = "alice",
        labels: Sequence[str] = (),
    ) -> Issue:
        state = self._repo(repo)
        issue = Issue(repo, state.next_number, title, body, "open", Actor(author), tuple(labels))
        state.issues[issue.number] = issue
        state.next_number += 1
        return issue

    def label_issue(
        self, repo: str, number: int, label: str, *, by: str, at: datetime | None = None
    ) -> None:
        """A human adds `label` on GitHub (no webhook here): the label and its `labeled`
        event by `by`, at `at` (default: now)."""
        issue = self._issue(repo, number)
        if label not in issue.labels:
            self._set_labels(repo, number, (*issue.labels, label))
            self._log_label_event(repo, number, "labeled", label, Actor(by), at)

    def unlabel_issue(
        self, repo: str, number: int, label: str, *, by: str, at: datetime | None = None
    ) -> None:
        """A human removes `label` on GitHub: the label goes, an `unlabeled` event by `by`."""
        issue = self._issue(repo, number)
        if label in issue.labels:
            self._set_labels(repo, number, tuple(x for x in issue.labels if x != label))
            self._log_label_event(repo, number, "unlabeled", label, Actor(by), at)

    def add_pull(
        self,
        repo: str,
        *,
        head_ref: str,
        head_sha: str,
        base_ref: str = "main",
        title: str = "A change",
        author: str = "alice",
        mergeable: Mergeability = Mergeability.MERGEABLE,
        files: Sequence[PullFile] = (),
    ) -> PullRequest:
        state = self._repo(repo)
        number = state.next_number
        state.next_number += 1
        state.parents.setdefault(head_sha, (state.refs.get(f"refs/heads/{base_ref}", "0" * 40),))
        state.refs[f"refs/heads/{head_ref}"] = head_sha
        pull = PullRequest(
            repo=repo,
            number=number,
            title=title,
            body="",
            state="open",
            author=Actor(author),
            head_sha=head_sha,
            head_ref=head_ref,
            base_ref=base_ref,
            base_sha=state.refs.get(f"refs/heads/{base_ref}", "0" * 40),
            head_repo=repo,
            mergeable=mergeable,
            mergeable_state="clean" if mergeable is Mergeability.MERGEABLE else "dirty",
        )
        state.pulls[number] = pull
        state.issues[number] = Issue(
            repo, number, title, "", "open", Actor(author), is_pull_request=True
        )
        state.pull_files[number] = tuple(files)
        return pull

    def push_to_pull(self, repo: str, number: int, new_head_sha: str) -> None:
        """A push to the PR branch: the head moves (what makes a merge `sha` stale)."""
        state = self._repo(repo)
        pull = self._pull(repo, number)
        state.parents.setdefault(new_head_sha, (pull.head_sha,))
        state.refs[f"refs/heads/{pull.head_ref}"] = new_head_sha
        state.pulls[number] = replace(pull, head_sha=new_head_sha)

    def retarget_pull(self, repo: str, number: int, base_ref: str) -> None:
        """A human edits the PR's base branch."""
        state = self._repo(repo)
        pull = self._pull(repo, number)
        base_sha = state.refs.get(f"refs/heads/{base_ref}", "0" * 40)
        state.pulls[number] = replace(pull, base_ref=base_ref, base_sha=base_sha)

    def add_review(
        self,
        repo: str,
        number: int,
        *,
        author: str,
        state: ReviewState,
        commit_sha: str,
        body: str = "",
        comments: Sequence[ReviewLineComment] = (),
        submitted_at: datetime | None = None,
    ) -> Review:
        """A review by someone else (a human), with line comments on the diff."""
        when = _EPOCH if submitted_at is None else submitted_at
        review = Review(self._new_id(), Actor(author), state, commit_sha, body, when)
        self._repo(repo).reviews.setdefault(number, []).append(review)
        self._add_line_comments(repo, number, review, comments)
        return review

    def _add_line_comments(
        self, repo: str, number: int, review: Review, comments: Sequence[ReviewLineComment]
    ) -> None:
        listed = self._repo(repo).line_comments.setdefault(number, [])
        for note in comments:
            listed.append(
                ReviewComment(
                    self._new_id(), review.id, review.author, note.path, note.line, note.body
                )
            )

    def set_status(self, repo: str, sha: str, context: str, state: str) -> None:
        statuses = self._repo(repo).statuses.setdefault(sha, [])
        statuses[:] = [s for s in statuses if s.context != context] + [CommitStatus(context, state)]

    def add_comment(self, repo: str, number: int, *, author: str, body: str) -> Comment:
        """A comment by someone else (a human), as if written on GitHub."""
        comment = self._create_comment(repo, number, body)
        comment = replace(comment, author=Actor(author, is_bot=author.endswith("[bot]")))
        self.comments[comment.id] = (repo, comment)
        return comment

    def fail_next(self, operation: str, error: TrunklineError) -> None:
        """The next call of `operation` (a port method name) raises `error` instead."""
        self._failures.setdefault(operation, []).append(error)

    def calls_of(self, operation: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.operation == operation]

    def comments_on(self, repo: str, number: int) -> tuple[Comment, ...]:
        return self.list_issue_comments(repo, number)

    def as_written(self, text: str) -> str:
        return text

    # -- reads ------------------------------------------------------------------------------

    def get_issue(self, repo: str, number: int) -> Issue:
        self._record("get_issue", repo, number)
        state = self._repo(repo)
        if number not in state.issues:
            raise NotFoundError(f"{repo}#{number} not found", status=404)
        return state.issues[number]

    def list_issues(
        self,
        repo: str,
        *,
        labels: Sequence[str] = (),
        state: str = "open",
        limit: int = 100,
    ) -> tuple[Issue, ...]:
        self._record("list_issues", repo, tuple(labels), state, limit)
        wanted = {label.lower() for label in labels}
        found = [
            issue
            for issue in self._repo(repo).issues.values()
            if (state == "all" or issue.state == state)
            and wanted <= {label.lower() for label in issue.labels}
        ]
        # most recently updated first: the fake's issues carry no times, so newest number first
        found.sort(key=lambda issue: (issue.updated_at or _EPOCH, issue.number), reverse=True)
        return tuple(found[: max(limit, 0)])

    def list_issue_events(self, repo: str, number: int) -> tuple[IssueEvent, ...]:
        self._record("list_issue_events", repo, number)
        self._issue(repo, number)
        return tuple(self._repo(repo).issue_events.get(number, ()))

    def get_pull(self, repo: str, number: int, *, wait_for_mergeable: bool = False) -> PullRequest:
        self._record("get_pull", repo, number, wait_for_mergeable)
        return self._pull(repo, number)

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        self._record("find_open_pull", repo, head, base)
        for pull in self._repo(repo).pulls.values():
            if (pull.head_ref, pull.base_ref, pull.state) == (head, base, "open"):
                return pull
        return None

    def list_pull_files(self, repo: str, number: int) -> tuple[PullFile, ...]:
        self._record("list_pull_files", repo, number)
        self._pull(repo, number)
        return self._repo(repo).pull_files.get(number, ())

    def list_reviews(self, repo: str, number: int) -> tuple[Review, ...]:
        self._record("list_reviews", repo, number)
        self._pull(repo, number)
        return tuple(self._repo(repo).reviews.get(number, ()))

    def list_review_comments(self, repo: str, number: int) -> tuple[ReviewComment, ...]:
        self._record("list_review_comments", repo, number)
        self._pull(repo, number)
        return tuple(self._repo(repo).line_comments.get(number, ()))

    def list_pull_commits(self, repo: str, number: int) -> tuple[Commit, ...]:
        self._record("list_pull_commits", repo, number)
        pull = self._pull(repo, number)
        base = self._repo(repo).refs.get(f"refs/heads/{pull.base_ref}", pull.base_sha)
        return self._commits_between(repo, base, pull.head_sha)

    def compare_commits(self, repo: str, base: str, head: str) -> tuple[Commit, ...]:
        self._record("compare_commits", repo, base, head)
        state = self._repo(repo)
        if base not in state.parents or head not in state.parents:
            raise NotFoundError(f"no commit {base} or {head} in {repo}", status=404)
        return self._commits_between(repo, base, head)

    def list_check_runs(self, repo: str, sha: str) -> tuple[CheckRun, ...]:
        self._record("list_check_runs", repo, sha)
        return tuple(run for run in self._repo(repo).check_runs if run.head_sha == sha)

    def get_combined_status(self, repo: str, sha: str) -> CombinedStatus:
        self._record("get_combined_status", repo, sha)
        statuses = tuple(self._repo(repo).statuses.get(sha, ()))
        states = {status.state for status in statuses}
        if not statuses:
            combined = "pending"
        elif states & {"failure", "error"}:
            combined = "failure"
        elif "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        return CombinedStatus(sha, combined, statuses)

    def get_permission(self, repo: str, login: str) -> Permission:
        self._record("get_permission", repo, login)
        return self._repo(repo).permissions.get(login, Permission.NONE)

    def get_file(self, repo: str, path: str, ref: str) -> FileContent | None:
        self._record("get_file", repo, path, ref)
        state = self._repo(repo)
        text = state.files.get((ref, path))
        if text is None:
            sha = state.refs.get(f"refs/heads/{ref}")
            text = state.files.get((sha, path)) if sha else None
        if text is None:
            return None
        return FileContent(path, ref, hashlib.sha1(text.encode()).hexdigest(), text)  # noqa: S324

    def list_issue_comments(self, repo: str, number: int) -> tuple[Comment, ...]:
        self._record("list_issue_comments", repo, number)
        ids = self._repo(repo).comments.get(number, [])
        return tuple(self.comments[comment_id][1] for comment_id in ids)

    def get_ref(self, repo: str, ref: str) -> Ref:
        self._record("get_ref", repo, ref)
        name = full_ref(ref)
        sha = self._repo(repo).refs.get(name)
        if sha is None:
            raise NotFoundError(f"{repo} has no ref {name}", status=404)
        return Ref(name, sha)

    # -- writes -----------------------------------------------------------------------------

    def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> tuple[str, ...]:
        self._record("add_labels", repo, number, tuple(labels))
        issue = self._issue(repo, number)
        added = tuple(dict.fromkeys(label for label in labels if label not in issue.labels))
        merged = issue.labels + added
        self._set_labels(repo, number, merged)
        for label in added:
            self._log_label_event(repo, number, "labeled", label, self.bot, None)
        return merged

    def remove_label(self, repo: str, number: int, label: str) -> None:
        self._record("remove_label", repo, number, label)
        issue = self._issue(repo, number)
        if label in issue.labels:
            self._set_labels(repo, number, tuple(x for x in issue.labels if x != label))
            self._log_label_event(repo, number, "unlabeled", label, self.bot, None)

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        self._record("create_comment", repo, number, body)
        return self._create_comment(repo, number, body)

    def edit_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        self._record("edit_comment", repo, comment_id, body)
        return self._edit_comment(repo, comment_id, body)

    def upsert_sticky_comment(self, repo: str, number: int, key: str, body: str) -> Comment:
        self._record("upsert_sticky_comment", repo, number, key, body)
        self._issue(repo, number)
        existing = find_sticky(
            (self.comments[i][1] for i in self._repo(repo).comments.get(number, [])),
            key,
            self.bot.login,
        )
        full = sticky_body(key, body)
        if existing is None:
            return self._create_comment(repo, number, full)
        if existing.body == full:
            return existing
        return self._edit_comment(repo, existing.id, full)

    def create_check_run(self, repo: str, request: CheckRunRequest) -> CheckRun:
        self._record("create_check_run", repo, request)
        if request.conclusion is not None and request.status is not CheckStatus.COMPLETED:
            raise ValidationFailedError("a conclusion needs status completed", status=422)
        run = CheckRun(
            id=self._new_id(),
            name=request.name,
            head_sha=request.head_sha,
            status=request.status,
            conclusion=request.conclusion,
            external_id=request.external_id,
            details_url=request.details_url,
            app_slug=self.bot.login.removesuffix("[bot]"),
            title=request.output.title if request.output else None,
            summary=request.output.summary if request.output else None,
            started_at=request.started_at,
            completed_at=request.completed_at,
        )
        self._repo(repo).check_runs.append(run)
        return run

    def rerequest_check_run(self, repo: str, check_run_id: int) -> None:
        """Recorded; the run goes back to queued (a CI would report the rerun later)."""
        self._record("rerequest_check_run", repo, check_run_id)
        runs = self._repo(repo).check_runs
        for index, run in enumerate(runs):
            if run.id == check_run_id:
                runs[index] = replace(run, status=CheckStatus.QUEUED, conclusion=None)
                return
        raise NotFoundError(f"check run {check_run_id} not found", status=404)

    def update_check_run(self, repo: str, check_run_id: int, update: CheckRunUpdate) -> CheckRun:
        self._record("update_check_run", repo, check_run_id, update)
        runs = self._repo(repo).check_runs
        for index, run in enumerate(runs):
            if run.id == check_run_id:
                changed = replace(
                    run,
                    status=update.status or run.status,
                    conclusion=update.conclusion or run.conclusion,
                    details_url=update.details_url or run.details_url,
                    completed_at=update.completed_at or run.completed_at,
                    title=update.output.title if update.output else run.title,
                    summary=update.output.summary if update.output else run.summary,
                )
                if changed.conclusion is not None:
                    changed = replace(changed, status=CheckStatus.COMPLETED)
                runs[index] = changed
                return changed
        raise NotFoundError(f"check run {check_run_id} not found", status=404)

    def create_ref(self, repo: str, ref: str, sha: str) -> Ref:
        self._record("create_ref", repo, ref, sha)
        state = self._repo(repo)
        name = full_ref(ref)
        if name in state.refs:
            raise RefExistsError("Reference already exists", status=422)
        state.refs[name] = sha
        return Ref(name, sha)

    def update_ref(self, repo: str, ref: str, sha: str, *, force: bool = False) -> Ref:
        self._record("update_ref", repo, ref, sha, force)
        state = self._repo(repo)
        name = full_ref(ref)
        if name not in state.refs:
            raise NotFoundError("Reference does not exist", status=422)
        if not force and not self._descends(state, sha, state.refs[name]):
            raise NonFastForwardError("Update is not a fast forward", status=422)
        state.refs[name] = sha
        return Ref(name, sha)

    def delete_ref(self, repo: str, ref: str) -> None:
        self._record("delete_ref", repo, ref)
        self._repo(repo).refs.pop(full_ref(ref), None)

    def create_pull(
        self, repo: str, *, title: str, head: str, base: str, body: str = "", draft: bool = False
    ) -> PullRequest:
        self._record("create_pull", repo, title, head, base, body, draft)
        state = self._repo(repo)
        head_sha = state.refs.get(f"refs/heads/{head}")
        if head_sha is None or f"refs/heads/{base}" not in state.refs:
            raise ValidationFailedError("Validation Failed: unknown head or base", status=422)
        pull = self.add_pull(repo, head_ref=head, head_sha=head_sha, base_ref=base, title=title)
        pull = replace(pull, body=body, draft=draft, author=self.bot)
        state.pulls[pull.number] = pull
        return pull

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
        self._record("merge_pull", repo, number, sha, method, commit_title, commit_message)
        state = self._repo(repo)
        pull = self._pull(repo, number)
        if pull.state != "open" or pull.merged:
            raise NotMergeableError("Pull Request is not mergeable", status=405)
        if pull.head_sha != sha:
            raise StaleMergeShaError(
                "Head branch was modified. Review and try the merge again.", status=409
            )
        if pull.mergeable is not Mergeability.MERGEABLE:
            raise NotMergeableError("Pull Request is not mergeable", status=405)
        base_name = f"refs/heads/{pull.base_ref}"
        base_sha = state.refs[base_name]
        digest = hashlib.sha1(f"{method}:{base_sha}:{sha}".encode()).hexdigest()  # noqa: S324
        parents = (base_sha, sha) if method is MergeMethod.MERGE else (base_sha,)
        state.parents[digest] = parents
        state.refs[base_name] = digest
        state.pulls[number] = replace(pull, state="closed", merged=True, merge_commit_sha=digest)
        state.issues[number] = replace(state.issues[number], state="closed")
        return MergeResult(True, digest, "Pull Request successfully merged")

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
        self._record("create_review", repo, number, commit_sha, event, body, tuple(comments))
        self._pull(repo, number)
        known = {f.path for f in self._repo(repo).pull_files.get(number, ())}
        for comment in comments:
            if known and comment.path not in known:
                raise ValidationFailedError(
                    "Validation Failed: pull request review thread path must be part of the diff",
                    status=422,
                )
        self.review_comments.setdefault((repo, number), []).extend(comments)
        states = {
            ReviewEvent.APPROVE: ReviewState.APPROVED,
            ReviewEvent.REQUEST_CHANGES: ReviewState.CHANGES_REQUESTED,
            ReviewEvent.COMMENT: ReviewState.COMMENTED,
        }
        review = Review(self._new_id(), self.bot, states[event], commit_sha, body, _EPOCH)
        self._repo(repo).reviews.setdefault(number, []).append(review)
        self._add_line_comments(repo, number, review, comments)
        return review

    def close_issue(self, repo: str, number: int, *, reason: str = "completed") -> Issue:
        self._record("close_issue", repo, number, reason)
        state = self._repo(repo)
        if number not in state.issues:
            raise NotFoundError(f"{repo}#{number} not found", status=404)
        closed = replace(state.issues[number], state="closed")
        state.issues[number] = closed
        return closed

    def close_pull(self, repo: str, number: int) -> PullRequest:
        self._record("close_pull", repo, number)
        state = self._repo(repo)
        pull = self._pull(repo, number)
        if pull.state == "open" and not pull.merged:
            pull = replace(pull, state="closed")
            state.pulls[number] = pull
            state.issues[number] = replace(state.issues[number], state="closed")
        return pull

    # -- internals --------------------------------------------------------------------------

    def _record(self, operation: str, repo: str, *args: object) -> None:
        self.calls.append(RecordedCall(operation, repo, args))
        pending = self._failures.get(operation)
        if pending:
            raise pending.pop(0)

    def _repo(self, repo: str) -> FakeRepository:
        if repo not in self.repos:
            raise NotFoundError(f"repository {repo} not found", status=404)
        return self.repos[repo]

    def _issue(self, repo: str, number: int) -> Issue:
        state = self._repo(repo)
        if number not in state.issues:
            raise NotFoundError(f"{repo}#{number} not found", status=404)
        return state.issues[number]

    def _pull(self, repo: str, number: int) -> PullRequest:
        state = self._repo(repo)
        if number not in state.pulls:
            raise NotFoundError(f"pull request {repo}#{number} not found", status=404)
        return state.pulls[number]

    def _set_labels(self, repo: str, number: int, labels: tuple[str, ...]) -> None:
        state = self._repo(repo)
        state.issues[number] = replace(state.issues[number], labels=labels)
        if number in state.pulls:
            state.pulls[number] = replace(state.pulls[number], labels=labels)

    def _log_label_event(
        self, repo: str, number: int, kind: str, label: str, actor: Actor, at: datetime | None
    ) -> None:
        event = IssueEvent(self._new_id(), kind, actor, at or datetime.now(UTC), label)
        self._repo(repo).issue_events.setdefault(number, []).append(event)

    def _create_comment(self, repo: str, number: int, body: str) -> Comment:
        self._issue(repo, number)
        comment = Comment(self._new_id(), body, self.bot, created_at=_EPOCH, updated_at=_EPOCH)
        self.comments[comment.id] = (repo, comment)
        self._repo(repo).comments.setdefault(number, []).append(comment.id)
        return comment

    def _edit_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        found = self.comments.get(comment_id)
        if found is None or found[0] != repo:
            raise NotFoundError(f"comment {comment_id} not found", status=404)
        comment = replace(found[1], body=body)
        self.comments[comment_id] = (repo, comment)
        return comment

    def _commits_between(self, repo: str, base: str, head: str) -> tuple[Commit, ...]:
        """Commits reachable from `head` and not from `base`, parents before children."""
        state = self._repo(repo)
        excluded = self._ancestors(state, base)
        ordered: list[str] = []
        seen: set[str] = set()

        def visit(sha: str) -> None:
            if sha in seen or sha in excluded:
                return
            seen.add(sha)
            for parent in state.parents.get(sha, ()):
                visit(parent)
            ordered.append(sha)

        visit(head)
        commits = []
        for sha in ordered:
            message, author, committer = state.commit_meta.get(sha, ("", None, None))
            commits.append(
                Commit(
                    sha,
                    state.parents.get(sha, ()),
                    message,
                    Actor(author) if author else None,
                    Actor(committer) if committer else None,
                )
            )
        return tuple(commits)

    def _ancestors(self, state: FakeRepository, sha: str) -> set[str]:
        seen: set[str] = set()
        stack = [sha]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(state.parents.get(current, ()))
        return seen

    def _descends(self, state: FakeRepository, sha: str, ancestor: str) -> bool:
        seen: set[str] = set()
        stack = [sha]
        while stack:
            current = stack.pop()
            if current == ancestor:
                return True
            if current in seen:
                continue
            seen.add(current)
            stack.extend(state.parents.get(current, ()))
        return False

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id
