"""The forge's ASGI application factory and its HTTP middleware.

Performs I/O only through the routers and the `Forge` runtime. `create_app(forge)` mounts
the REST routers under `/api/v3` (GitHub Enterprise style, which is what PyGithub's
`base_url` expects), git smart HTTP at `/{owner}/{repo}.git/...`, and the testing
endpoints at `/_forge/`. The middleware authenticates the caller (401 "Bad
credentials" for a bad, forged or expired token), applies injected faults, and adds GitHub's
rate-limit headers (5000 requests per hour per token, 60 for anonymous callers).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from trunkline.forge import (
    api_admin,
    api_apps,
    api_checks,
    api_git,
    api_issues,
    api_pulls,
    api_repos,
    auth,
    githttp,
)
from trunkline.forge.api_support import DOCS, ApiError, error_response
from trunkline.forge.runtime import Forge

API_PREFIX = "/api/v3"
AUTHENTICATED_LIMIT = 5000
ANONYMOUS_LIMIT = 60
WINDOW_SECONDS = 3600


@dataclass
class RateLimiter:
    """Counts requests per caller in fixed one-hour windows on the forge clock."""

    windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, key: str, limit: int, now: float) -> dict[str, str]:
        with self.lock:
            reset, used = self.windows.get(key, (now + WINDOW_SECONDS, 0))
            if now >= reset:
                reset, used = now + WINDOW_SECONDS, 0
            used += 1
            self.windows[key] = (reset, used)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(0, limit - used)),
            "x-ratelimit-reset": str(int(reset)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
        }


def create_app(forge: Forge) -> FastAPI:
    app = FastAPI(title="trunkline forge", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.forge = forge
    limiter = RateLimiter()
    for module in (api_apps, api_checks, api_git, api_pulls, api_issues, api_repos):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(api_admin.router)
    app.include_router(githttp.router)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(
            e.get("type") in ("json_invalid", "missing") and "body" in e.get("loc", ())
            for e in errors
        ):
            return JSONResponse(
                {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"},
                status_code=400,
            )
        return JSONResponse(
            {
                "message": "Validation Failed",
                "errors": [
                    {"code": "invalid", "field": ".".join(map(str, e["loc"]))} for e in errors
                ],
                "documentation_url": DOCS,
                "status": "422",
            },
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = "Not Found" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse(
            {"message": message, "documentation_url": DOCS, "status": str(exc.status_code)},
            status_code=exc.status_code,
        )

    @app.middleware("http")
    async def github_edge(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith(API_PREFIX):
            return await call_next(request)
        now = forge.state.now()
        header = request.headers.get("authorization")
        try:
            with forge.state.lock:
                principal = auth.authenticate(forge.state, header, now, time.time())
        except auth.AuthError as exc:
            message = "Bad credentials" if not str(exc).startswith(("'", "A JSON")) else str(exc)
            return JSONResponse(
                {"message": message, "documentation_url": DOCS, "status": "401"},
                status_code=401,
            )
        request.state.principal = principal
        key = hashlib.sha256((header or f"ip:{request.client}").encode()).hexdigest()
        limit = AUTHENTICATED_LIMIT if principal is not None else ANONYMOUS_LIMIT
        rate = limiter.hit(key, limit, now)
        request.state.rate_headers = rate
        fault = _take_fault(forge)
        if fault is not None:
            fault.headers = {**rate, **fault.headers}
            return error_response(fault)
        if int(rate["x-ratelimit-remaining"]) <= 0 and int(rate["x-ratelimit-used"]) > limit:
            response: Response = error_response(
                ApiError(403, "API rate limit exceeded", headers=rate)
            )
            return response
        response = await call_next(request)
        for name, value in rate.items():
            response.headers[name] = value
        response.headers.setdefault("x-github-media-type", "github.v3; format=json")
        response.headers.setdefault(
            "x-github-request-id",
            hashlib.md5(  # noqa: S324
                f"{now}{request.url}".encode()
            )
            .hexdigest()[:16]
            .upper(),
        )
        return response

    return app


_FAULT_LOCK = threading.Lock()


def _take_fault(forge: Forge) -> ApiError | None:
    """Consume one injected fault, if any are armed (see `POST /_forge/faults`)."""
    with _FAULT_LOCK:
        faults = forge.faults
        if int(faults.get("remaining", 0)) <= 0:
            return None
        faults["remaining"] = int(faults["remaining"]) - 1
    status = int(faults.get("status", 429))
    retry_after = str(faults.get("retry_after", 1))
    kind = faults.get("kind", "rate_limit")
    if kind == "secondary":
        return ApiError(
            status,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            "try again. If you reach out to GitHub Support for help, please include the "
            "request ID.",
            headers={"retry-after": retry_after},
        )
    if kind == "rate_limit":
        headers = {"retry-after": retry_after, "x-ratelimit-remaining": "0"}
        return ApiError(status, "API rate limit exceeded for installation.", headers=headers)
    return ApiError(status, "Server Error")
