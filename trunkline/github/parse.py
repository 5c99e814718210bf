"""GitHub REST JSON -> frozen snapshots. Pure; performs no I/O.

Tolerant of missing optional fields (the forge and GitHub Enterprise versions differ) and
strict about the ones trunkline decides on (numbers, SHAs, refs): a missing required field
raises `ValidationFailedError` naming it, rather than a KeyError deep in a runner.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from trunkline.github.errors import ValidationFailedError
from trunkline.github.model import (
    Actor,
    CheckConclusion,
    CheckRun,
    CheckStatus,
    CombinedStatus,
    Comment,
    Commit,
    CommitStatus,
    FileContent,
    Issue,
    IssueEvent,
    Mergeability,
    MergeResult,
    Permission,
    PullFile,
    PullRequest,
    Ref,
    Review,
    ReviewComment,
    ReviewState,
)

Json = dict[str, Any]


def _require(data: Json, key: str) -> Any:
    if not isinstance(data, dict) or data.get(key) is None:
        raise ValidationFailedError(f"GitHub response lacks {key!r}")
    return data[key]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else None


def actor(data: Any) -> Actor:
    if not isinstance(data, dict):
        return Actor("ghost")
    login = str(data.get("login") or "ghost")
    return Actor(login, is_bot=data.get("type") == "Bot" or login.endswith("[bot]"))


def _labels(data: Json) -> tuple[str, ...]:
    labels = data.get("labels") or []
    return tuple(str(label["name"]) if isinstance(label, dict) else str(label) for label in labels)


def issue(repo: str, data: Json) -> Issue:
    return Issue(
        repo=repo,
        number=int(_require(data, "number")),
        title=str(data.get("title") or ""),
        body=str(data.get("body") or ""),
        state=str(data.get("state") or "open"),
        author=actor(data.get("user")),
        labels=_labels(data),
        is_pull_request=data.get("pull_request") is not None,
        updated_at=_time(data.get("updated_at")),
    )


def issue_event(data: Json) -> IssueEvent:
    label = data.get("label")
    return IssueEvent(
        id=int(_require(data, "id")),
        event=str(_require(data, "event")),
        actor=actor(data.get("actor")),
        created_at=_time(data.get("created_at")),
        label=str(label["name"]) if isinstance(label, dict) and label.get("name") else None,
    )


def mergeability(value: Any) -> Mergeability:
    if value is True:
        return Mergeability.MERGEABLE
    if value is False:
        return Mergeability.CONFLICTING
    return Mergeability.UNKNOWN


def pull_request(repo: str, data: Json) -> PullRequest:
    head = _require(data, "head")
    base = _require(data, "base")
    head_repo = head.get("repo") if isinstance(head, dict) else None
    return PullRequest(
        repo=repo,
        number=int(_require(data, "number")),
        title=str(data.get("title") or ""),
        body=str(data.get("body") or ""),
        state=str(data.get("state") or "open"),
        author=actor(data.get("user")),
        head_sha=str(_require(head, "sha")),
        head_ref=str(_require(head, "ref")),
        base_ref=str(_require(base, "ref")),
        base_sha=str(_require(base, "sha")),
        head_repo=str(head_repo["full_name"]) if isinstance(head_repo, dict) else None,
        labels=_labels(data),
        draft=bool(data.get("draft")),
        merged=bool(data.get("merged")),
        merge_commit_sha=data.get("merge_commit_sha"),
        mergeable=mergeability(data.get("mergeable")),
        mergeable_state=str(data.get("mergeable_state") or "unknown"),
        updated_at=_time(data.get("updated_at")),
    )


def pull_file(data: Json) -> PullFile:
    return PullFile(
        path=str(_require(data, "filename")),
        status=str(data.get("status") or "modified"),
        additions=int(data.get("additions") or 0),
        deletions=int(data.get("deletions") or 0),
        previous_path=data.get("previous_filename"),
    )


def commit(data: Json) -> Commit:
    inner = data.get("commit")
    inner = inner if isinstance(inner, dict) else {}
    parents = data.get("parents") or []
    return Commit(
        sha=str(_require(data, "sha")),
        parents=tuple(str(p["sha"]) for p in parents if isinstance(p, dict) and p.get("sha")),
        message=str(inner.get("message") or ""),
        author=actor(data["author"]) if isinstance(data.get("author"), dict) else None,
        committer=actor(data["committer"]) if isinstance(data.get("committer"), dict) else None,
    )


def review(data: Json) -> Review:
    state = str(data.get("state") or "COMMENTED").upper()
    return Review(
        id=int(_require(data, "id")),
        author=actor(data.get("user")),
        state=ReviewState(state) if state in ReviewState.__members__ else ReviewState.COMMENTED,
        commit_sha=data.get("commit_id"),
        body=str(data.get("body") or ""),
        submitted_at=_time(data.get("submitted_at")),
    )


def review_comment(data: Json) -> ReviewComment:
    review_id = data.get("pull_request_review_id")
    line = data.get("line")
    return ReviewComment(
        id=int(_require(data, "id")),
        review_id=int(review_id) if review_id is not None else None,
        author=actor(data.get("user")),
        path=str(data.get("path") or ""),
        line=int(line) if line is not None else None,
        body=str(data.get("body") or ""),
    )


def check_run(data: Json) -> CheckRun:
    output = data.get("output") or {}
    app = data.get("app") or {}
    conclusion = data.get("conclusion")
    return CheckRun(
        id=int(_require(data, "id")),
        name=str(_require(data, "name")),
        head_sha=str(_require(data, "head_sha")),
        status=CheckStatus(str(data.get("status") or "queued")),
        conclusion=CheckConclusion(conclusion) if conclusion else None,
        external_id=data.get("external_id") or None,
        details_url=data.get("details_url") or None,
        app_slug=app.get("slug") if isinstance(app, dict) else None,
        title=output.get("title") if isinstance(output, dict) else None,
        summary=output.get("summary") if isinstance(output, dict) else None,
        started_at=_time(data.get("started_at")),
        completed_at=_time(data.get("completed_at")),
    )


def combined_status(data: Json) -> CombinedStatus:
    statuses = tuple(
        CommitStatus(
            context=str(item.get("context") or "default"),
            state=str(item.get("state") or "pending"),
            description=item.get("description"),
            target_url=item.get("target_url"),
        )
        for item in data.get("statuses") or []
    )
    return CombinedStatus(str(_require(data, "sha")), str(data.get("state") or "pending"), statuses)


def permission(data: Json) -> Permission:
    role = str(data.get("role_name") or "").lower()
    if role in Permission.__members__.values():
        return Permission(role)
    name = str(data.get("permission") or "none").lower()
    return Permission(name) if name in Permission.__members__.values() else Permission.NONE


def file_content(path: str, ref: str, data: Any) -> FileContent | None:
    if not isinstance(data, dict) or data.get("type", "file") != "file":
        return None
    encoded = str(data.get("content") or "")
    if data.get("encoding", "base64") != "base64":
        raise ValidationFailedError(f"{path} is too large for the contents API")
    try:
        text = base64.b64decode(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValidationFailedError(f"{path} at {ref} is not UTF-8 text") from error
    return FileContent(path=path, ref=ref, sha=str(data.get("sha") or ""), text=text)


def comment(data: Json) -> Comment:
    return Comment(
        id=int(_require(data, "id")),
        body=str(data.get("body") or ""),
        author=actor(data.get("user")),
        html_url=str(data.get("html_url") or ""),
        created_at=_time(data.get("created_at")),
        updated_at=_time(data.get("updated_at")),
    )


def ref(data: Json) -> Ref:
    target = _require(data, "object")
    return Ref(ref=str(_require(data, "ref")), sha=str(_require(target, "sha")))


def merge_result(data: Json) -> MergeResult:
    return MergeResult(
        merged=bool(data.get("merged")),
        sha=data.get("sha"),
        message=str(data.get("message") or ""),
    )
