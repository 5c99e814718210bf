"""REST routes for git references (get, list, create, update, delete).

An update with `force=false` that is not a fast-forward is refused with 422 "Update is not
a fast forward"; a protected branch accepts only fast-forwards by the App (or an admin when
the repository allows it). Every change goes through `Forge.reconcile_refs`, like a push.
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
)

router = APIRouter()
CtxDep = Annotated[Ctx, Depends(ctx)]
Payload = Annotated[dict[str, Any], Body()]


def _render(c: Ctx, r: m.Repo, ref: str, sha: str) -> dict[str, Any]:
    with c.state.lock:
        return rc.git_ref(c.state, c.urls, r, ref, sha)


@router.get("/repos/{owner}/{repo}/git/ref/{ref:path}")
def get_ref(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    full = f"refs/{ref}"
    refs = gitrepo.list_refs(c.state.repo_git_path(r))
    if full not in refs:
        raise not_found()
    return json_response(_render(c, r, full, refs[full]))


@router.get("/repos/{owner}/{repo}/git/matching-refs/{ref:path}")
def list_matching_refs(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo)
    prefix = f"refs/{ref}"
    refs = gitrepo.list_refs(c.state.repo_git_path(r))
    items = [_render(c, r, k, v) for k, v in sorted(refs.items()) if k.startswith(prefix)]
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


def _check_protected(c: Ctx, r: m.Repo, ref: str) -> None:
    if auth.is_protected(r, ref) and not auth.may_update_protected(c.state, c.principal, r):
        raise ApiError(422, f"Protected branch update failed for {ref}: only the App may update it")


@router.post("/repos/{owner}/{repo}/git/refs")
def create_ref(owner: str, repo: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    actor = c.actor()
    ref = str_field(payload, "ref", "Reference") or ""
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes")
    bare = c.state.repo_git_path(r)
    sha = gitrepo.resolve(bare, str_field(payload, "sha", "Reference") or "")
    if sha is None:
        raise ApiError(422, "Object does not exist")
    _check_protected(c, r, ref)
    with c.forge.git_lock(r):
        if ref in gitrepo.list_refs(bare):
            raise ApiError(422, "Reference already exists")
        gitrepo.update_ref(bare, ref, sha, gitrepo.ZERO_SHA)
        c.forge.reconcile_refs(r, actor)
    return json_response(_render(c, r, ref, sha), status=201)


@router.patch("/repos/{owner}/{repo}/git/refs/{ref:path}")
def update_ref(owner: str, repo: str, ref: str, c: CtxDep, payload: Payload) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    actor = c.actor()
    full = f"refs/{ref}"
    bare = c.state.repo_git_path(r)
    sha = gitrepo.resolve(bare, str_field(payload, "sha", "Reference") or "")
    if sha is None:
        raise ApiError(422, "Object does not exist")
    force = bool(payload.get("force", False))
    _check_protected(c, r, full)
    with c.forge.git_lock(r):
        current = gitrepo.list_refs(bare).get(full)
        if current is None:
            raise ApiError(422, "Reference does not exist")
        fast_forward = gitrepo.is_ancestor(bare, current, sha)
        if not fast_forward and (not force or auth.is_protected(r, full)):
            raise ApiError(422, "Update is not a fast forward")
        gitrepo.update_ref(bare, full, sha, current)
        c.forge.reconcile_refs(r, actor)
    return json_response(_render(c, r, full, sha))


@router.delete("/repos/{owner}/{repo}/git/refs/{ref:path}")
def delete_ref(owner: str, repo: str, ref: str, c: CtxDep) -> Response:
    r = c.repo(owner, repo, m.Permission.WRITE)
    actor = c.actor()
    full = f"refs/{ref}"
    if auth.is_protected(r, full) or full == f"refs/heads/{r.default_branch}":
        raise ApiError(422, f"Cannot delete protected branch {full}")
    bare = c.state.repo_git_path(r)
    with c.forge.git_lock(r):
        if full not in gitrepo.list_refs(bare):
            raise ApiError(422, "Reference does not exist")
        gitrepo.delete_ref(bare, full)
        c.forge.reconcile_refs(r, actor)
    return Response(status_code=204)
