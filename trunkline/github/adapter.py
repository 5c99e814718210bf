"""The PyGithub adapter: `GitHubPort` for one installation of a GitHub App.

Performs I/O (HTTPS through PyGithub's `Requester`). PyGithub provides the HTTP session,
`base_url` handling (github.com, GitHub Enterprise `https://host/api/v3`, the forge) and the
Authorization header; everything with a policy is ours and runs on the injected `Clock`:

- PyGithub's own retries and throttling are off (`retry=None`, no `seconds_between_*`):
  they would sleep for real and fight this policy.
- Auth: `TokenSource` (normally `InstallationTokenProvider`: cached, refreshed with at least
  5 minutes left). A 401 invalidates the token and retries once; a second 401 is terminal.
- Rate limits: see `ratelimit` (retry-after, x-ratelimit-reset, secondary backoff, give up
  with `RateLimitedError`). Successful responses with `x-ratelimit-remaining: 0` make the
  next request wait for the reset.
- Writes for the installation are serialized by one lock (held across a sticky upsert's
  read-then-write) and spaced by `min_write_interval` (GitHub's advice against secondary
  limits).
- Conditional reads: GETs send `If-None-Match` with the ETag of the last response for that
  URL (a bounded LRU of bodies); a 304 reuses the body and does not cost rate limit.
- `mergeable: null` is re-polled with a bounded, clock-driven backoff and stays UNKNOWN
  (never mergeable) if GitHub has not decided.
Snapshots are built from the JSON (`parse`); no PyGithub object escapes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from github import Auth, Github

from trunkline.clock import Clock
from trunkline.github import parse
from trunkline.github.errors import (
    GitHubUnavailableError,
    NotFoundError,
    RateLimitedError,
    ValidationFailedError,
)
from trunkline.github.model import (
    CheckConclusion,
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
    full_ref,
    split_repo,
)
from trunkline.github.ratelimit import GiveUp, RateLimitPolicy, Wait, decide
from trunkline.github.ratelimit import wait_before_next_request as reset_wait
from trunkline.github.responses import error_for, message_of, next_page
from trunkline.github.sticky import find_sticky, sticky_body
from trunkline.github.tokens import TokenSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterOptions:
    per_page: int = 100
    timeout_seconds: int = 30
    min_write_interval: float = 1.0
    mergeable_poll_attempts: int = 5
    mergeable_first_wait: float = 1.0
    etag_cache_entries: int = 512
    rate_limits: RateLimitPolicy = field(default_factory=RateLimitPolicy)


class _TokenAuth(Auth.Auth):
    """PyGithub auth that asks the `TokenSource` on every request (so refreshes apply)."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        return self._source.token()

    @property
    def _masked_token(self) -> str:
        return "token (removed)"


@dataclass(frozen=True)
class _Cached:
    etag: str
    data: Any


@dataclass
class RequestStats:
    """Counters for benchmarks and tests: requests sent, 304s, waits, token refresh-retries."""

    requests: int = 0
    not_modified: int = 0
    rate_limit_waits: list[float] = field(default_factory=list)
    auth_retries: int = 0


