"""Testing and operator endpoints under `/_forge/` (not part of GitHub's API).

Unauthenticated by design: the forge binds to loopback and is a test double. Endpoints:
health, idle (webhooks and CI drained), clock advance, injected API faults, webhook target,
webhook delivery log / redelivery / faults, refs rescan after file-path pushes, CI config.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from trunkline.forge import models as m
from trunkline.forge.api_support import ApiError, json_response, not_found
from trunkline.forge.runtime import Forge
from trunkline.forge.webhooks import Fault

router = APIRouter(prefix="/_forge")
Payload = Annotated[dict[str, Any], Body()]


def _forge(request: Request) -> Forge:
    forge: Forge = request.app.state.forge
    return forge


@router.get("/health")
def health(request: Request) -> Response:
    forge = _forge(request)
    return json_response({"ok": True, "now": forge.state.clock.now().isoformat()})


@router.get("/idle")
def idle(request: Request) -> Response:
    forge = _forge(request)
    return json_response({"webhooks_idle": forge.webhooks.idle(), "ci_busy": forge.ci.busy()})


@router.post("/clock")
def advance_clock(request: Request, payload: Payload) -> Response:
    forge = _forge(request)
    seconds = float(payload.get("advance_seconds", 0))
    if seconds < 0:
        raise ApiError(422, "advance_seconds must be >= 0")
    with forge.state.lock:
        forge.state.clock.advance(seconds)
        forge.state.save()
    return json_response({"now": forge.state.clock.now().isoformat()})


@router.post("/faults")
def set_faults(request: Request, payload: Payload) -> Response:
    """Make the next `count` API responses fail: kind `rate_limit` (429 or 403 primary),
    `secondary` (403 secondary rate limit), or `error` (a plain status such as 502)."""
    forge = _forge(request)
    kind = str(payload.get("kind", "rate_limit"))
    if kind not in ("rate_limit", "secondary", "error"):
        raise ApiError(422, "kind must be rate_limit, secondary or error")
    forge.faults = {
        "remaining": int(payload.get("count", 1)),
        "kind": kind,
        "status": int(payload.get("status", 429 if kind == "rate_limit" else 403)),
        "retry_after": payload.get("retry_after", 1),
    }
    return json_response(forge.faults)


@router.put("/webhook")
def set_webhook(request: Request, payload: Payload) -> Response:
    forge = _forge(request)
    with forge.state.lock:
        apps = [a for a in forge.state.apps.values() if a.public_key_pem]
        if not apps:
            raise ApiError(422, "no App is registered; seed one first")
        for app in apps:
            app.webhook_url = payload.get("url")
            app.webhook_secret = payload.get("secret", app.webhook_secret)
        forge.state.save()
    return json_response({"url": payload.get("url")})


@router.post("/webhook-faults")
def set_webhook_faults(request: Request, payload: Payload) -> Response:
    forge = _forge(request)
    try:
        mode = Fault(str(payload.get("mode", "none")))
    except ValueError as exc:
        raise ApiError(422, "mode must be none, drop, duplicate or reorder") from exc
    forge.webhooks.set_fault(mode, int(payload.get("count", 1)))
    return json_response({"mode": mode.value, "count": int(payload.get("count", 1))})


@router.get("/deliveries")
def list_deliveries(request: Request) -> Response:
    forge = _forge(request)
    return json_response([d.summary() for d in forge.webhooks.deliveries()])


@router.get("/deliveries/{delivery_id}")
def get_delivery(delivery_id: int, request: Request) -> Response:
    forge = _forge(request)
    delivery = forge.webhooks.get(delivery_id)
    if delivery is None:
        raise not_found()
    body = delivery.summary()
    body["payload"] = json.loads(delivery.body)
    body["body_base64"] = base64.b64encode(delivery.body).decode()
    return json_response(body)


@router.post("/deliveries/{delivery_id}/redeliver")
def redeliver(delivery_id: int, request: Request) -> Response:
    forge = _forge(request)
    copy = forge.webhooks.redeliver(delivery_id)
    if copy is None:
        raise not_found()
    return json_response(copy.summary(), status=202)


def _repo(forge: Forge, owner: str, name: str) -> m.Repo:
    with forge.state.lock:
        repo = forge.state.repo_by_name(owner, name)
    if repo is None:
        raise not_found()
    return repo


@router.post("/repos/{owner}/{repo}/rescan")
def rescan(owner: str, repo: str, request: Request, payload: Payload) -> Response:
    """After a push by file path: take the new refs into account as if pushed over HTTP."""
    forge = _forge(request)
    r = _repo(forge, owner, repo)
    with forge.state.lock:
        pusher = (
            forge.state.user_by_login(str(payload.get("pusher", "")))
            or forge.state.users[r.owner_id]
        )
    with forge.git_lock(r):
        changes = forge.reconcile_refs(r, pusher)
    return json_response({"changes": [{"ref": a, "before": b, "after": c} for a, b, c in changes]})


@router.put("/repos/{owner}/{repo}/ci")
def set_ci(owner: str, repo: str, request: Request, payload: Payload) -> Response:
    forge = _forge(request)
    r = _repo(forge, owner, repo)
    try:
        fields = {k: v for k, v in payload.items() if k != "enabled"}
        config = m.CiConfig(**fields) if payload.get("enabled", True) else None
    except TypeError as exc:
        raise ApiError(422, f"bad CI configuration: {exc}") from exc
    with forge.state.lock:
        r.ci = None if config is None else {k: v for k, v in vars(config).items()}
        forge.state.save()
    return json_response({"ci": r.ci})
