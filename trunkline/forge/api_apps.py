"""REST routes for the App, its installations, users and the rate limit.

Handlers validate and render; token minting lives in `trunkline.forge.auth`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from trunkline.forge import auth
from trunkline.forge import models as m
from trunkline.forge import render_core as rr
from trunkline.forge.api_support import ApiError, Ctx, ctx, json_response, not_found, paginate

router = APIRouter()
CtxDep = Annotated[Ctx, Depends(ctx)]


def _app_caller(c: Ctx) -> m.App:
    p = c.principal
    if p is None or p.app is None or p.installation is not None:
        raise ApiError(401, "A JSON web token could not be decoded")
    return p.app


@router.get("/app")
def get_app(c: CtxDep) -> Response:
    app = _app_caller(c)
    with c.state.lock:
        return json_response(rr.app(c.state, c.urls, app))


@router.get("/app/installations")
def list_installations(c: CtxDep) -> Response:
    app = _app_caller(c)
    with c.state.lock:
        items = [
            rr.installation(c.state, c.urls, i)
            for i in sorted(c.state.installations.values(), key=lambda x: x.id)
            if i.app_id == app.id
        ]
    page, headers = paginate(c, items)
    return json_response(page, headers=headers)


@router.get("/app/installations/{installation_id}")
def get_installation(installation_id: int, c: CtxDep) -> Response:
    app = _app_caller(c)
    with c.state.lock:
        inst = c.state.installations.get(installation_id)
        if inst is None or inst.app_id != app.id:
            raise not_found()
        return json_response(rr.installation(c.state, c.urls, inst))


@router.post("/app/installations/{installation_id}/access_tokens")
def create_installation_token(
    installation_id: int, c: CtxDep, payload: Annotated[Any, Body()] = None
) -> Response:
    app = _app_caller(c)
    with c.state.lock:
        inst = c.state.installations.get(installation_id)
        if inst is None or inst.app_id != app.id:
            raise not_found()
        token = auth.issue_installation_token(c.state, inst, c.state.now())
        c.state.save()
        repos = [c.state.repos[x] for x in inst.repository_ids if x in c.state.repos]
        body = {
            "token": token.token,
            "expires_at": rr.iso(token.expires_at),
            "permissions": dict(rr.APP_PERMISSIONS),
            "repository_selection": "selected",
            "repositories": [rr.repo(c.state, c.urls, r) for r in repos],
        }
    return json_response(body, status=201)


@router.get("/repos/{owner}/{repo}/installation")
def get_repo_installation(owner: str, repo: str, c: CtxDep) -> Response:
    app = _app_caller(c)
    with c.state.lock:
        r = c.state.repo_by_name(owner, repo)
        inst = c.state.installation_for_repo(r) if r is not None else None
        if inst is None or inst.app_id != app.id:
            raise not_found()
        return json_response(rr.installation(c.state, c.urls, inst))


@router.get("/installation/repositories")
def list_installation_repos(c: CtxDep) -> Response:
    if c.principal is None or c.principal.installation is None:
        raise ApiError(403, "This endpoint requires an installation access token")
    inst = c.principal.installation
    with c.state.lock:
        repos = [rr.repo(c.state, c.urls, c.state.repos[x]) for x in inst.repository_ids]
    page, headers = paginate(c, repos)
    body = {"total_count": len(repos), "repository_selection": "selected", "repositories": page}
    return json_response(body, headers=headers)


@router.get("/user")
def get_authenticated_user(c: CtxDep) -> Response:
    if c.principal is not None and c.principal.installation is not None:
        raise ApiError(403, "Resource not accessible by integration")
    user = c.actor()
    with c.state.lock:
        return json_response(rr.full_user(c.state, c.urls, user))


@router.get("/users/{login}")
def get_user(login: str, c: CtxDep) -> Response:
    with c.state.lock:
        user = c.state.user_by_login(login)
        if user is None:
            raise not_found()
        return json_response(rr.full_user(c.state, c.urls, user))


@router.get("/rate_limit")
def get_rate_limit(c: CtxDep) -> Response:
    headers = c.request.state.rate_headers
    core = {
        "limit": int(headers["x-ratelimit-limit"]),
        "remaining": int(headers["x-ratelimit-remaining"]),
        "reset": int(headers["x-ratelimit-reset"]),
        "used": int(headers["x-ratelimit-used"]),
    }
    return json_response({"resources": {"core": core, "search": dict(core)}, "rate": core})
