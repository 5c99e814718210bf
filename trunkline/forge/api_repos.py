"""REST routes for repositories: metadata, collaborators, contents, commits, compare, statuses.

Handlers read git through `trunkline.forge.gitrepo` and render with the render modules.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from trunkline.forge import gitrepo
from trunkline.forge import models as m
from trunkline.forge import render_code as rc
from trunkline.forge import render_core as rr
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


@router.get("/repos/{owner}/{repo}")
def get_repo(owner: str, repo: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    with c.state.lock:
        viewer = c.principal.user if c.principal is not None else None
        return json_response(rr.repo(c.state, c.urls, r, viewer=viewer))


@router.get("/repos/{owner}/{repo}/collaborators")
def list_collaborators(owner: str, repo: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    with c.state.lock:
        users = [c.state.users[r.owner_id]] + [
            c.state.users[int(uid)]
            for uid in sorted(r.permissions, key=int)
            if int(uid) in c.state.users and int(uid) != r.owner_id and r.permissions[uid] > 0
        ]
        items = []
        for u in users:
            level = c.state.permission(r, u)
            body = rr.user(c.urls, u)
            body["permissions"] = {
                "admin": level >= m.Permission.ADMIN,
                "maintain": level >= m.Permission.MAINTAIN,
                "push": level >= m.Permission.WRITE,
                "triage": level >= m.Permission.TRIAGE,
                "pull": level >= m.Permission.READ,
            }
            body["role_name"] = level.github_name
            items.append(body)
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


@router.get("/repos/{owner}/{repo}/collaborators/{username}/permission")
def get_collaborator_permission(owner: str, repo: str, username: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    with c.state.lock:
        u = c.state.user_by_login(username)
        if u is None:
            raise not_found()
        level = c.state.permission(r, u)
        body = rr.user(c.urls, u)
        body["permissions"] = {
            "admin": level >= m.Permission.ADMIN,
            "maintain": level >= m.Permission.MAINTAIN,
            "push": level >= m.Permission.WRITE,
            "triage": level >= m.Permission.TRIAGE,
            "pull": level >= m.Permission.READ,
        }
        body["role_name"] = level.github_name
        return json_response(
            {"permission": level.legacy_name, "role_name": level.github_name, "user": body}
        )


@router.get("/repos/{owner}/{repo}/branches/{branch:path}")
def get_branch(owner: str, repo: str, branch: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    bare = c.state.repo_git_path(r)
    sha = gitrepo.resolve(bare, f"refs/heads/{branch}")
    if sha is None:
        raise ApiError(404, "Branch not found")
    info = gitrepo.commit_info(bare, sha)
    protected = branch in r.protected_branches
    with c.state.lock:
        api = rr.repo_api(c.state, c.urls, r)
        body = {
            "name": branch,
            "commit": rc.commit(c.state, c.urls, r, info),
            "_links": {
                "self": f"{api}/branches/{branch}",
                "html": f"{c.urls.web}/{c.state.repo_full_name(r)}/tree/{branch}",
            },
            "protected": protected,
            "protection": {
                "enabled": protected,
                "required_status_checks": {
                    "enforcement_level": "off",
                    "contexts": [],
                    "checks": [],
                },
                "required_linear_history": {"enabled": protected},
                "allow_force_pushes": {"enabled": not protected},
                "allow_deletions": {"enabled": not protected},
            },
            "protection_url": f"{api}/branches/{branch}/protection",
        }
    return json_response(body)


@router.get("/repos/{owner}/{repo}/contents/{path:path}")
def get_contents(owner: str, repo: str, path: str, c: CtxDep) -> Response:
    return _contents(owner, repo, path, c)


def _contents(owner: str, repo: str, path: str, c: Ctx) -> Response:
    r = c.repo(owner, repo)
    bare = c.state.repo_git_path(r)
    ref = c.request.query_params.get("ref") or r.default_branch
    sha = gitrepo.resolve(bare, ref)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    path = path.strip("/")
    entries = gitrepo.tree_entries(bare, sha, path)
    if entries is None:
        raise not_found()
    with c.state.lock:
        if len(entries) == 1 and entries[0].kind == "blob" and entries[0].path == path:
            data = gitrepo.read_blob(bare, entries[0].sha)
            return json_response(rc.content_entry(c.state, c.urls, r, entries[0], ref, data))
        return json_response([rc.content_entry(c.state, c.urls, r, e, ref, None) for e in entries])


@router.get("/repos/{owner}/{repo}/commits/{ref:path}/status")
def get_combined_status(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    sha = _sha(c, r, ref)
    with c.state.lock:
        body = rc.combined_status(c.state, c.urls, r, sha)
    page, headers = paginate(c, body["statuses"])
    body["statuses"] = page
    return json_response(body, headers=headers)


@router.get("/repos/{owner}/{repo}/commits/{ref:path}/statuses")
def list_statuses(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    sha = _sha(c, r, ref)
    with c.state.lock:
        items = [
            rc.status(c.state, c.urls, s)
            for s in sorted(c.state.statuses.values(), key=lambda x: -x.id)
            if s.repo_id == r.id and s.sha == sha
        ]
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


@router.get("/repos/{owner}/{repo}/commits/{ref:path}")
def get_commit(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    sha = _sha(c, r, ref)
    bare = c.state.repo_git_path(r)
    info = gitrepo.commit_info(bare, sha)
    files = gitrepo.diff_files(bare, info.parents[0] if info.parents else None, sha)
    with c.state.lock:
        return json_response(rc.commit(c.state, c.urls, r, info, files))


def _sha(c: Ctx, r: m.Repo, ref: str) -> str:
    sha = gitrepo.resolve(c.state.repo_git_path(r), ref)
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}")
    return sha


@router.get("/repos/{owner}/{repo}/compare/{basehead:path}")
def compare(owner: str, repo: str, basehead: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    base_name, sep, head_name = basehead.partition("...")
    if not sep:
        raise not_found()
    bare = c.state.repo_git_path(r)
    base, head = gitrepo.resolve(bare, base_name), gitrepo.resolve(bare, head_name)
    if base is None or head is None:
        raise not_found()
    fork_point = gitrepo.merge_base(bare, base, head)
    if fork_point is None:
        raise ApiError(404, f"No common ancestor between {base_name} and {head_name}.")
    ahead = gitrepo.count_commits(bare, f"{base}..{head}")
    behind = gitrepo.count_commits(bare, f"{head}..{base}")
    status = (
        "identical"
        if ahead == 0 and behind == 0
        else "ahead"
        if behind == 0
        else "behind"
        if ahead == 0
        else "diverged"
    )
    commits = [gitrepo.commit_info(bare, s) for s in gitrepo.list_commits(bare, f"{base}..{head}")]
    files = gitrepo.diff_files(bare, fork_point, head)
    base_info = gitrepo.commit_info(bare, base)
    fork_info = gitrepo.commit_info(bare, fork_point)
    with c.state.lock:
        api = rr.repo_api(c.state, c.urls, r)
        web = f"{c.urls.web}/{c.state.repo_full_name(r)}"
        body = {
            "url": f"{api}/compare/{basehead}",
            "html_url": f"{web}/compare/{basehead}",
            "permalink_url": f"{web}/compare/{base}...{head}",
            "diff_url": f"{web}/compare/{basehead}.diff",
            "patch_url": f"{web}/compare/{basehead}.patch",
            "base_commit": rc.commit(c.state, c.urls, r, base_info),
            "merge_base_commit": rc.commit(c.state, c.urls, r, fork_info),
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": [rc.commit(c.state, c.urls, r, i) for i in commits],
            "files": [rc.diff_entry(c.state, c.urls, r, head, f) for f in files],
        }
    return json_response(body)


STATUS_STATES = ("error", "failure", "pending", "success")


@router.post("/repos/{owner}/{repo}/statuses/{sha}")
def create_status(
    owner: str, repo: str, sha: str, c: CtxDep, payload: Annotated[dict[str, Any], Body()]
) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    actor = c.actor()
    full = gitrepo.resolve(c.state.repo_git_path(r), sha)
    if full is None:
        raise ApiError(422, f"No commit found for SHA: {sha}")
    state_value = str_field(payload, "state", "Status")
    if state_value not in STATUS_STATES:
        raise validation("Status", "state", "invalid")
    now = c.state.now()
    with c.state.lock:
        s = m.CommitStatus(
            id=c.state.new_id(),
            repo_id=r.id,
            sha=full,
            state=state_value,
            context=str_field(payload, "context", "Status", required=False) or "default",
            creator_id=actor.id,
            created_at=now,
            updated_at=now,
            description=str_field(payload, "description", "Status", required=False),
            target_url=str_field(payload, "target_url", "Status", required=False),
        )
        c.state.statuses[s.id] = s
        c.state.save()
        body = rc.status(c.state, c.urls, s)
        hook = rc.status(c.state, c.forge.urls, s)
    c.forge.emit(
        "status",
        r,
        actor,
        id=s.id,
        sha=full,
        name=c.state.repo_full_name(r),
        target_url=s.target_url,
        context=s.context,
        description=s.description,
        state=s.state,
        commit=_hook_commit(c, r, full),
        branches=[],
        created_at=hook["created_at"],
        updated_at=hook["updated_at"],
    )
    return json_response(body, status=201)


def _hook_commit(c: Ctx, r: m.Repo, sha: str) -> dict[str, Any]:
    info = gitrepo.commit_info(c.state.repo_git_path(r), sha)
    with c.state.lock:
        return rc.commit(c.state, c.forge.urls, r, info)
