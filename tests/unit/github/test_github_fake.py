"""The recording fake behaves like GitHub for the port's operations."""

from __future__ import annotations

import pytest

from trunkline.github.errors import (
    GitHubUnavailableError,
    NonFastForwardError,
    NotFoundError,
    NotMergeableError,
    RefExistsError,
    StaleMergeShaError,
    ValidationFailedError,
)
from trunkline.github.fake import FakeGitHub, RecordedCall
from trunkline.github.model import (
    CheckConclusion,
    CheckRunOutput,
    CheckRunRequest,
    CheckRunUpdate,
    CheckStatus,
    Mergeability,
    MergeMethod,
    Permission,
    PullFile,
    ReviewEvent,
    ReviewLineComment,
    ReviewState,
)
from trunkline.github.port import GitHubPort
from trunkline.github.sticky import find_sticky, marker, sticky_body

REPO = "acme/widgets"


@pytest.fixture
def github() -> FakeGitHub:
    fake = FakeGitHub()
    fake.add_repo(REPO, root_sha="a" * 40)
    return fake


def test_the_fake_is_a_port(github: FakeGitHub) -> None:
    port: GitHubPort = github
    assert port.get_ref(REPO, "heads/main").sha == "a" * 40


def test_labels_and_sticky_comment(github: FakeGitHub) -> None:
    issue = github.add_issue(REPO, title="Add login", labels=["agent"])
    assert github.add_labels(REPO, issue.number, ["queued", "agent"]) == ("agent", "queued")
    github.remove_label(REPO, issue.number, "agent")
    github.remove_label(REPO, issue.number, "never-there")
    assert github.get_issue(REPO, issue.number).labels == ("queued",)

    # A human quoting the marker does not capture the sticky comment.
    github.add_comment(REPO, issue.number, author="mallory", body=sticky_body("status", "fake"))
    first = github.upsert_sticky_comment(REPO, issue.number, "status", "Planning…")
    second = github.upsert_sticky_comment(REPO, issue.number, "status", "Executing…")
    same = github.upsert_sticky_comment(REPO, issue.number, "status", "Executing…")
    other = github.upsert_sticky_comment(REPO, issue.number, "plan", "The plan")
    assert first.id == second.id == same.id != other.id
    comments = github.list_issue_comments(REPO, issue.number)
    assert len(comments) == 3
    bots = [c for c in comments if c.author.login == "trunkline[bot]"]
    assert [c.body for c in bots] == [
        sticky_body("status", "Executing…"),
        sticky_body("plan", "The plan"),
    ]
    assert len(github.calls_of("upsert_sticky_comment")) == 4
    assert github.calls[0] == RecordedCall("add_labels", REPO, (issue.number, ("queued", "agent")))


def test_sticky_marker_rules() -> None:
    assert marker("status") == "<!-- trunkline:sticky:status -->"
    with pytest.raises(ValueError, match="keys"):
        marker("bad key -->")
    assert find_sticky([], "status", None) is None


def test_refs_fast_forward_only_without_force(github: FakeGitHub) -> None:
    github.add_commit(REPO, "b" * 40, "a" * 40)
    github.add_commit(REPO, "c" * 40, "a" * 40)
    assert github.update_ref(REPO, "heads/main", "b" * 40).sha == "b" * 40
    with pytest.raises(NonFastForwardError):
        github.update_ref(REPO, "refs/heads/main", "c" * 40)
    assert github.update_ref(REPO, "heads/main", "c" * 40, force=True).sha == "c" * 40
    github.create_ref(REPO, "refs/heads/trunkline/queue/main", "b" * 40)
    with pytest.raises(RefExistsError):
        github.create_ref(REPO, "refs/heads/trunkline/queue/main", "b" * 40)
    github.delete_ref(REPO, "heads/trunkline/queue/main")
    github.delete_ref(REPO, "heads/trunkline/queue/main")
    with pytest.raises(NotFoundError):
        github.get_ref(REPO, "heads/trunkline/queue/main")


def test_merge_checks_the_head_sha_and_mergeability(github: FakeGitHub) -> None:
    pull = github.add_pull(REPO, head_ref="feature", head_sha="d" * 40)
    github.push_to_pull(REPO, pull.number, "e" * 40)
    with pytest.raises(StaleMergeShaError):
        github.merge_pull(REPO, pull.number, sha="d" * 40, method=MergeMethod.MERGE)
    result = github.merge_pull(REPO, pull.number, sha="e" * 40, method=MergeMethod.MERGE)
    assert result.merged
    assert result.sha is not None
    assert github.get_ref(REPO, "heads/main").sha == result.sha
    assert github.get_pull(REPO, pull.number).merged
    with pytest.raises(NotMergeableError):
        github.merge_pull(REPO, pull.number, sha="e" * 40, method=MergeMethod.MERGE)
    conflicted = github.add_pull(
        REPO, head_ref="clash", head_sha="f" * 40, mergeable=Mergeability.CONFLICTING
    )
    with pytest.raises(NotMergeableError):
        github.merge_pull(REPO, conflicted.number, sha="f" * 40, method=MergeMethod.SQUASH)


