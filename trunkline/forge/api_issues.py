"""REST routes for issues, labels, assignees and issue comments.

Permissions (as on GitHub, simplified): anyone who can read may open issues and comment;
editing an issue's title/body/state needs its author or triage; labels and assignees need
triage; creating labels needs write. Editing a comment needs its author or write. Every label
change is logged in the issue's event log (`GET .../issues/{n}/events`: `labeled` /
`unlabeled` with the actor), as GitHub does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from trunkline.forge import models as m
from trunkline.forge import render_core as rr
from trunkline.forge.api_support import (
    ApiError,
    Ctx,
    ctx,
    json_response,
    list_field,
    not_found,
    paginate,
    str_field,
    validation,
)
from trunkline.forge.state import ForgeState

router = APIRouter()
CtxDep = Annotated[Ctx, Depends(ctx)]
Payload = Annotated[dict[str, Any], Body()]


def _issue(c: Ctx, r: m.Repo, number: int) -> m.Issue:
    with c.state.lock:
        issue = c.state.issue(r, number)
    if issue is None:
        raise not_found()
    return issue


def _labels_for(c: Ctx, r: m.Repo, names: list[str]) -> list[m.Label]:
    labels = []
    with c.state.lock:
        for name in names:
            label = c.state.label_by_name(r, name)
            if label is None:  # GitHub creates unknown labels on the fly
                label = m.Label(id=c.state.new_id(), repo_id=r.id, name=name)
                c.state.labels[label.id] = label
            labels.append(label)
    return labels


def _users_for(c: Ctx, r: m.Repo, logins: list[str]) -> list[m.User]:
    users = []
    with c.state.lock:
        for login in logins:
            u = c.state.user_by_login(login)
            if u is None or c.state.permission(r, u) < m.Permission.READ:
                raise validation("Issue", "assignees", "invalid", value=login)
            users.append(u)
    return users


@router.post("/repos/{owner}/{repo}/issues")
def create_issue(owner: str, repo: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    title = str_field(payload, "title", "Issue")
    if not title:
        raise validation("Issue", "title")
    triage = c.level(r) >= m.Permission.TRIAGE
    labels = _labels_for(c, r, list_field(payload, "labels", "Issue")) if triage else []
    assignees = _users_for(c, r, list_field(payload, "assignees", "Issue")) if triage else []
    now = c.state.now()
    with c.state.lock:
        issue = m.Issue(
            id=c.state.new_id(),
            repo_id=r.id,
            number=r.next_number,
            title=title,
            user_id=actor.id,
            created_at=now,
            updated_at=now,
            body=str_field(payload, "body", "Issue", required=False),
            label_ids=[x.id for x in labels],
            assignee_ids=[u.id for u in assignees],
        )
        r.next_number += 1
        c.state.issues[issue.id] = issue
        c.state.save()
        body = rr.issue(c.state, c.urls, issue)
    c.forge.emit_issue("opened", issue, actor)
    return json_response(body, status=201)


@router.get("/repos/{owner}/{repo}/issues")
def list_issues(owner: str, repo: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    q = c.request.query_params
    wanted_state = q.get("state", "open")
    wanted_labels = {x.lower() for x in q.get("labels", "").split(",") if x}
    with c.state.lock:
        items = []
        for issue in c.state.issues.values():
            if issue.repo_id != r.id:
                continue
            if wanted_state != "all" and issue.state != wanted_state:
                continue
            names = {c.state.labels[x].name.lower() for x in issue.label_ids if x in c.state.labels}
            if not wanted_labels <= names:
                continue
            items.append(issue)
        reverse = q.get("direction", "desc") == "desc"
        key = "updated_at" if q.get("sort") == "updated" else "created_at"
        items.sort(key=lambda i: (getattr(i, key), i.number), reverse=reverse)
        page, headers = paginate(c, items)
        bodies = [rr.issue(c.state, c.urls, i) for i in page]
    return json_response(bodies, headers=headers)


@router.get("/repos/{owner}/{repo}/issues/{number}")
def get_issue(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    issue = _issue(c, r, number)
    with c.state.lock:
        return json_response(rr.issue(c.state, c.urls, issue))


@router.patch("/repos/{owner}/{repo}/issues/{number}")
def edit_issue(owner: str, repo: str, number: int, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    issue = _issue(c, r, number)
    triage = c.level(r) >= m.Permission.TRIAGE
    if not triage and issue.user_id != actor.id:
        raise ApiError(403, "Must have triage access to edit this issue")
    if not triage and ("labels" in payload or "assignees" in payload):
        raise ApiError(403, "Must have triage access to change labels or assignees")
    events: list[tuple[str, dict[str, Any]]] = []
    now = c.state.now()
    new_labels = (
        _labels_for(c, r, list_field(payload, "labels", "Issue")) if "labels" in payload else None
    )
    new_assignees = (
        _users_for(c, r, list_field(payload, "assignees", "Issue"))
        if "assignees" in payload
        else None
    )
    with c.state.lock:
        changes: dict[str, Any] = {}
        for key in ("title", "body"):
            if key in payload:
                value = str_field(payload, key, "Issue", required=key == "title")
                if value != getattr(issue, key):
                    changes[key] = {"from": getattr(issue, key) or ""}
                    setattr(issue, key, value)
        if changes:
            events.append(("edited", {"changes": changes}))
        if "state" in payload:
            wanted = payload["state"]
            if wanted not in ("open", "closed"):
                raise validation("Issue", "state", "invalid")
            if wanted != issue.state:
                if issue.is_pull and issue.merged:
                    raise ApiError(422, "Cannot reopen a merged pull request")
                issue.state = wanted
                if wanted == "closed":
                    issue.closed_at, issue.closed_by_id = now, actor.id
                    issue.state_reason = payload.get("state_reason") or "completed"
                    events.append(("closed", {}))
                else:
                    issue.closed_at, issue.closed_by_id = None, None
                    issue.state_reason = "reopened"
                    events.append(("reopened", {}))
        if new_labels is not None:
            events += _set_labels(c, issue, [x.id for x in new_labels], actor)
        if new_assignees is not None:
            events += _set_assignees(c, issue, [u.id for u in new_assignees])
        issue.updated_at = now
        c.state.save()
        body = rr.issue(c.state, c.urls, issue)
    for action, extra in events:
        c.forge.emit_issue(action, issue, actor, **extra)
    return json_response(body)


def _set_labels(
    c: Ctx, issue: m.Issue, ids: list[int], actor: m.User
) -> list[tuple[str, dict[str, Any]]]:
    """Set the issue's labels; returns the webhooks to send and logs each change in the
    issue's event log (`issues/list-events`) as done by `actor`. Callers hold the lock."""
    events: list[tuple[str, dict[str, Any]]] = []
    for x in issue.label_ids:
        if x not in ids and x in c.state.labels:
            events.append(
                ("unlabeled", {"label": rr.label(c.state, c.forge.urls, c.state.labels[x])})
            )
            record_label_event(c.state, issue, "unlabeled", c.state.labels[x], actor)
    for x in ids:
        if x not in issue.label_ids:
            events.append(
                ("labeled", {"label": rr.label(c.state, c.forge.urls, c.state.labels[x])})
            )
            record_label_event(c.state, issue, "labeled", c.state.labels[x], actor)
    issue.label_ids = list(dict.fromkeys(ids))
    return events


