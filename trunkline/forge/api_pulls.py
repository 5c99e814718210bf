"""REST routes for pull requests, their files, merging, and reviews.

A pull request is an `Issue` record with `is_pull`; its head sha follows pushes (see
`Forge.reconcile_refs`). Merging: a stale `sha` gives 409, a conflicting or closed pull
request 405; a protected base accepts only a fast-forward by the App (or an admin when
allowed), otherwise 405. Reviews need read access; the author cannot approve their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from trunkline.forge import auth, gitrepo
from trunkline.forge import models as m
from trunkline.forge import render_code as rc
from trunkline.forge.api_support import (
    ApiError,
    Ctx,
    ctx,
    json_response,
    not_found,
    paginate,
    str_field,
    validation,
)

router = APIRouter()
CtxDep = Annotated[Ctx, Depends(ctx)]
Payload = Annotated[dict[str, Any], Body()]


def _pull(c: Ctx, r: m.Repo, number: int) -> m.Issue:
    with c.state.lock:
        issue = c.state.issue(r, number)
    if issue is None or not issue.is_pull:
        raise not_found()
    return issue


@router.post("/repos/{owner}/{repo}/pulls")
def create_pull(owner: str, repo: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    title = str_field(payload, "title", "PullRequest")
    head = (str_field(payload, "head", "PullRequest") or "").split(":")[-1]
    base = str_field(payload, "base", "PullRequest") or ""
    bare = c.state.repo_git_path(r)
    head_sha = gitrepo.resolve(bare, f"refs/heads/{head}")
    base_sha = gitrepo.resolve(bare, f"refs/heads/{base}")
    if head_sha is None:
        raise validation("PullRequest", "head", "invalid")
    if base_sha is None:
        raise validation("PullRequest", "base", "invalid")
    if head_sha == base_sha or gitrepo.is_ancestor(bare, head_sha, base_sha):
        raise ApiError(
            422,
            "Validation Failed",
            [
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between {base} and {head}",
                }
            ],
        )
    now = c.state.now()
    with c.state.lock:
        for other in c.state.issues.values():
            if (
                other.repo_id == r.id
                and other.is_pull
                and other.state == "open"
                and other.head_ref == head
                and other.base_ref == base
            ):
                raise ApiError(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {owner}:{head}.",
                        }
                    ],
                )
        issue = m.Issue(
            id=c.state.new_id(),
            repo_id=r.id,
            number=r.next_number,
            title=title or "",
            user_id=actor.id,
            created_at=now,
            updated_at=now,
            body=str_field(payload, "body", "PullRequest", required=False),
            is_pull=True,
            pull_id=c.state.new_id(),
            head_ref=head,
            head_sha=head_sha,
            base_ref=base,
            draft=bool(payload.get("draft", False)),
        )
        r.next_number += 1
        c.state.issues[issue.id] = issue
        c.state.save()
    body = _render(c, issue)
    c.forge.emit_issue("opened", issue, actor)
    return json_response(body, status=201)


def _render(c: Ctx, issue: m.Issue) -> dict[str, Any]:
    facts = c.forge.pull_facts(issue)
    with c.state.lock:
        return rc.pull(c.state, c.urls, issue, facts)


@router.get("/repos/{owner}/{repo}/pulls")
def list_pulls(owner: str, repo: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    q = c.request.query_params
    wanted_state = q.get("state", "open")
    head = q.get("head", "").split(":")[-1]
    base = q.get("base", "")
    with c.state.lock:
        items = [
            i
            for i in c.state.issues.values()
            if i.repo_id == r.id
            and i.is_pull
            and (wanted_state == "all" or i.state == wanted_state)
            and (not head or i.head_ref == head)
            and (not base or i.base_ref == base)
        ]
    items.sort(key=lambda i: i.number, reverse=q.get("direction", "desc") == "desc")
    page, headers = paginate(c, items)
    return json_response([_render(c, i) for i in page], headers=headers)


@router.get("/repos/{owner}/{repo}/pulls/{number}")
def get_pull(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    return json_response(_render(c, _pull(c, r, number)))


@router.patch("/repos/{owner}/{repo}/pulls/{number}")
def update_pull(owner: str, repo: str, number: int, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    issue = _pull(c, r, number)
    if issue.user_id != actor.id and c.level(r) < m.Permission.WRITE:
        raise ApiError(403, "Must have push access to edit this pull request")
    events: list[tuple[str, dict[str, Any]]] = []
    with c.state.lock:
        changes: dict[str, Any] = {}
        for key in ("title", "body"):
            if key in payload and payload[key] != getattr(issue, key):
                changes[key] = {"from": getattr(issue, key) or ""}
                setattr(issue, key, str_field(payload, key, "PullRequest"))
        if "base" in payload and payload["base"] != issue.base_ref:
            changes["base"] = {"ref": {"from": issue.base_ref}, "sha": {"from": ""}}
            issue.base_ref = str_field(payload, "base", "PullRequest")
        if changes:
            events.append(("edited", {"changes": changes}))
        wanted = payload.get("state")
        if wanted in ("open", "closed") and wanted != issue.state and not issue.merged:
            issue.state = wanted
            now = c.state.now()
            issue.closed_at = now if wanted == "closed" else None
            issue.closed_by_id = actor.id if wanted == "closed" else None
            events.append(("closed" if wanted == "closed" else "reopened", {}))
        issue.updated_at = c.state.now()
        c.state.save()
    for action, extra in events:
        c.forge.emit_issue(action, issue, actor, **extra)
    return json_response(_render(c, issue))


@router.get("/repos/{owner}/{repo}/pulls/{number}/files")
def list_pull_files(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    issue = _pull(c, r, number)
    bare = c.state.repo_git_path(r)
    head = issue.head_sha or ""
    base = r.refs.get(f"refs/heads/{issue.base_ref}", "")
    fork_point = gitrepo.merge_base(bare, base, head) if base else None
    files = gitrepo.diff_files(bare, fork_point, head)
    with c.state.lock:
        items = [rc.diff_entry(c.state, c.urls, r, head, f) for f in files]
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


@router.get("/repos/{owner}/{repo}/pulls/{number}/commits")
def list_pull_commits(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    issue = _pull(c, r, number)
    bare = c.state.repo_git_path(r)
    base = r.refs.get(f"refs/heads/{issue.base_ref}", "")
    head = issue.head_sha or ""
    rng = f"{base}..{head}" if base and not issue.merged else head
    shas = gitrepo.list_commits(bare, rng) if not issue.merged else [head]
    infos = [gitrepo.commit_info(bare, sha) for sha in shas]
    page, headers = paginate(c, infos)
    with c.state.lock:
        bodies = [rc.commit(c.state, c.urls, r, info) for info in page]
    return json_response(bodies, headers=headers)


@router.get("/repos/{owner}/{repo}/pulls/{number}/merge")
def check_merged(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    issue = _pull(c, r, number)
    if not issue.merged:
        raise not_found()
    return Response(status_code=204)


@router.put("/repos/{owner}/{repo}/pulls/{number}/merge")
def merge_pull(
    owner: str, repo: str, number: int, c: CtxDep, payload: Annotated[Any, Body()] = None
) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    actor = c.actor()
    payload = payload if isinstance(payload, dict) else {}
    issue = _pull(c, r, number)
    bare = c.state.repo_git_path(r)
    with c.forge.git_lock(r):
        if issue.state != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        head = issue.head_sha or ""
        wanted = payload.get("sha")
        if wanted is not None and wanted != head:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        ref = f"refs/heads/{issue.base_ref}"
        base = gitrepo.resolve(bare, ref)
        if base is None:
            raise ApiError(405, "Base branch does not exist")
        method = payload.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise validation("PullRequest", "merge_method", "invalid")
        fast_forward = gitrepo.is_ancestor(bare, base, head)
        if auth.is_protected(r, ref):
            if not auth.may_update_protected(c.state, c.principal, r):
                raise ApiError(405, "Protected branch: only the App may update it")
            if not fast_forward:
                raise ApiError(405, "Protected branch: only fast-forward merges are allowed")
            if method == "merge":
                raise ApiError(405, "Merge commits are not allowed on this protected branch")
        if fast_forward and method != "merge":
            new = head
        else:
            tree = gitrepo.merge_tree(bare, base, head)
            if tree is None:
                raise ApiError(405, "Pull Request is not mergeable")
            title = str(payload.get("commit_title") or f"Merge pull request #{number}")
            message = f"{title}\n\n{payload.get('commit_message') or issue.title}"
            parents = [base] if method == "squash" else [base, head]
            new = gitrepo.commit_tree(bare, tree, parents, message, actor.login)
            if method == "rebase" and not fast_forward:
                raise ApiError(405, "This branch can't be rebased")
        gitrepo.update_ref(bare, ref, new, base)
        c.forge.mark_merged(issue, actor, new)  # before the push is seen: merge_commit_sha
        c.forge.reconcile_refs(r, actor)
    return json_response(
        {"sha": new, "merged": True, "message": "Pull Request successfully merged"}
    )


# ---- reviews -------------------------------------------------------------------------

REVIEW_EVENTS = {
    "APPROVE": "APPROVED",
    "REQUEST_CHANGES": "CHANGES_REQUESTED",
    "COMMENT": "COMMENTED",
}


@router.post("/repos/{owner}/{repo}/pulls/{number}/reviews")
def create_review(owner: str, repo: str, number: int, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo)
    actor = c.actor()
    issue = _pull(c, r, number)
    event = payload.get("event")
    if event not in REVIEW_EVENTS:
        raise validation("PullRequestReview", "event", "invalid")
    text = str_field(payload, "body", "PullRequestReview", required=False)
    if event in ("REQUEST_CHANGES", "COMMENT") and not text and not payload.get("comments"):
        raise ApiError(422, "Unprocessable Entity", [f"Review Body is required for {event}"])
    if event in ("APPROVE", "REQUEST_CHANGES") and issue.user_id == actor.id:
        raise ApiError(422, "Unprocessable Entity", ["Can not approve your own pull request"])
    commit_id = str_field(payload, "commit_id", "PullRequestReview", required=False)
    commit_id = commit_id or issue.head_sha or ""
    if gitrepo.resolve(c.state.repo_git_path(r), commit_id) is None:
        raise validation("PullRequestReview", "commit_id", "invalid")
    raw_comments = payload.get("comments") or []
    if raw_comments:
        bare = c.state.repo_git_path(r)
        base = r.refs.get(f"refs/heads/{issue.base_ref}", "")
        fork_point = gitrepo.merge_base(bare, base, commit_id) if base else None
        in_diff = {f.filename for f in gitrepo.diff_files(bare, fork_point, commit_id)}
        for raw in raw_comments:
            if isinstance(raw, dict) and str(raw.get("path")) not in in_diff:
                raise ApiError(
                    422,
                    "Unprocessable Entity",
                    ["Path could not be resolved", "Pull request review thread path is invalid"],
                )
    now = c.state.now()
    with c.state.lock:
        review = m.Review(
            id=c.state.new_id(),
            repo_id=r.id,
            number=number,
            user_id=actor.id,
            state=REVIEW_EVENTS[event],
            commit_id=commit_id,
            submitted_at=now,
            body=text,
        )
        c.state.reviews[review.id] = review
        for raw in payload.get("comments") or []:
            if not isinstance(raw, dict) or "path" not in raw or "body" not in raw:
                raise validation("PullRequestReviewComment", "path")
            line = raw.get("line", raw.get("position"))
            comment = m.ReviewComment(
                id=c.state.new_id(),
                review_id=review.id,
                repo_id=r.id,
                number=number,
                user_id=actor.id,
                path=str(raw["path"]),
                body=str(raw["body"]),
                commit_id=commit_id,
                created_at=now,
                line=int(line) if line is not None else None,
                side=str(raw.get("side", "RIGHT")),
            )
            c.state.review_comments[comment.id] = comment
        c.state.save()
        body = rc.review(c.state, c.urls, review)
        hook_review = rc.review(c.state, c.forge.urls, review)
    hook_review["state"] = review.state.lower()
    c.forge.emit(
        "pull_request_review",
        r,
        actor,
        action="submitted",
        review=hook_review,
        pull_request=c.forge.render_pull(issue),
    )
    return json_response(body)


@router.get("/repos/{owner}/{repo}/pulls/{number}/reviews")
def list_reviews(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    _pull(c, r, number)
    with c.state.lock:
        found = sorted(
            (x for x in c.state.reviews.values() if x.repo_id == r.id and x.number == number),
            key=lambda x: x.id,
        )
        page, headers = paginate(c, found)
        bodies = [rc.review(c.state, c.urls, x) for x in page]
    return json_response(bodies, headers=headers)


@router.get("/repos/{owner}/{repo}/pulls/{number}/comments")
def list_review_comments(owner: str, repo: str, number: int, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    _pull(c, r, number)
    with c.state.lock:
        found = sorted(
            (
                x
                for x in c.state.review_comments.values()
                if x.repo_id == r.id and x.number == number
            ),
            key=lambda x: x.id,
        )
        page, headers = paginate(c, found)
        bodies = [rc.review_comment(c.state, c.urls, x) for x in page]
    return json_response(bodies, headers=headers)
