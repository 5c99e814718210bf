"""Snapshots from GitHub's own example responses (the official OpenAPI description)."""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import pytest
from prerequisites import require_shared_github

from trunkline.github import parse
from trunkline.github.errors import ValidationFailedError
from trunkline.github.model import (
    CheckStatus,
    Mergeability,
    Permission,
    ReviewState,
)


@cache
def _examples() -> dict[str, Any]:
    path = require_shared_github() / "rest-api.json"
    examples: dict[str, Any] = json.loads(path.read_text())["components"]["examples"]
    return examples


def example(name: str) -> Any:
    return _examples()[name]["value"]


def test_pull_request_example() -> None:
    data = example("pull-request")
    pull = parse.pull_request("octocat/Hello-World", data)
    assert pull.number == data["number"]
    assert pull.head_sha == data["head"]["sha"]
    assert pull.base_ref == data["base"]["ref"]
    assert pull.head_repo == data["head"]["repo"]["full_name"]
    assert pull.mergeable is Mergeability.MERGEABLE
    assert pull.updated_at is not None
    assert pull.updated_at.tzinfo is not None
    assert pull.labels == tuple(label["name"] for label in data["labels"])


@pytest.mark.parametrize(
    ("value", "expected"), [(True, "mergeable"), (False, "conflicting"), (None, "unknown")]
)
def test_mergeable_null_is_unknown_never_mergeable(value: bool | None, expected: str) -> None:
    data = dict(example("pull-request"), mergeable=value)
    assert parse.pull_request("o/r", data).mergeable is Mergeability(expected)


def test_issue_example() -> None:
    data = example("issue")
    issue = parse.issue("octocat/Hello-World", data)
    assert issue.number == data["number"]
    assert issue.author.login == data["user"]["login"]
    assert issue.is_pull_request == ("pull_request" in data)


def test_check_runs_reviews_comments_files_statuses() -> None:
    runs = example("check-run-paginated")["check_runs"]
    run = parse.check_run(runs[0])
    assert run.status is CheckStatus(runs[0]["status"])
    assert run.app_slug == runs[0]["app"]["slug"]
    reviews = [parse.review(item) for item in example("pull-request-review-items")]
    assert reviews[0].state is ReviewState.APPROVED
    assert reviews[0].commit_sha == example("pull-request-review-items")[0]["commit_id"]
    comments = [parse.comment(item) for item in example("issue-comment-items")]
    assert comments[0].body == example("issue-comment-items")[0]["body"]
    files = [parse.pull_file(item) for item in example("diff-entry-items")]
    assert files[0].path == example("diff-entry-items")[0]["filename"]
    status = parse.combined_status(example("combined-commit-status"))
    assert status.state == example("combined-commit-status")["state"]
    assert len(status.statuses) == len(example("combined-commit-status")["statuses"])
    ref = parse.ref(example("git-ref"))
    assert ref.ref.startswith("refs/")
    merged = parse.merge_result(
        example("pull-request-merge-result-response-if-merge-was-successful")
    )
    assert merged.merged
    assert merged.sha


def test_permission_prefers_role_name() -> None:
    data = example("repository-collaborator-permission-response-if-user-has-admin-permissions")
    assert parse.permission(data) is Permission.ADMIN
    assert parse.permission({"permission": "write", "role_name": "maintain"}) is Permission.MAINTAIN
    assert parse.permission({"permission": "read"}) is Permission.READ
    assert parse.permission({"permission": "weird"}) is Permission.NONE
    assert Permission.MAINTAIN.at_least(Permission.WRITE)
    assert not Permission.TRIAGE.at_least(Permission.WRITE)


def test_file_content() -> None:
    data = dict(example("content-file"), content=base64.b64encode(b"version: 1\n").decode())
    content = parse.file_content(".github/trunkline.yml", "main", data)
    assert content is not None
    assert content.text == "version: 1\n"
    assert parse.file_content("dir", "main", [{"type": "file"}]) is None
    with pytest.raises(ValidationFailedError, match="not UTF-8"):
        parse.file_content("x", "main", dict(data, content=base64.b64encode(b"\xff").decode()))


def test_missing_required_field_is_a_clear_error() -> None:
    data = dict(example("pull-request"))
    del data["head"]
    with pytest.raises(ValidationFailedError, match="'head'"):
        parse.pull_request("o/r", data)
