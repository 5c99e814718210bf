"""Smart HTTP git hosting: `/{owner}/{repo}.git/...` served by `git http-backend` (CGI).

Performs I/O (a subprocess per request). Callers authenticate with HTTP basic auth whose
password is an installation or personal token (any user name, e.g. `x-access-token`).
Public repositories can be fetched anonymously. A push needs write access; protected
branches are enforced by the repository's pre-receive hook (fast-forward only, and only
when the forge says the pusher may update them, see `gitrepo.PRE_RECEIVE_HOOK`). After a
push the forge reconciles refs: webhooks, pull request updates, merges and CI follow.
"""

from __future__ import annotations

import base64
import os
import subprocess

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from trunkline.forge import auth
from trunkline.forge import models as m
from trunkline.forge.runtime import Forge

router = APIRouter()

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="trunkline forge"'}


def _principal(forge: Forge, request: Request) -> auth.Principal | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            _, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise auth.AuthError("Bad credentials") from exc
        with forge.state.lock:
            return auth.principal_for_token(forge.state, password, forge.state.now())
    if scheme.lower() in ("token", "bearer") and value:
        with forge.state.lock:
            return auth.principal_for_token(forge.state, value.strip(), forge.state.now())
    return None


@router.api_route("/{owner}/{repo}.git/{rest:path}", methods=["GET", "POST"])
async def git_http(owner: str, repo: str, rest: str, request: Request) -> Response:
    forge: Forge = request.app.state.forge
    try:
        principal = _principal(forge, request)
    except auth.AuthError:
        return Response("Bad credentials\n", status_code=401, headers=_CHALLENGE)
    with forge.state.lock:
        r = forge.state.repo_by_name(owner, repo)
        level = auth.repo_permission(forge.state, principal, r) if r is not None else None
    if r is None or level is None or level < m.Permission.READ:
        if principal is None:
            return Response("Authentication required\n", status_code=401, headers=_CHALLENGE)
        return Response("Repository not found\n", status_code=404)
    pushing = (
        rest == "git-receive-pack" or request.query_params.get("service") == "git-receive-pack"
    )
    if pushing and level < m.Permission.WRITE:
        if principal is None:
            return Response("Authentication required\n", status_code=401, headers=_CHALLENGE)
        return Response("Write access to the repository is required\n", status_code=403)
    body = await request.body()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(forge.state.data_dir)),
        "GIT_PROJECT_ROOT": str(forge.state.git_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{forge.state.users[r.owner_id].login}/{r.name}.git/{rest}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": principal.user.login if principal and principal.user else "anonymous",
        "REMOTE_ADDR": request.client.host if request.client else "127.0.0.1",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    for header, var in (
        ("git-protocol", "GIT_PROTOCOL"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
    ):
        if header in request.headers:
            env[var] = request.headers[header]
    if pushing:
        with forge.state.lock:
            env["FORGE_PROTECTED"] = (
                " ".join(f"refs/heads/{b}" for b in r.protected_branches) or "-"
            )
            env["FORGE_MAY_PUSH_PROTECTED"] = (
                "1" if auth.may_update_protected(forge.state, principal, r) else "0"
            )
    if pushing and rest == "git-receive-pack":
        return await run_in_threadpool(_push, forge, r, principal, env, body)
    return await run_in_threadpool(_cgi, env, body)


def _push(
    forge: Forge, r: m.Repo, principal: auth.Principal | None, env: dict[str, str], body: bytes
) -> Response:
    with forge.git_lock(r):
        response = _cgi(env, body)
        pusher = principal.user if principal is not None and principal.user else None
        if pusher is not None:
            forge.reconcile_refs(r, pusher)
    return response


def _cgi(env: dict[str, str], body: bytes) -> Response:
    done = subprocess.run(
        ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
    )
    raw = done.stdout
    split = raw.find(b"\r\n\r\n")
    sep_len = 4
    if split < 0:
        split, sep_len = raw.find(b"\n\n"), 2
    if split < 0:
        return Response(done.stderr or b"git http-backend failed\n", status_code=500)
    head, content = raw[:split].decode(errors="replace"), raw[split + sep_len :]
    status = 200
    headers: dict[str, str] = {}
    for line in head.splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    media = headers.pop("Content-Type", None)
    return Response(content=content, status_code=status, headers=headers, media_type=media)
