"""Adapter behaviour over real HTTP against a scripted server: conditional requests,
`mergeable: null` polling, pagination, rate-limit headers on success, auth retry bound,
serialized writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from github_scripted_server import ScriptedServer, Seen, scripted_server

from trunkline.clock import FakeClock
from trunkline.github.adapter import AdapterOptions, PyGithubAdapter
from trunkline.github.errors import AuthenticationError
from trunkline.github.model import Mergeability
from trunkline.github.port import GitHubPort
from trunkline.github.tokens import StaticToken

REPO = "acme/widgets"


def pull_json(mergeable: bool | None) -> dict[str, object]:
    return {
        "number": 7,
        "title": "t",
        "state": "open",
        "user": {"login": "alice", "type": "User"},
        "head": {"sha": "h" * 40, "ref": "feature", "repo": {"full_name": REPO}},
        "base": {"sha": "b" * 40, "ref": "main"},
        "mergeable": mergeable,
    }


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def adapter(server: ScriptedServer, clock: FakeClock, **options: object) -> PyGithubAdapter:
    return PyGithubAdapter(
        base_url=server.api_url,
        tokens=StaticToken("ghs_scripted"),
        clock=clock,
        bot_login="trunkline[bot]",
        options=AdapterOptions(**options),  # type: ignore[arg-type]
    )


def test_repeated_reads_are_conditional_and_304_reuses_the_body(server: ScriptedServer) -> None:
    issue = {"number": 3, "title": "Same", "user": {"login": "a"}, "labels": []}

    def answer(seen: Seen) -> tuple[int, dict[str, str], object]:
        if seen.headers.get("if-none-match") == '"v1"':
            return 304, {"ETag": '"v1"'}, None
        return 200, {"ETag": '"v1"'}, issue

    server.route("GET", f"/repos/{REPO}/issues/3", answer)
    github = adapter(server, FakeClock())
    port: GitHubPort = github  # the adapter satisfies the port (checked by mypy)
    first = port.get_issue(REPO, 3)
    second = github.get_issue(REPO, 3)
    assert first == second
    assert first.title == "Same"
    assert [s.headers.get("if-none-match") for s in server.seen] == [None, '"v1"']
    assert github.stats.not_modified == 1
    assert all(s.headers["authorization"] == "token ghs_scripted" for s in server.seen)


def test_mergeable_null_is_polled_with_a_bound_and_never_mergeable(server: ScriptedServer) -> None:
    answers = iter([None, None, True])
    server.route("GET", f"/repos/{REPO}/pulls/7", lambda _: (200, {}, pull_json(next(answers))))
    clock = FakeClock()
    github = adapter(server, clock)
    pull = github.get_pull(REPO, 7, wait_for_mergeable=True)
    assert pull.mergeable is Mergeability.MERGEABLE
    assert clock.sleeps == [1.0, 2.0]

    server.route("GET", f"/repos/{REPO}/pulls/7", lambda _: (200, {}, pull_json(None)))
    clock.sleeps.clear()
    undecided = github.get_pull(REPO, 7, wait_for_mergeable=True)
    assert undecided.mergeable is Mergeability.UNKNOWN
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert github.get_pull(REPO, 7).mergeable is Mergeability.UNKNOWN


def test_lists_follow_link_pagination(server: ScriptedServer) -> None:
    def page(seen: Seen) -> tuple[int, dict[str, str], object]:
        if "page=2" in seen.path:
            return 200, {}, [{"id": 2, "body": "second", "user": {"login": "b"}}]
        link = f'<{server.api_url}/repos/{REPO}/issues/1/comments?page=2>; rel="next"'
        return 200, {"Link": link}, [{"id": 1, "body": "first", "user": {"login": "a"}}]

    server.route("GET", f"/repos/{REPO}/issues/1/comments", page)
    comments = adapter(server, FakeClock()).list_issue_comments(REPO, 1)
    assert [c.body for c in comments] == ["first", "second"]
    assert "per_page=100" in server.seen[0].path


def test_exhausted_limit_on_success_waits_for_the_reset_before_the_next_call(
    server: ScriptedServer,
) -> None:
    clock = FakeClock()
    reset = int(clock.now().timestamp()) + 30
    issue = {"number": 3, "title": "x", "user": {"login": "a"}}
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-limit": "5000"}
    headers["x-ratelimit-reset"] = str(reset)
    server.route("GET", f"/repos/{REPO}/issues/3", lambda _: (200, headers, issue))
    github = adapter(server, clock)
    github.get_issue(REPO, 3)
    assert clock.sleeps == []
    github.get_issue(REPO, 3)
    assert clock.sleeps == [31.0]


def test_a_second_401_is_terminal(server: ScriptedServer) -> None:
    server.route(
        "GET", f"/repos/{REPO}/issues/3", lambda _: (401, {}, {"message": "Bad credentials"})
    )
    github = adapter(server, FakeClock())
    with pytest.raises(AuthenticationError):
        github.get_issue(REPO, 3)
    assert len(server.seen) == 2
    assert github.stats.auth_retries == 1


def test_writes_for_one_installation_are_serialized_and_spaced(server: ScriptedServer) -> None:
    active = 0
    overlap = False
    guard = threading.Lock()
    release = threading.Event()

    def slow_comment(seen: Seen) -> tuple[int, dict[str, str], object]:
        nonlocal active, overlap
        with guard:
            active += 1
            overlap = overlap or active > 1
        release.wait(timeout=0.1)  # widen the race window a little
        with guard:
            active -= 1
        return 201, {}, {"id": 1, "body": seen.body["body"], "user": {"login": "trunkline[bot]"}}

    server.route("POST", f"/repos/{REPO}/issues/1/comments", slow_comment)
    clock = FakeClock()
    github = adapter(server, clock, min_write_interval=1.0)
    threads = [
        threading.Thread(target=github.create_comment, args=(REPO, 1, f"c{i}")) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not overlap
    assert len(server.seen) == 4
    assert clock.sleeps == [1.0, 1.0, 1.0]