def test_check_runs_reviews_statuses_permissions_files(github: FakeGitHub) -> None:
    pull = github.add_pull(REPO, head_ref="feature", head_sha="d" * 40)
    run = github.create_check_run(REPO, CheckRunRequest(name="trunkline/scope", head_sha="d" * 40))
    with pytest.raises(ValidationFailedError):
        github.create_check_run(
            REPO,
            CheckRunRequest(name="x", head_sha="d" * 40, conclusion=CheckConclusion.SUCCESS),
        )
    done = github.update_check_run(
        REPO,
        run.id,
        CheckRunUpdate(conclusion=CheckConclusion.SUCCESS, output=CheckRunOutput("ok", "fine")),
    )
    assert done.status is CheckStatus.COMPLETED
    assert done.title == "ok"
    assert github.list_check_runs(REPO, "d" * 40) == (done,)
    review = github.create_review(
        REPO, pull.number, commit_sha="d" * 40, event=ReviewEvent.APPROVE, body="LGTM"
    )
    assert review.state is ReviewState.APPROVED
    assert review.author.is_bot
    github.set_status(REPO, "d" * 40, "ci", "pending")
    github.set_status(REPO, "d" * 40, "ci", "success")
    assert github.get_combined_status(REPO, "d" * 40).state == "success"
    github.set_permission(REPO, "bob", Permission.WRITE)
    assert github.get_permission(REPO, "bob") is Permission.WRITE
    assert github.get_permission(REPO, "dave") is Permission.NONE
    github.set_file(REPO, "a" * 40, ".github/trunkline.yml", "version: 1\n")
    found = github.get_file(REPO, ".github/trunkline.yml", "main")
    assert found is not None
    assert found.text == "version: 1\n"
    assert github.get_file(REPO, "missing.txt", "main") is None


def test_fail_next_injects_one_failure(github: FakeGitHub) -> None:
    issue = github.add_issue(REPO, title="x")
    github.fail_next("get_issue", GitHubUnavailableError("502"))
    with pytest.raises(GitHubUnavailableError):
        github.get_issue(REPO, issue.number)
    assert github.get_issue(REPO, issue.number).title == "x"
    with pytest.raises(NotFoundError):
        github.get_issue("nobody/here", 1)


def test_close_issue_and_pull_are_recorded_and_idempotent() -> None:
    github = FakeGitHub()
    github.add_repo("o/r")
    issue = github.add_issue("o/r", title="bug")
    pull = github.add_pull("o/r", head_ref="feature", head_sha="a" * 40)
    assert github.close_issue("o/r", issue.number).state == "closed"
    assert github.close_issue("o/r", issue.number).state == "closed"
    assert github.close_pull("o/r", pull.number).state == "closed"
    assert github.get_issue("o/r", pull.number).state == "closed"
    assert [c.operation for c in github.calls if c.operation.startswith("close")] == [
        "close_issue",
        "close_issue",
        "close_pull",
    ]
    with pytest.raises(NotFoundError):
        github.close_issue("o/r", 99)


def test_review_line_comments_must_be_on_files_of_the_diff() -> None:
    github = FakeGitHub()
    github.add_repo("o/r")
    pull = github.add_pull(
        "o/r",
        head_ref="feature",
        head_sha="a" * 40,
        files=(PullFile("src/calc.py", "modified", 1, 1),),
    )
    note = ReviewLineComment("src/calc.py", 2, "off by one")
    github.create_review(
        "o/r",
        pull.number,
        commit_sha="a" * 40,
        event=ReviewEvent.COMMENT,
        body="x",
        comments=[note],
    )
    assert github.review_comments[("o/r", pull.number)] == [note]
    with pytest.raises(ValidationFailedError):
        github.create_review(
            "o/r",
            pull.number,
            commit_sha="a" * 40,
            event=ReviewEvent.COMMENT,
            body="x",
            comments=[ReviewLineComment("elsewhere.py", 1, "no")],
        )


def test_find_open_pull_by_head_and_base() -> None:
    github = FakeGitHub()
    github.add_repo("o/r")
    pull = github.add_pull("o/r", head_ref="feature", head_sha="a" * 40)
    found = github.find_open_pull("o/r", head="feature", base="main")
    assert found is not None
    assert found.number == pull.number
    assert github.find_open_pull("o/r", head="feature", base="release") is None
    github.close_pull("o/r", pull.number)
    assert github.find_open_pull("o/r", head="feature", base="main") is None
