"""Every REST operation the forge implements, called for real and checked against GitHub's
OpenAPI description; every webhook it sent, checked against GitHub's webhook schemas."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prerequisites import REPO_ROOT, require_shared_github

from trunkline.forge.conformance import RestContract, WebhookContract
from trunkline.forge.testing import ForgeHandle, WebhookReceiver, default_spec, running_forge
from trunkline.forge.webhooks import sign

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bob",
    "GIT_AUTHOR_EMAIL": "bob@example.com",
    "GIT_COMMITTER_NAME": "Bob",
    "GIT_COMMITTER_EMAIL": "bob@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def forge(
    tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver
) -> Iterator[ForgeHandle]:
    source = tmp_path_factory.mktemp("source")
    (source / "README.md").write_text("# demo\n")
    (source / ".github").mkdir()
    (source / ".github" / "trunkline.yml").write_text("queue:\n  branch: main\n")
    with running_forge(default_spec(source, webhook_url=receiver.url)) as handle:
        yield handle


class Recorder:
    """An httpx client that keeps every API response for schema validation."""

    def __init__(self, forge: ForgeHandle) -> None:
        self.records: list[tuple[str, str, int, Any]] = []
        self.client = httpx.Client(base_url=forge.api_url, timeout=30)

    def call(
        self, method: str, path: str, token: str | None, body: Any = None, **params: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        response = self.client.request(
            method, path, json=body, headers=headers, params=params or None
        )
        parsed = response.json() if response.content else None
        self.records.append((method, path, response.status_code, parsed))
        return response


def push_feature(
    forge: ForgeHandle, tmp: Path, token: str, branch: str, content: str, start: str = "main"
) -> str:
    work = tmp / f"clone-{branch}"
    if not work.exists():
        git(tmp, "clone", "-q", forge.git_url("alice", "demo", token), str(work))
    git(work, "fetch", "-q", "origin")
    git(work, "checkout", "-q", "-B", branch, f"origin/{start}")
    (work / "feature.txt").write_text(content)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"add {branch}")
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD")


def test_every_operation_matches_githubs_schema(
    forge: ForgeHandle, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    shared = require_shared_github()
    contract = RestContract(shared / "rest-api.json")
    rec = Recorder(forge)
    alice, bob, carol, dave = (forge.token(x) for x in ("alice", "bob", "carol", "dave"))
    jwt_token = forge.app_jwt()

    # App, installation, users.
    app = rec.call("GET", "/app", jwt_token)
    assert app.status_code == 200
    bot_login = f"{app.json()['slug']}[bot]"
    assert rec.call("GET", "/app/installations", jwt_token).status_code == 200
    inst = forge.installation_id
    assert rec.call("GET", f"/app/installations/{inst}", jwt_token).status_code == 200
    minted = rec.call("POST", f"/app/installations/{inst}/access_tokens", jwt_token)
    assert minted.status_code == 201
    bot = minted.json()["token"]
    assert rec.call("GET", "/repos/alice/demo/installation", jwt_token).status_code == 200
    assert rec.call("GET", "/installation/repositories", bot).status_code == 200
    assert rec.call("GET", "/user", alice).json()["login"] == "alice"
    assert rec.call("GET", "/users/bob", bob).status_code == 200
    assert rec.call("GET", "/rate_limit", bob).status_code == 200

    # Repository, collaborators, contents.
    assert rec.call("GET", "/repos/alice/demo", carol).status_code == 200
    assert rec.call("GET", "/repos/alice/demo/collaborators", bob).status_code == 200
    perm = rec.call("GET", "/repos/alice/demo/collaborators/carol/permission", bot).json()
    assert (perm["permission"], perm["role_name"]) == ("read", "read")
    config = rec.call("GET", "/repos/alice/demo/contents/.github/trunkline.yml", bot, ref="main")
    assert config.json()["encoding"] == "base64"
    assert rec.call("GET", "/repos/alice/demo/contents/.github", bot).status_code == 200

    # Labels and issues.
    assert rec.call("GET", "/repos/alice/demo/labels", carol).status_code == 200
    assert (
        rec.call(
            "POST", "/repos/alice/demo/labels", bob, {"name": "locked", "color": "00ff00"}
        ).status_code
        == 201
    )
    assert rec.call("GET", "/repos/alice/demo/labels/locked", carol).status_code == 200
    issue = rec.call(
        "POST", "/repos/alice/demo/issues", carol, {"title": "Crash", "body": "x"}
    ).json()
    number = issue["number"]
    rec.call("POST", "/repos/alice/demo/issues", bob, {"title": "Second", "labels": ["bug"]})
    page = rec.call("GET", "/repos/alice/demo/issues", carol, per_page=1)
    assert 'rel="next"' in page.headers["link"]
    assert rec.call("GET", f"/repos/alice/demo/issues/{number}", carol).status_code == 200
    assert (
        rec.call(
            "POST", f"/repos/alice/demo/issues/{number}/labels", bob, {"labels": ["bug", "queue"]}
        ).status_code
        == 200
    )
    assert (
        rec.call(
            "PUT", f"/repos/alice/demo/issues/{number}/labels", bob, {"labels": ["bug"]}
        ).status_code
        == 200
    )
    assert rec.call("GET", f"/repos/alice/demo/issues/{number}/labels", carol).status_code == 200
    assert (
        rec.call("DELETE", f"/repos/alice/demo/issues/{number}/labels/bug", bot).status_code == 200
    )
    # the event log names who changed each label, oldest first
    log = rec.call("GET", f"/repos/alice/demo/issues/{number}/events", carol).json()
    assert [(e["event"], e["label"]["name"], e["actor"]["login"]) for e in log] == [
        ("labeled", "bug", "bob"),
        ("labeled", "queue", "bob"),
        ("unlabeled", "queue", "bob"),
        ("unlabeled", "bug", bot_login),
    ]
    labeled = rec.call("GET", "/repos/alice/demo/issues", carol, labels="bug", state="all")
    assert [x["title"] for x in labeled.json()] == ["Second"]
    assert (
        rec.call(
            "POST", f"/repos/alice/demo/issues/{number}/assignees", bob, {"assignees": ["bob"]}
        ).status_code
        == 201
    )
    assert (
        rec.call(
            "DELETE", f"/repos/alice/demo/issues/{number}/assignees", bob, {"assignees": ["bob"]}
        ).status_code
        == 200
    )
    comment = rec.call(
        "POST", f"/repos/alice/demo/issues/{number}/comments", carol, {"body": "hi"}
    ).json()
    assert rec.call("GET", f"/repos/alice/demo/issues/{number}/comments", carol).status_code == 200
    assert (
        rec.call("GET", f"/repos/alice/demo/issues/comments/{comment['id']}", carol).status_code
        == 200
    )
    assert (
        rec.call(
            "PATCH", f"/repos/alice/demo/issues/comments/{comment['id']}", carol, {"body": "edited"}
        ).status_code
        == 200
    )
    edit = {"title": "Crash!", "state": "closed"}
    closed = rec.call("PATCH", f"/repos/alice/demo/issues/{number}", carol, edit).json()
    assert closed["state"] == "closed"

    # Git: push a branch over smart HTTP, then refs API.
    base_sha = rec.call("GET", "/repos/alice/demo/git/ref/heads/main", bob).json()["object"]["sha"]
    head_sha = push_feature(forge, tmp_path, bob, "feature", "one\n")
    assert (
        rec.call("GET", "/repos/alice/demo/git/ref/heads/feature", bob).json()["object"]["sha"]
        == head_sha
    )
    assert rec.call("GET", "/repos/alice/demo/git/matching-refs/heads/", bob).status_code == 200
    assert (
        rec.call(
            "POST", "/repos/alice/demo/git/refs", bob, {"ref": "refs/heads/tmp", "sha": head_sha}
        ).status_code
        == 201
    )
    refused = rec.call(
        "PATCH", "/repos/alice/demo/git/refs/heads/tmp", bob, {"sha": base_sha, "force": False}
    )
    assert (refused.status_code, refused.json()["message"]) == (422, "Update is not a fast forward")
    assert (
        rec.call(
            "PATCH", "/repos/alice/demo/git/refs/heads/tmp", bob, {"sha": base_sha, "force": True}
        ).status_code
        == 200
    )
    assert rec.call("DELETE", "/repos/alice/demo/git/refs/heads/tmp", bob).status_code == 204

    # Commits, compare, statuses, checks.
    assert (
        rec.call("GET", f"/repos/alice/demo/commits/{head_sha}", carol).json()["files"][0][
            "filename"
        ]
        == "feature.txt"
    )
    cmp = rec.call("GET", "/repos/alice/demo/compare/main...feature", carol).json()
    assert (cmp["status"], cmp["ahead_by"]) == ("ahead", 1)
    assert (
        rec.call(
            "POST",
            f"/repos/alice/demo/statuses/{head_sha}",
            bot,
            {"state": "pending", "context": "ci/x"},
        ).status_code
        == 201
    )
    assert (
        rec.call("GET", f"/repos/alice/demo/commits/{head_sha}/statuses", carol).status_code == 200
    )
    assert (
        rec.call("GET", f"/repos/alice/demo/commits/{head_sha}/status", carol).json()["state"]
        == "pending"
    )
    run = rec.call(
        "POST",
        "/repos/alice/demo/check-runs",
        bot,
        {"name": "trunkline/queue", "head_sha": head_sha, "status": "in_progress"},
    ).json()
    assert (
        rec.call(
            "PATCH",
            f"/repos/alice/demo/check-runs/{run['id']}",
            bot,
            {"conclusion": "success", "output": {"title": "ok", "summary": "fine"}},
        ).json()["status"]
        == "completed"
    )
    assert rec.call("GET", f"/repos/alice/demo/check-runs/{run['id']}", carol).status_code == 200
    # the App re-requests its own run (a `check_run` `rerequested` webhook to itself)
    rerun = rec.call("POST", f"/repos/alice/demo/check-runs/{run['id']}/rerequest", bot)
    assert rerun.status_code == 201
    assert (
        rec.call("GET", f"/repos/alice/demo/commits/{head_sha}/check-runs", carol).json()[
            "total_count"
        ]
        == 1
    )
    suites = rec.call("GET", f"/repos/alice/demo/commits/{head_sha}/check-suites", carol).json()
    suite_id = suites["check_suites"][0]["id"]
    assert (
        rec.call("GET", f"/repos/alice/demo/check-suites/{suite_id}", carol).json()["conclusion"]
        == "success"
    )
    assert (
        rec.call("GET", f"/repos/alice/demo/check-suites/{suite_id}/check-runs", carol).status_code
        == 200
    )
    assert (
        rec.call("POST", "/repos/alice/demo/check-suites", bot, {"head_sha": base_sha}).status_code
        == 201
    )

    # Pull requests and reviews.
    pr = rec.call(
        "POST",
        "/repos/alice/demo/pulls",
        bob,
        {"title": "Feature", "head": "feature", "base": "main"},
    ).json()
    pn = pr["number"]
    labelled = rec.call("POST", f"/repos/alice/demo/issues/{pn}/labels", bot, ["queue"])
    assert labelled.status_code == 200
    assert pr["mergeable"] is True
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}", carol).json()["head"]["sha"] == head_sha
    assert rec.call("GET", "/repos/alice/demo/pulls", carol).status_code == 200
    assert (
        rec.call("GET", f"/repos/alice/demo/pulls/{pn}/files", carol).json()[0]["status"] == "added"
    )
    assert (
        rec.call("PATCH", f"/repos/alice/demo/pulls/{pn}", bob, {"body": "please"}).status_code
        == 200
    )
    review = {
        "commit_id": head_sha,
        "event": "APPROVE",
        "body": "ok",
        "comments": [{"path": "feature.txt", "line": 1, "body": "nice"}],
    }
    assert (
        rec.call("POST", f"/repos/alice/demo/pulls/{pn}/reviews", alice, review).json()["state"]
        == "APPROVED"
    )
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}/reviews", carol).status_code == 200
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}/comments", carol).status_code == 200
    pr_commits = rec.call("GET", f"/repos/alice/demo/pulls/{pn}/commits", carol).json()
    assert [x["sha"] for x in pr_commits] == [head_sha]
    branch = rec.call("GET", "/repos/alice/demo/branches/main", carol).json()
    assert (branch["protected"], branch["commit"]["sha"]) == (True, base_sha)
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}/merge", carol).status_code == 404
    old_head, head_sha = head_sha, push_feature(forge, tmp_path, bob, "feature", "two\n", "feature")
    forge.wait_idle()
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}", carol).json()["head"]["sha"] == head_sha
    stale = rec.call("PUT", f"/repos/alice/demo/pulls/{pn}/merge", bot, {"sha": old_head})
    assert stale.status_code == 409
    assert (
        rec.call("PUT", f"/repos/alice/demo/pulls/{pn}/merge", bob, {"sha": head_sha}).status_code
        == 405
    )
    merged = rec.call(
        "PUT",
        f"/repos/alice/demo/pulls/{pn}/merge",
        bot,
        {"sha": head_sha, "merge_method": "rebase"},
    )
    assert merged.json() == {
        "sha": head_sha,
        "merged": True,
        "message": "Pull Request successfully merged",
    }
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}/merge", carol).status_code == 204
    assert rec.call("GET", f"/repos/alice/demo/pulls/{pn}", carol).json()["merged"] is True

    # Errors.
    assert rec.call("GET", "/repos/alice/nope", bob).status_code == 404
    assert rec.call("GET", "/repos/alice/demo", dave).status_code == 200  # public
    assert rec.call("POST", "/repos/alice/demo/labels", carol, {"name": "x"}).status_code == 403
    assert (
        rec.call("POST", "/repos/alice/demo/issues", bob, {"body": "no title"}).status_code == 422
    )

    failures = []
    for method, path, status, body in rec.records:
        try:
            contract.validate_response(method, path, status, body)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)

    # The doc lists exactly the operations the forge implements, and this test called all.
    implemented = implemented_operations(contract)
    called = {contract.operation(m_, p).operation_id for m_, p, _, _ in rec.records}
    assert implemented <= called, f"not exercised: {sorted(implemented - called)}"
    documented = set(
        re.findall(r"^\| `([a-z0-9/-]+)` \|", (REPO_ROOT / "docs" / "forge.md").read_text(), re.M)
    )
    assert documented == implemented

    # Webhooks: each delivery is signed with the shared secret and matches GitHub's schema.
    forge.wait_idle()
    hooks = WebhookContract(shared / "webhooks-api.json")
    received = receiver.snapshot()
    seen = set()
    problems = []
    for hook in received:
        assert hook.signature == sign(forge.webhook_secret or "", hook.body)
        try:
            seen.add(hooks.validate(hook.event, hook.payload()))
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n\n".join(problems)
    expected = {
        "issues-opened", "issues-labeled", "issues-unlabeled", "issues-assigned",
        "issues-unassigned", "issues-closed", "issue-comment-created", "issue-comment-edited",
        "push", "status", "check-run-created", "check-run-completed", "check-suite-completed",
        "pull-request-opened", "pull-request-edited", "pull-request-review-submitted",
        "pull-request-closed", "pull-request-synchronize", "pull-request-labeled",
        "issues-edited", "installation-created",
    }  # fmt: skip
    assert expected <= seen, f"missing webhooks: {sorted(expected - seen)}"


def implemented_operations(contract: RestContract) -> set[str]:
    """operationIds of the forge's REST routes (from the app's route table)."""
    from fastapi.routing import APIRoute

    from trunkline.forge import api_apps, api_checks, api_git, api_issues, api_pulls, api_repos

    ids = set()
    for module in (api_apps, api_checks, api_git, api_issues, api_pulls, api_repos):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            concrete = re.sub(r"\{([a-z_]+)(:path)?\}", lambda mt: _sample(mt.group(1)), route.path)
            for method in route.methods or ():
                ids.add(contract.operation(method, concrete).operation_id)
    return ids


def _sample(name: str) -> str:
    return {"ref": "heads/main", "basehead": "a...b", "path": "README.md"}.get(name, "1")
