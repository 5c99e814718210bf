"""PyGithub, unchanged, against the forge: the flow trunkline's bot depends on."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from github import Auth, Github, GithubException, GithubIntegration

from trunkline.forge.testing import ForgeHandle, running_forge

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bob",
    "GIT_AUTHOR_EMAIL": "bob@example.com",
    "GIT_COMMITTER_NAME": "Bob",
    "GIT_COMMITTER_EMAIL": "bob@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def forge() -> Iterator[ForgeHandle]:
    with running_forge() as handle:
        yield handle


def client(forge: ForgeHandle, auth: Auth.Auth) -> Github:
    return Github(
        base_url=forge.api_url, auth=auth, seconds_between_requests=0, seconds_between_writes=0
    )


def commit_on_branch(forge: ForgeHandle, tmp: Path, token: str, branch: str, name: str) -> str:
    work = tmp / f"work-{branch}"
    git(tmp, "clone", "-q", forge.git_url("alice", "demo", token), str(work))
    git(work, "checkout", "-q", "-b", branch)
    (work / name).write_text(f"{name}\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"add {name}")
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD").stdout.strip()


def test_issue_pr_review_check_fast_forward_and_merge_conflicts(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    app_auth = Auth.AppAuth(forge.app_id, forge.private_key_path.read_text())
    integration = GithubIntegration(auth=app_auth, base_url=forge.api_url)
    installation = integration.get_repo_installation("alice", "demo")
    assert installation.id == forge.installation_id
    assert [i.id for i in integration.get_installations()] == [forge.installation_id]
    bot = client(forge, app_auth.get_installation_auth(installation.id))
    bob = client(forge, Auth.Token(forge.token("bob")))
    alice = client(forge, Auth.Token(forge.token("alice")))

    repo = bot.get_repo("alice/demo")
    issue = bob.get_repo("alice/demo").create_issue(title="Add a feature", body="please")
    issue_as_bot = repo.get_issue(issue.number)
    issue_as_bot.add_to_labels("queue")
    issue_as_bot.create_comment("claimed by the bot")
    assert [x.name for x in repo.get_issue(issue.number).labels] == ["queue"]
    assert [c.body for c in repo.get_issue(issue.number).get_comments()] == ["claimed by the bot"]

    base_sha = repo.get_git_ref("heads/main").object.sha
    head_sha = commit_on_branch(forge, tmp_path, forge.token("bob"), "feature", "feature.txt")
    pull = bob.get_repo("alice/demo").create_pull(
        base="main", head="feature", title="Feature", body="Closes #1"
    )
    assert pull.mergeable is True
    assert pull.head.sha == head_sha
    assert [f.filename for f in pull.get_files()] == ["feature.txt"]

    review = (
        alice.get_repo("alice/demo")
        .get_pull(pull.number)
        .create_review(commit=repo.get_commit(head_sha), body="looks right", event="APPROVE")
    )
    assert review.state == "APPROVED"
    assert review.commit_id == head_sha
    assert [r.user.login for r in repo.get_pull(pull.number).get_reviews()] == ["alice"]

    run = repo.create_check_run(
        name="trunkline/queue", head_sha=head_sha, status="completed", conclusion="success"
    )
    assert run.conclusion == "success"
    assert [r.name for r in repo.get_commit(head_sha).get_check_runs()] == ["trunkline/queue"]

    with pytest.raises(GithubException) as stale:
        repo.get_pull(pull.number).merge(sha=base_sha)
    assert stale.value.status == 409

    with pytest.raises(GithubException) as not_app:  # bob has write, main is the App's
        bob.get_repo("alice/demo").get_git_ref("heads/main").edit(sha=head_sha)
    assert not_app.value.status == 422

    repo.get_git_ref("heads/main").edit(sha=head_sha, force=False)
    merged = repo.get_pull(pull.number)
    assert merged.merged is True
    assert merged.state == "closed"
    assert merged.merge_commit_sha == head_sha


def test_protected_branch_over_git_push(forge: ForgeHandle, tmp_path: Path) -> None:
    bob_token = forge.token("bob")
    bot_token = forge.installation_token()
    sha = commit_on_branch(forge, tmp_path, bob_token, "topic", "topic.txt")
    work = tmp_path / "work-topic"
    refused = git(work, "push", "origin", "HEAD:refs/heads/main", ok=False)
    assert refused.returncode != 0
    assert "protected branch" in refused.stderr

    git(work, "remote", "set-url", "origin", forge.git_url("alice", "demo", bot_token))
    git(work, "fetch", "-q", "origin")
    git(work, "merge", "-q", "--ff-only", "origin/main", ok=False)
    git(work, "rebase", "-q", "origin/main")
    rebased = git(work, "rev-parse", "HEAD").stdout.strip()
    git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
    bot = client(forge, Auth.Token(bot_token))
    assert bot.get_repo("alice/demo").get_git_ref("heads/main").object.sha == rebased

    git(work, "reset", "-q", "--hard", "HEAD~1")
    (work / "other.txt").write_text("diverged\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "diverge")
    forced = git(work, "push", "--force", "origin", "HEAD:refs/heads/main", ok=False)
    assert forced.returncode != 0
    assert "fast-forward" in forced.stderr
    assert sha  # the topic commit existed before the rebase


def test_bad_credentials_are_refused(forge: ForgeHandle) -> None:
    anonymous_write = client(forge, Auth.Token("ghp_not-a-real-token"))
    with pytest.raises(GithubException) as bad:
        anonymous_write.get_repo("alice/demo")
    assert bad.value.status == 401
    assert bad.value.data["message"] == "Bad credentials"


def test_pagination_follows_link_headers(forge: ForgeHandle) -> None:
    bob = client(forge, Auth.Token(forge.token("bob")))
    repo = bob.get_repo("alice/demo")
    titles = {f"page test {i}" for i in range(35)}
    for title in sorted(titles):
        repo.create_issue(title=title)
    listed = {i.title for i in repo.get_issues(state="all")}
    assert titles <= listed
    first_page = repo.get_issues(state="all").get_page(0)
    assert len(first_page) == 30


def test_protected_branch_refuses_a_forced_non_fast_forward_by_the_app(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    bot = client(forge, Auth.Token(forge.installation_token()))
    repo = bot.get_repo("alice/demo")
    main = repo.get_git_ref("heads/main")
    before = main.object.sha
    ahead = commit_on_branch(forge, tmp_path, forge.token("bob"), "ahead", "ahead.txt")
    main.edit(sha=ahead, force=False)
    with pytest.raises(GithubException) as refused:
        repo.get_git_ref("heads/main").edit(sha=before, force=True)
    assert refused.value.status == 422
    assert refused.value.data["message"] == "Update is not a fast forward"


def test_merge_commits_on_an_unprotected_base_and_conflicts(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    bob = client(forge, Auth.Token(forge.token("bob")))
    repo = bob.get_repo("alice/demo")
    main_sha = repo.get_git_ref("heads/main").object.sha
    repo.create_git_ref("refs/heads/dev", main_sha)
    head = commit_on_branch(forge, tmp_path, forge.token("bob"), "to-dev", "dev.txt")
    pull = repo.create_pull(base="dev", head="to-dev", title="to dev", body="")
    status = pull.merge(merge_method="merge", sha=head)
    assert status.merged
    merged = repo.get_pull(pull.number)
    assert merged.merged
    assert merged.merge_commit_sha == status.sha != head
    assert [p.sha for p in repo.get_commit(status.sha).parents] == [main_sha, head]

    work = tmp_path / "work-clash"
    git(tmp_path, "clone", "-q", forge.git_url("alice", "demo", forge.token("bob")), str(work))
    for branch, text in (("clash-a", "a\n"), ("clash-b", "b\n")):
        git(work, "checkout", "-q", "-B", branch, "origin/dev")
        (work / "dev.txt").write_text(text)
        git(work, "commit", "-q", "-am", branch)
        git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    repo.create_pull(base="dev", head="clash-a", title="a", body="").merge(merge_method="squash")
    clash = repo.create_pull(base="dev", head="clash-b", title="b", body="")
    assert repo.get_pull(clash.number).mergeable is False
    with pytest.raises(GithubException) as refused:
        clash.merge()
    assert refused.value.status == 405