def record_label_event(
    state: ForgeState, issue: m.Issue, kind: str, label: m.Label, actor: m.User
) -> None:
    """Append a `labeled` / `unlabeled` entry to the issue's event log (under the lock)."""
    event = m.IssueEvent(
        id=state.new_id(),
        repo_id=issue.repo_id,
        number=issue.number,
        actor_id=actor.id,
        event=kind,
        created_at=state.now(),
        label_name=label.name,
        label_color=label.color,
    )
    state.issue_events[event.id] = event


def _set_assignees(c: Ctx, issue: m.Issue, ids: list[int]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for x in issue.assignee_ids:
        if x not in ids:
            events.append(("unassigned", {"assignee": rr.user(c.forge.urls, c.state.users[x])}))
    for x in ids:
        if x not in issue.assignee_ids:
            events.append(("assigned", {"assignee": rr.user(c.forge.urls, c.state.users[x])}))
    issue.assignee_ids = list(dict.fromkeys(ids))
    return events


def _label_response(c: Ctx, issue: m.Issue, status: int = 200) -> Response:
    with c.state.lock:
        body = [rr.label(c.state, c.urls, c.state.labels[x]) for x in issue.label_ids]
    return json_response(body, status=status)


@router.get("/repos/{owner}/{repo}/issues/{number}/labels")
def list_issue_labels(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    issue = _issue(c, r, number)
    with c.state.lock:
        items = [rr.label(c.state, c.urls, c.state.labels[x]) for x in issue.label_ids]
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


def _change_labels(
    owner: str, repo: str, number: int, c: Ctx, payload: Any, replace: bool
) -> Response:
    r = c.repo(owner, repo, m.Permission.TRIAGE)
    actor = c.actor()
    issue = _issue(c, r, number)
    labels = _labels_for(c, r, list_field(payload, "labels", "Label"))
    with c.state.lock:
        ids = [x.id for x in labels] if replace else issue.label_ids + [x.id for x in labels]
        events = _set_labels(c, issue, ids, actor)
        issue.updated_at = c.state.now()
        c.state.save()
    for action, extra in events:
        c.forge.emit_issue(action, issue, actor, **extra)
    return _label_response(c, issue)


@router.post("/repos/{owner}/{repo}/issues/{number}/labels")
def add_labels(
    owner: str, repo: str, number: int, c: CtxDep, payload: Annotated[Any, Body()]
) -> Response:
    return _change_labels(owner, repo, number, c, payload, replace=False)


@router.put("/repos/{owner}/{repo}/issues/{number}/labels")
def set_labels(
    owner: str, repo: str, number: int, c: CtxDep, payload: Annotated[Any, Body()]
) -> Response:
    return _change_labels(owner, repo, number, c, payload, replace=True)


@router.delete("/repos/{owner}/{repo}/issues/{number}/labels/{name}")
def remove_label(owner: str, repo: str, number: int, name: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo, m.Permission.TRIAGE)
    actor = c.actor()
    issue = _issue(c, r, number)
    with c.state.lock:
        label = c.state.label_by_name(r, name)
        if label is None or label.id not in issue.label_ids:
            raise ApiError(404, "Label does not exist")
        events = _set_labels(c, issue, [x for x in issue.label_ids if x != label.id], actor)
        issue.updated_at = c.state.now()
        c.state.save()
    for action, extra in events:
        c.forge.emit_issue(action, issue, actor, **extra)
    return _label_response(c, issue)


def _change_assignees(
    owner: str, repo: str, number: int, c: Ctx, payload: Any, add: bool
) -> Response:
    r = c.repo(owner, repo, m.Permission.TRIAGE)
    actor = c.actor()
    issue = _issue(c, r, number)
    users = _users_for(c, r, list_field(payload, "assignees", "Issue"))
    with c.state.lock:
        given = [u.id for u in users]
        ids = (
            issue.assignee_ids + given if add else [x for x in issue.assignee_ids if x not in given]
        )
        events = _set_assignees(c, issue, ids)
        issue.updated_at = c.state.now()
        c.state.save()
        body = rr.issue(c.state, c.urls, issue)
    for action, extra in events:
        c.forge.emit_issue(action, issue, actor, **extra)
    return json_response(body, status=201 if add else 200)


@router.post("/repos/{owner}/{repo}/issues/{number}/assignees")
def add_assignees(owner: str, repo: str, number: int, c: CtxDep, payload: Payload) -> Response:
    return _change_assignees(owner, repo, number, c, payload, add=True)


@router.delete("/repos/{owner}/{repo}/issues/{number}/assignees")
def remove_assignees(owner: str, repo: str, number: int, c: CtxDep, payload: Payload) -> Response:
    return _change_assignees(owner, repo, number, c, payload, add=False)


@router.get("/repos/{owner}/{repo}/issues/{number}/events")
def list_issue_events(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    _issue(c, r, number)
    with c.state.lock:
        found = [
            x for x in c.state.issue_events.values() if x.repo_id == r.id and x.number == number
        ]
        found.sort(key=lambda x: x.id)
        page, headers = paginate(c, found)
        bodies = [rr.issue_event(c.state, c.urls, x) for x in page]
    return json_response(bodies, headers=headers)


@router.get("/repos/{owner}/{repo}/labels")
def list_labels(owner: str, repo: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    with c.state.lock:
        items = [rr.label(c.state, c.urls, x) for x in c.state.repo_labels(r)]
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


@router.get("/repos/{owner}/{repo}/labels/{name}")
def get_label(owner: str, repo: str, name: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    with c.state.lock:
        label = c.state.label_by_name(r, name)
        if label is None:
            raise not_found()
        return json_response(rr.label(c.state, c.urls, label))


@router.post("/repos/{owner}/{repo}/labels")
def create_label(owner: str, repo: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    name = str_field(payload, "name", "Label") or ""
    with c.state.lock:
        if c.state.label_by_name(r, name) is not None:
            raise validation("Label", "name", "already_exists")
        label = m.Label(
            id=c.state.new_id(),
            repo_id=r.id,
            name=name,
            color=(str_field(payload, "color", "Label", required=False) or "ededed").lstrip("#"),
            description=str_field(payload, "description", "Label", required=False),
        )
        c.state.labels[label.id] = label
        c.state.save()
        return json_response(rr.label(c.state, c.urls, label), status=201)


# ---- comments ------------------------------------------------------------------------


@router.post("/repos/{owner}/{repo}/issues/{number}/comments")
def create_comment(owner: str, repo: str, number: int, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    issue = _issue(c, r, number)
    text = str_field(payload, "body", "IssueComment") or ""
    now = c.state.now()
    with c.state.lock:
        comment = m.Comment(
            id=c.state.new_id(),
            repo_id=r.id,
            number=number,
            user_id=actor.id,
            body=text,
            created_at=now,
            updated_at=now,
        )
        c.state.comments[comment.id] = comment
        issue.comment_count += 1
        issue.updated_at = now
        c.state.save()
        body = rr.comment(c.state, c.urls, comment)
    _emit_comment(c, "created", issue, comment, actor)
    return json_response(body, status=201)


def _emit_comment(
    c: Ctx, action: str, issue: m.Issue, comment: m.Comment, actor: m.User, **extra: Any
) -> None:
    with c.state.lock:
        issue_body = rr.issue(c.state, c.forge.urls, issue)
        comment_body = rr.comment(c.state, c.forge.urls, comment)
    r = c.state.repos[issue.repo_id]
    c.forge.emit(
        "issue_comment", r, actor, action=action, issue=issue_body, comment=comment_body, **extra
    )


@router.get("/repos/{owner}/{repo}/issues/{number}/comments")
def list_comments(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    _issue(c, r, number)
    with c.state.lock:
        found = [x for x in c.state.comments.values() if x.repo_id == r.id and x.number == number]
        found.sort(key=lambda x: x.id)
        page, headers = paginate(c, found)
        bodies = [rr.comment(c.state, c.urls, x) for x in page]
    return json_response(bodies, headers=headers)


def _comment(c: Ctx, r: m.Repo, comment_id: int) -> m.Comment:
    with c.state.lock:
        comment = c.state.comments.get(comment_id)
    if comment is None or comment.repo_id != r.id:
        raise not_found()
    return comment


@router.get("/repos/{owner}/{repo}/issues/comments/{comment_id}")
def get_comment(owner: str, repo: str, comment_id: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    comment = _comment(c, r, comment_id)
    with c.state.lock:
        return json_response(rr.comment(c.state, c.urls, comment))


@router.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}")
def edit_comment(owner: str, repo: str, comment_id: int, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    comment = _comment(c, r, comment_id)
    if comment.user_id != actor.id and c.level(r) < m.Permission.WRITE:
        raise ApiError(403, "Must have write access to edit another user's comment")
    text = str_field(payload, "body", "IssueComment") or ""
    with c.state.lock:
        previous = comment.body
        comment.body = text
        comment.updated_at = c.state.now()
        c.state.save()
        body = rr.comment(c.state, c.urls, comment)
        issue = c.state.issue(r, comment.number)
    if issue is not None:
        _emit_comment(c, "edited", issue, comment, actor, changes={"body": {"from": previous}})
    return json_response(body)
