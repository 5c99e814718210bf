"""What every REST router shares: errors, the caller, repository access, pagination.

Pure helpers plus FastAPI dependencies (no I/O of their own). Errors are raised as
`ApiError` and rendered as GitHub does: `{"message", "documentation_url", "errors"?,
"status"}`. Lists are paginated with `page`/`per_page` (default 30, at most 100) and a
`Link` header with next/last/first/prev relations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from trunkline.forge import auth
from trunkline.forge import models as m
from trunkline.forge.render_core import Urls
from trunkline.forge.runtime import Forge
from trunkline.forge.state import ForgeState

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "documentation_url": DOCS}
        if self.errors:
            body["errors"] = self.errors
        body["status"] = str(self.status)
        return body


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation(resource: str, field: str, code: str = "missing_field", **extra: Any) -> ApiError:
    error = {"resource": resource, "field": field, "code": code, **extra}
    return ApiError(422, "Validation Failed", [error])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers=headers,
    )


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


@dataclass(frozen=True)
class Ctx:
    """One request's view: the forge, its URLs and the authenticated caller."""

    forge: Forge
    urls: Urls
    principal: auth.Principal | None
    request: Request

    @property
    def state(self) -> ForgeState:
        return self.forge.state

    def actor(self) -> m.User:
        """The user acting; 401 for anonymous callers, 403 for a bare App JWT."""
        if self.principal is None:
            raise ApiError(401, "Requires authentication")
        if self.principal.user is None:
            raise ApiError(403, "A JSON web token cannot be used to authenticate to this endpoint")
        return self.principal.user

    def repo(self, owner: str, name: str, need: m.Permission = m.Permission.READ) -> m.Repo:
        """The repository, or 404 (unknown or unreadable) / 403 (readable, not enough)."""
        with self.state.lock:
            repo = self.state.repo_by_name(owner, name)
            if repo is None:
                raise not_found()
            level = auth.repo_permission(self.state, self.principal, repo)
        if level < m.Permission.READ:
            raise not_found()
        if level < need:
            if self.principal is None:
                raise ApiError(401, "Requires authentication")
            raise ApiError(
                403,
                "Resource not accessible by integration"
                if self.is_app()
                else "Must have push access to repository",
            )
        return repo

    def level(self, repo: m.Repo) -> m.Permission:
        return auth.repo_permission(self.state, self.principal, repo)

    def is_app(self) -> bool:
        return self.principal is not None and self.principal.installation is not None


def ctx(request: Request) -> Ctx:
    """FastAPI dependency: the request context (authentication ran in the middleware)."""
    forge: Forge = request.app.state.forge
    base = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    principal: auth.Principal | None = getattr(request.state, "principal", None)
    return Ctx(forge=forge, urls=Urls.from_base(base), principal=principal, request=request)


def page_params(request: Request) -> tuple[int, int]:
    try:
        per_page = int(request.query_params.get("per_page", "30"))
        page = int(request.query_params.get("page", "1"))
    except ValueError as exc:
        raise ApiError(422, "Invalid pagination parameters") from exc
    return max(1, page), min(max(1, per_page), 100)


def paginate(ctx_: Ctx, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """One page of `items` and the `Link` header GitHub would send with it."""
    page, per_page = page_params(ctx_.request)
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    url = ctx_.request.url
    base = f"{ctx_.urls.web}{url.path}"
    params = dict(ctx_.request.query_params)

    def link(n: int, rel: str) -> str:
        query = urlencode({**params, "per_page": per_page, "page": n})
        return f'<{base}?{query}>; rel="{rel}"'

    links = []
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links += [link(1, "first"), link(page - 1, "prev")]
    return chunk, ({"Link": ", ".join(links)} if links else {})


def str_field(
    payload: dict[str, Any], key: str, resource: str, required: bool = True
) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise validation(resource, key)
        return None
    if not isinstance(value, str):
        raise validation(resource, key, "invalid", message=f"{key} must be a string")
    return value


def list_field(payload: Any, key: str, resource: str) -> list[str]:
    value = payload if isinstance(payload, list) else (payload or {}).get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise validation(resource, key, "invalid", message=f"{key} must be a list of strings")
    return list(value)
