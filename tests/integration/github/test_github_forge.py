"""The PyGithub adapter against the local forge over HTTP: auth, rate limits, typed errors.

All waiting goes through a FakeClock started at the forge's time: sleeps are recorded, never
slept. The forge's own clock is moved through /_forge/clock to expire tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from trunkline.clock import FakeClock
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.github.adapter import PyGithubAdapter
from trunkline.github.errors import (
    GitHubUnavailableError,
    NonFastForwardError,
    NotFoundError,
    RateLimitedError,
    RefExistsError,
    StaleMergeShaError,
    ValidationFailedError,
)
from trunkline.github.model import (
    CheckConclusion,
    CheckRunOutput,
    CheckRunRequest,
    CheckRunUpdate,
    CheckStatus,
    Mergeability,
    MergeMethod,
    Permission,
    ReviewEvent,
    ReviewLineComment,
)
from trunkline.github.redacting import RedactingGitHub
from trunkline.github.sticky import sticky_body
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

REPO = "alice/demo"


@dataclass
class Rig:
    forge: ForgeHandle
    clock: FakeClock
    tokens: InstallationTokenProvider
    github: PyGithubAdapter
    workspace: Workspace
    spec: RepositorySpec

    def fault(self, **payload: object) -> None:
        self.forge.admin("POST", "faults", payload)

    def advance(self, forge_seconds: float, adapter_seconds: float | None = None) -> None:
        self.forge.advance_clock(forge_seconds)
        self.clock.advance(forge_seconds if adapter_seconds is None else adapter_seconds)

    def push_branch(self, item: int, name: str, files: dict[str, str]) -> str:
        tree = self.workspace.create_worktree(self.spec, item, name, "main", self.tokens.token())
        for path, text in files.items():
            (tree.path / path).write_text(text)
        assert self.workspace.commit_all(self.spec, tree, f"change {name}") is not None
        return self.workspace.push_branch(self.spec, tree, self.tokens.token())


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    source = tmp_path / "source"
    (source / ".github").mkdir(parents=True)
    (source / "README.md").write_text("demo\n")
    (source / ".github" / "trunkline.yml").write_text("version: 1\n")
    with running_forge(default_spec(source=source), data_dir=tmp_path / "forge") as forge:
        now = datetime.fromisoformat(forge.admin("GET", "health")["now"])
        clock = FakeClock(current=now)
        http = httpx.Client(timeout=30)
        try:
            clients = forge.app_clients(clock, http)
            tokens = clients.tokens(forge.installation_id)
            port = clients.for_installation(forge.installation_id)
            # the adapter's own behaviour (retries, stats) is what this module tests
            assert isinstance(port, RedactingGitHub)
            assert isinstance(port.inner, PyGithubAdapter)
            github = port.inner
            workspace = Workspace(tmp_path / "data", Identity("trunkline[bot]", "bot@example.com"))
            spec = RepositorySpec(REPO, f"{forge.base_url}/alice/demo.git")
            yield Rig(forge, clock, tokens, github, workspace, spec)
        finally:
            http.close()


def create_issue(rig: Rig, title: str) -> int:
    response = httpx.post(
        f"{rig.forge.api_url}/repos/{REPO}/issues",
        json={"title": title, "body": "please"},
        headers={"Authorization": f"token {rig.forge.token('alice')}"},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json()["number"])


def test_reads_and_writes_round_trip(rig: Rig) -> None:
    github = rig.github
    number = create_issue(rig, "Add login")
    issue = github.get_issue(REPO, number)
    assert (issue.title, issue.author.login, issue.is_pull_request) == ("Add login", "alice", False)
    assert set(github.add_labels(REPO, number, ["bug", "agent"])) == {"bug", "agent"}
    github.remove_label(REPO, number, "bug")
    github.remove_label(REPO, number, "not-there")
    assert github.get_issue(REPO, number).labels == ("agent",)

    first = github.upsert_sticky_comment(REPO, number, "status", "planning")
    second = github.upsert_sticky_comment(REPO, number, "status", "executing")
    assert first.id == second.id
    comments = github.list_issue_comments(REPO, number)
    assert [c.body for c in comments] == [sticky_body("status", "executing")]
    assert comments[0].author.login == "trunkline[bot]"

    policy = github.get_file(REPO, ".github/trunkline.yml", "main")
    assert policy is not None
    assert policy.text == "version: 1\n"
    assert github.get_file(REPO, "nope.yml", "main") is None
    assert github.get_permission(REPO, "alice") is Permission.ADMIN
    assert github.get_permission(REPO, "bob") is Permission.WRITE
    assert github.get_permission(REPO, "carol") is Permission.READ
    assert github.get_permission(REPO, "dave") is Permission.NONE

    head = rig.push_branch(number, "add-login", {"login.py": "def login(): ...\n"})
    pull = github.create_pull(
        REPO,
        title="Add login",
        head=f"trunkline/issue-{number}-add-login",
        base="main",
        body=f"Fixes #{number}",
    )
    assert pull.head_sha == head
    fetched = github.get_pull(REPO, pull.number, wait_for_mergeable=True)
    assert fetched.mergeable is Mergeability.MERGEABLE
    assert [f.path for f in github.list_pull_files(REPO, pull.number)] == ["login.py"]

    run = github.create_check_run(
        REPO, CheckRunRequest(name="trunkline/scope", head_sha=head, status=CheckStatus.IN_PROGRESS)
    )
    done = github.update_check_run(
        REPO,
        run.id,
        CheckRunUpdate(
            status=CheckStatus.COMPLETED,
            conclusion=CheckConclusion.SUCCESS,
            output=CheckRunOutput("In scope", "All paths are inside held locks."),
        ),
    )
    assert done.conclusion is CheckConclusion.SUCCESS
    names = {r.name for r in github.list_check_runs(REPO, head)}
    assert "trunkline/scope" in names
    assert github.get_combined_status(REPO, head).sha == head


def test_review_line_comments_close_pull_and_close_issue(rig: Rig) -> None:
    github = rig.github
    number = create_issue(rig, "Add login")
    head = rig.push_branch(number, "add-login", {"login.py": "def login():\n    return 1\n"})
    pull = github.create_pull(
        REPO, title="Add login", head=f"trunkline/issue-{number}-add-login", base="main"
    )
    note = ReviewLineComment("login.py", 2, "return a session, not 1")
    review = github.create_review(
        REPO,
        pull.number,
        commit_sha=head,
        event=ReviewEvent.COMMENT,
        body="one note",
        comments=[note],
    )
    assert review.commit_sha == head
    listed = httpx.get(
        f"{rig.forge.api_url}/repos/{REPO}/pulls/{pull.number}/comments",
        headers={"Authorization": f"token {rig.forge.token('alice')}"},
        timeout=30,
    ).json()
    assert [(c["path"], c["line"], c["body"]) for c in listed] == [
        ("login.py", 2, "return a session, not 1")
    ]
    (comment,) = github.list_review_comments(REPO, pull.number)
    assert (comment.review_id, comment.path, comment.line, comment.body) == (
        review.id,
        "login.py",
        2,
        "return a session, not 1",
    )
    assert comment.author.login == "trunkline[bot]"
    with pytest.raises(ValidationFailedError):
        github.create_review(
            REPO,
            pull.number,
            commit_sha=head,
            event=ReviewEvent.COMMENT,
            body="off the diff",
            comments=[ReviewLineComment("README.md", 1, "not changed here")],
        )

    found = github.find_open_pull(REPO, head=f"trunkline/issue-{number}-add-login", base="main")
    assert found is not None
    assert found.number == pull.number
    assert github.find_open_pull(REPO, head="no-such-branch", base="main") is None
    closed = github.close_pull(REPO, pull.number)
    assert (closed.state, closed.merged) == ("closed", False)
    assert github.close_pull(REPO, pull.number).state == "closed"
    assert (
        github.find_open_pull(REPO, head=f"trunkline/issue-{number}-add-login", base="main") is None
    )
    issue = github.close_issue(REPO, number)
    assert issue.state == "closed"
    assert github.close_issue(REPO, number).state == "closed"


def test_refs_and_merge_errors_are_typed(rig: Rig) -> None:
    github = rig.github
    main = github.get_ref(REPO, "heads/main").sha
    first = rig.push_branch(1, "one", {"one.txt": "1\n"})
    second = rig.push_branch(2, "two", {"two.txt": "2\n"})
    queue_ref = "refs/heads/trunkline/queue/main"
    assert github.create_ref(REPO, queue_ref, first).sha == first
    with pytest.raises(RefExistsError):
        github.create_ref(REPO, queue_ref, first)
    # `second` is a sibling of `first`, not a descendant: force=false must refuse.
    with pytest.raises(NonFastForwardError):
        github.update_ref(REPO, queue_ref, second, force=False)
    assert github.get_ref(REPO, queue_ref).sha == first
    assert github.update_ref(REPO, queue_ref, second, force=True).sha == second
    github.delete_ref(REPO, queue_ref)
    github.delete_ref(REPO, queue_ref)
    with pytest.raises(NotFoundError):
        github.get_ref(REPO, queue_ref)
    with pytest.raises(NonFastForwardError):
        github.update_ref(REPO, "heads/trunkline/issue-1-one", second)

    pull = github.create_pull(REPO, title="One", head="trunkline/issue-1-one", base="main")
    stale = pull.head_sha
    tree = rig.workspace.create_worktree(rig.spec, 1, "one", "main", rig.tokens.token())
    (tree.path / "one.txt").write_text("1 and more\n")
    rig.workspace.commit_all(rig.spec, tree, "more")
    fresh = rig.workspace.push_branch(rig.spec, tree, rig.tokens.token())
    with pytest.raises(StaleMergeShaError):
        github.merge_pull(REPO, pull.number, sha=stale, method=MergeMethod.REBASE)
    assert github.get_ref(REPO, "heads/main").sha == main
    result = github.merge_pull(REPO, pull.number, sha=fresh, method=MergeMethod.REBASE)
    assert result.merged
    assert github.get_ref(REPO, "heads/main").sha == fresh


def test_token_expiry_is_noticed_before_the_request_with_one_refresh(rig: Rig) -> None:
    number = create_issue(rig, "x")
    rig.github.get_issue(REPO, number)
    assert rig.tokens.refresh_count == 1
    # 58 minutes later on both clocks: less than 5 minutes left, so one proactive refresh.
    rig.advance(58 * 60)
    for _ in range(3):
        rig.github.get_issue(REPO, number)
    assert rig.tokens.refresh_count == 2
    assert rig.github.stats.auth_retries == 0


def test_token_expired_on_the_server_is_refreshed_once_after_a_401(rig: Rig) -> None:
    number = create_issue(rig, "x")
    rig.github.get_issue(REPO, number)
    # The forge is past the token's hour; our clock lags it (skew) and still trusts the token.
    rig.advance(3600 + 10, adapter_seconds=3600 - 390)
    assert rig.github.get_issue(REPO, number).number == number
    assert rig.github.stats.auth_retries == 1
    assert rig.tokens.refresh_count == 2
    rig.github.add_labels(REPO, number, ["agent"])
    assert rig.tokens.refresh_count == 2


def test_429_with_retry_after_waits_on_the_clock_then_succeeds(rig: Rig) -> None:
    number = create_issue(rig, "x")
    rig.github.get_issue(REPO, number)
    rig.fault(kind="rate_limit", status=429, retry_after=42, count=2)
    assert rig.github.add_labels(REPO, number, ["agent"]) == ("agent",)
    assert rig.clock.sleeps == [42.0, 42.0]
    assert rig.github.stats.rate_limit_waits == [42.0, 42.0]


def test_secondary_limit_backs_off_at_least_a_minute_then_gives_up(rig: Rig) -> None:
    number = create_issue(rig, "x")
    rig.github.get_issue(REPO, number)
    rig.fault(kind="secondary", status=403, retry_after=1, count=2)
    rig.github.get_issue(REPO, number)
    assert rig.clock.sleeps == [60.0, 120.0]

    rig.clock.sleeps.clear()
    rig.fault(kind="secondary", status=403, retry_after=1, count=10)
    with pytest.raises(RateLimitedError) as caught:
        rig.github.get_issue(REPO, number)
    assert rig.clock.sleeps == [60.0, 120.0, 240.0, 480.0]
    assert caught.value.retry_after == 960.0
    rig.fault(kind="secondary", count=0)


def test_server_errors_are_retryable(rig: Rig) -> None:
    number = create_issue(rig, "x")
    rig.fault(kind="error", status=502, count=1)
    with pytest.raises(GitHubUnavailableError):
        rig.github.get_issue(REPO, number)
    assert rig.github.get_issue(REPO, number).number == number


def test_tokens_never_reach_the_logs(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    number = create_issue(rig, "x")
    rig.github.get_issue(REPO, number)
    rig.github.upsert_sticky_comment(REPO, number, "status", "hello")
    rig.push_branch(number, "logged", {"x.txt": "x\n"})
    first = rig.tokens.token()
    rig.advance(3600 + 10, adapter_seconds=3600 - 390)
    rig.github.get_issue(REPO, number)
    assert rig.tokens.refresh_count == 2
    assert caplog.records
    secrets = [first, rig.tokens.token()]
    assert secrets[0] != secrets[1]
    stored = [p for p in rig.workspace.data_dir.rglob("*") if p.is_file()]
    assert stored
    for secret in secrets:
        assert secret not in caplog.text
        assert not [p for p in stored if secret.encode() in p.read_bytes()]