class PyGithubAdapter:
    """`GitHubPort` over PyGithub for one installation (thread-safe)."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenSource,
        clock: Clock,
        bot_login: str | None = None,
        options: AdapterOptions | None = None,
        write_lock: threading.RLock | None = None,
    ) -> None:
        self._options = options or AdapterOptions()
        self._tokens = tokens
        self._clock = clock
        self._bot_login = bot_login
        self._github = Github(
            auth=_TokenAuth(tokens),
            base_url=base_url.rstrip("/"),
            timeout=self._options.timeout_seconds,
            per_page=self._options.per_page,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self._requester = self._github.requester
        self._write_lock = write_lock or threading.RLock()
        self._state_lock = threading.Lock()
        self._etags: OrderedDict[str, _Cached] = OrderedDict()
        self._reset_at: float | None = None
        self._last_write: float | None = None
        self.stats = RequestStats()

    def as_written(self, text: str) -> str:
        return text

    # -- reads ------------------------------------------------------------------------------

    def get_issue(self, repo: str, number: int) -> Issue:
        data = self._get("get_issue", f"{_repo_path(repo)}/issues/{number}")
        return parse.issue(repo, data)

    def list_issues(
        self,
        repo: str,
        *,
        labels: Sequence[str] = (),
        state: str = "open",
        limit: int = 100,
    ) -> tuple[Issue, ...]:
        params = {"state": state, "sort": "updated", "direction": "desc"}
        if labels:
            params["labels"] = ",".join(labels)
        found: list[Issue] = []
        if limit <= 0:
            return ()
        items = self._list(
            "list_issues", f"{_repo_path(repo)}/issues", params=params, page_size=limit
        )
        for item in items:
            found.append(parse.issue(repo, item))
            if len(found) >= limit:
                break  # the generator stops: no further page is requested
        return tuple(found)

    def list_issue_events(self, repo: str, number: int) -> tuple[IssueEvent, ...]:
        items = self._list("list_issue_events", f"{_repo_path(repo)}/issues/{number}/events")
        return tuple(parse.issue_event(item) for item in items)

    def get_pull(self, repo: str, number: int, *, wait_for_mergeable: bool = False) -> PullRequest:
        path = f"{_repo_path(repo)}/pulls/{number}"
        pull = parse.pull_request(repo, self._get("get_pull", path))
        delay = self._options.mergeable_first_wait
        attempts = self._options.mergeable_poll_attempts if wait_for_mergeable else 0
        for _ in range(attempts):
            if pull.mergeable is not Mergeability.UNKNOWN or pull.state != "open":
                break
            self._clock.sleep(delay)
            delay *= 2
            pull = parse.pull_request(repo, self._get("get_pull", path))
        return pull

    def find_open_pull(self, repo: str, *, head: str, base: str) -> PullRequest | None:
        owner = repo.split("/", 1)[0]
        params = {"state": "open", "head": f"{owner}:{head}", "base": base}
        for item in self._list("find_open_pull", f"{_repo_path(repo)}/pulls", params=params):
            return parse.pull_request(repo, item)
        return None

    def list_pull_files(self, repo: str, number: int) -> tuple[PullFile, ...]:
        items = self._list("list_pull_files", f"{_repo_path(repo)}/pulls/{number}/files")
        return tuple(parse.pull_file(item) for item in items)

    def list_reviews(self, repo: str, number: int) -> tuple[Review, ...]:
        items = self._list("list_reviews", f"{_repo_path(repo)}/pulls/{number}/reviews")
        return tuple(parse.review(item) for item in items)

    def list_pull_commits(self, repo: str, number: int) -> tuple[Commit, ...]:
        items = self._list("list_pull_commits", f"{_repo_path(repo)}/pulls/{number}/commits")
        return tuple(parse.commit(item) for item in items)

    def compare_commits(self, repo: str, base: str, head: str) -> tuple[Commit, ...]:
        basehead = f"{quote(base, safe='')}...{quote(head, safe='')}"
        data = self._get("compare_commits", f"{_repo_path(repo)}/compare/{basehead}")
        items = data.get("commits") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ValidationFailedError(f"compare_commits: no commit list for {base}...{head}")
        return tuple(parse.commit(item) for item in items)

    def list_review_comments(self, repo: str, number: int) -> tuple[ReviewComment, ...]:
        items = self._list("list_review_comments", f"{_repo_path(repo)}/pulls/{number}/comments")
        return tuple(parse.review_comment(item) for item in items)

    def list_check_runs(self, repo: str, sha: str) -> tuple[CheckRun, ...]:
        path = f"{_repo_path(repo)}/commits/{quote(sha, safe='')}/check-runs"
        items = self._list("list_check_runs", path, key="check_runs")
        return tuple(parse.check_run(item) for item in items)

    def get_combined_status(self, repo: str, sha: str) -> CombinedStatus:
        path = f"{_repo_path(repo)}/commits/{quote(sha, safe='')}/status"
        return parse.combined_status(self._get("get_combined_status", path))

    def get_permission(self, repo: str, login: str) -> Permission:
        path = f"{_repo_path(repo)}/collaborators/{quote(login, safe='')}/permission"
        try:
            return parse.permission(self._get("get_permission", path))
        except NotFoundError:
            return Permission.NONE

    def get_file(self, repo: str, path: str, ref: str) -> FileContent | None:
        url = f"{_repo_path(repo)}/contents/{quote(path.lstrip('/'))}"
        try:
            data = self._get("get_file", url, params={"ref": ref})
        except NotFoundError:
            return None
        return parse.file_content(path, ref, data)

    def list_issue_comments(self, repo: str, number: int) -> tuple[Comment, ...]:
        items = self._list("list_issue_comments", f"{_repo_path(repo)}/issues/{number}/comments")
        return tuple(parse.comment(item) for item in items)

    def get_ref(self, repo: str, ref: str) -> Ref:
        name = full_ref(ref).removeprefix("refs/")
        data = self._get("get_ref", f"{_repo_path(repo)}/git/ref/{quote(name)}")
        return parse.ref(data)

    # -- writes -----------------------------------------------------------------------------

    def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> tuple[str, ...]:
        data = self._write(
            "add_labels",
            "POST",
            f"{_repo_path(repo)}/issues/{number}/labels",
            {"labels": list(labels)},
        )
        return tuple(str(item["name"]) for item in data or [])

    def remove_label(self, repo: str, number: int, label: str) -> None:
        path = f"{_repo_path(repo)}/issues/{number}/labels/{quote(label, safe='')}"
        try:
            self._write("remove_label", "DELETE", path, None)
        except NotFoundError:
            return

    def create_comment(self, repo: str, number: int, body: str) -> Comment:
        path = f"{_repo_path(repo)}/issues/{number}/comments"
        return parse.comment(self._write("create_comment", "POST", path, {"body": body}))

    def edit_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        path = f"{_repo_path(repo)}/issues/comments/{comment_id}"
        return parse.comment(self._write("edit_comment", "PATCH", path, {"body": body}))

    def upsert_sticky_comment(self, repo: str, number: int, key: str, body: str) -> Comment:
        full = sticky_body(key, body)
        with self._write_lock:
            existing = find_sticky(self.list_issue_comments(repo, number), key, self._bot_login)
            if existing is None:
                return self.create_comment(repo, number, full)
            if existing.body == full:
                return existing
            return self.edit_comment(repo, existing.id, full)

    def create_check_run(self, repo: str, request: CheckRunRequest) -> CheckRun:
        body: dict[str, Any] = {
            "name": request.name,
            "head_sha": request.head_sha,
            "status": str(request.status),
        }
        body.update(
            _check_fields(
                conclusion=request.conclusion,
                output=request.output,
                details_url=request.details_url,
                completed_at=request.completed_at,
            )
        )
        if request.external_id is not None:
            body["external_id"] = request.external_id
        if request.started_at is not None:
            body["started_at"] = request.started_at.isoformat()
        path = f"{_repo_path(repo)}/check-runs"
        return parse.check_run(self._write("create_check_run", "POST", path, body))

    def update_check_run(self, repo: str, check_run_id: int, update: CheckRunUpdate) -> CheckRun:
        body: dict[str, Any] = {}
        if update.status is not None:
            body["status"] = str(update.status)
        body.update(
            _check_fields(
                conclusion=update.conclusion,
                output=update.output,
                details_url=update.details_url,
                completed_at=update.completed_at,
            )
        )
        path = f"{_repo_path(repo)}/check-runs/{check_run_id}"
        return parse.check_run(self._write("update_check_run", "PATCH", path, body))

    def create_ref(self, repo: str, ref: str, sha: str) -> Ref:
        body = {"ref": full_ref(ref), "sha": sha}
        return parse.ref(self._write("create_ref", "POST", f"{_repo_path(repo)}/git/refs", body))

    def update_ref(self, repo: str, ref: str, sha: str, *, force: bool = False) -> Ref:
        name = full_ref(ref).removeprefix("refs/")
        path = f"{_repo_path(repo)}/git/refs/{quote(name)}"
        return parse.ref(self._write("update_ref", "PATCH", path, {"sha": sha, "force": force}))

    def delete_ref(self, repo: str, ref: str) -> None:
        name = full_ref(ref).removeprefix("refs/")
        try:
            self._write("delete_ref", "DELETE", f"{_repo_path(repo)}/git/refs/{quote(name)}", None)
        except NotFoundError:
            return

    def create_pull(
        self, repo: str, *, title: str, head: str, base: str, body: str = "", draft: bool = False
    ) -> PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        data = self._write("create_pull", "POST", f"{_repo_path(repo)}/pulls", payload)
        return parse.pull_request(repo, data)

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
        payload: dict[str, Any] = {"sha": sha, "merge_method": str(method)}
        if commit_title is not None:
            payload["commit_title"] = commit_title
        if commit_message is not None:
            payload["commit_message"] = commit_message
        path = f"{_repo_path(repo)}/pulls/{number}/merge"
        return parse.merge_result(self._write("merge_pull", "PUT", path, payload))

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
        payload: dict[str, Any] = {"commit_id": commit_sha, "event": str(event), "body": body}
        if comments:
            payload["comments"] = [
                {"path": c.path, "line": c.line, "side": "RIGHT", "body": c.body} for c in comments
            ]
        path = f"{_repo_path(repo)}/pulls/{number}/reviews"
        return parse.review(self._write("create_review", "POST", path, payload))

    def close_issue(self, repo: str, number: int, *, reason: str = "completed") -> Issue:
        path = f"{_repo_path(repo)}/issues/{number}"
        payload = {"state": "closed", "state_reason": reason}
        return parse.issue(repo, self._write("close_issue", "PATCH", path, payload))

    def rerequest_check_run(self, repo: str, check_run_id: int) -> None:
        path = f"{_repo_path(repo)}/check-runs/{check_run_id}/rerequest"
        self._write("rerequest_check_run", "POST", path, {})

    def close_pull(self, repo: str, number: int) -> PullRequest:
        path = f"{_repo_path(repo)}/pulls/{number}"
        return parse.pull_request(
            repo, self._write("close_pull", "PATCH", path, {"state": "closed"})
        )

    # -- transport --------------------------------------------------------------------------

    def _get(self, operation: str, path: str, params: dict[str, str] | None = None) -> Any:
        _, data = self._send(operation, "GET", path, params=params)
        return data

    def _list(
        self,
        operation: str,
        path: str,
        *,
        key: str | None = None,
        params: dict[str, str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Any]:
        url: str | None = path
        per_page = min(self._options.per_page, page_size or self._options.per_page)
        query: dict[str, str] | None = {**(params or {}), "per_page": str(per_page)}
        while url is not None:
            headers, data = self._send(operation, "GET", url, params=query)
            page = data.get(key) if key and isinstance(data, dict) else data
            if not isinstance(page, list):
                raise ValidationFailedError(f"{operation}: expected a list from {path}")
            yield from page
            url, query = next_page(headers), None

    def _write(self, operation: str, verb: str, path: str, body: Any) -> Any:
        with self._write_lock:
            self._space_writes()
            try:
                _, data = self._send(operation, verb, path, body=body)
            finally:
                self._last_write = self._clock.monotonic()
            return data

    def _space_writes(self) -> None:
        if self._last_write is None:
            return
        elapsed = self._clock.monotonic() - self._last_write
        if elapsed < self._options.min_write_interval:
            self._clock.sleep(self._options.min_write_interval - elapsed)

    def _send(
        self,
        operation: str,
        verb: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[dict[str, str], Any]:
        cache_key = f"{url}?{sorted((params or {}).items())}"
        attempt = 0
        refreshed = False
        while True:
            self._wait_for_known_reset()
            headers = {"Accept": "application/vnd.github+json"}
            cached = self._cached(cache_key) if verb == "GET" else None
            if cached is not None:
                headers["If-None-Match"] = cached.etag
            status, response_headers, output = self._request(verb, url, params, headers, body)
            data = _decode(output)
            if status == 304 and cached is not None:
                with self._state_lock:
                    self.stats.not_modified += 1
                return response_headers, cached.data
            if 200 <= status < 300:
                etag = response_headers.get("etag")
                if verb == "GET" and etag:
                    self._remember(cache_key, _Cached(etag, data))
                self._note_remaining(response_headers)
                return response_headers, data
            message = message_of(data)
            if status == 401 and not refreshed:
                refreshed = True
                self.stats.auth_retries += 1
                log.info("401 from GitHub; refreshing the token once", extra={"op": operation})
                self._tokens.invalidate()
                continue
            decision = decide(
                status,
                response_headers,
                message,
                attempt,
                self._clock.now().timestamp(),
                self._options.rate_limits,
            )
            if isinstance(decision, Wait):
                log.warning(
                    "rate limited; waiting",
                    extra={"op": operation, "seconds": decision.seconds, "why": decision.reason},
                )
                self.stats.rate_limit_waits.append(decision.seconds)
                self._clock.sleep(decision.seconds)
                attempt += 1
                continue
            if isinstance(decision, GiveUp):
                raise RateLimitedError(
                    f"{operation}: rate limited ({decision.reason}); giving up",
                    retry_after=decision.retry_after,
                )
            raise error_for(operation, status, message)

    def _request(
        self,
        verb: str,
        url: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        body: Any,
    ) -> tuple[int, dict[str, str], str]:
        with self._state_lock:
            self.stats.requests += 1
        try:
            status, response_headers, output = self._requester.requestJson(
                verb, url, parameters=params, headers=headers, input=body
            )
        except (requests.RequestException, OSError) as error:
            raise GitHubUnavailableError(f"{verb} {url}: {type(error).__name__}") from None
        return int(status), {k.lower(): str(v) for k, v in response_headers.items()}, output

    def _note_remaining(self, headers: dict[str, str]) -> None:
        wait = reset_wait(headers, self._clock.now().timestamp(), self._options.rate_limits)
        if wait > 0:
            with self._state_lock:
                self._reset_at = self._clock.now().timestamp() + wait

    def _wait_for_known_reset(self) -> None:
        with self._state_lock:
            reset_at, self._reset_at = self._reset_at, None
        if reset_at is None:
            return
        wait = reset_at - self._clock.now().timestamp()
        if wait > 0:
            self.stats.rate_limit_waits.append(wait)
            self._clock.sleep(wait)

    def _cached(self, key: str) -> _Cached | None:
        with self._state_lock:
            found = self._etags.get(key)
            if found is not None:
                self._etags.move_to_end(key)
            return found

    def _remember(self, key: str, entry: _Cached) -> None:
        with self._state_lock:
            self._etags[key] = entry
            self._etags.move_to_end(key)
            while len(self._etags) > self._options.etag_cache_entries:
                self._etags.popitem(last=False)


def _repo_path(repo: str) -> str:
    owner, name = split_repo(repo)
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def _decode(output: str) -> Any:
    if not output:
        return None
    try:
        return json.loads(output)
    except ValueError:
        return None


def _check_fields(
    *,
    conclusion: CheckConclusion | None,
    output: CheckRunOutput | None,
    details_url: str | None,
    completed_at: datetime | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if conclusion is not None:
        body["conclusion"] = str(conclusion)
    if output is not None:
        rendered = {"title": output.title, "summary": output.summary}
        if output.text is not None:
            rendered["text"] = output.text
        body["output"] = rendered
    if details_url is not None:
        body["details_url"] = details_url
    if completed_at is not None:
        body["completed_at"] = completed_at.isoformat()
    return body
