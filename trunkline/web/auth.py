"""Who may read the dashboard: a bearer token or basic-auth password, compared in constant time.

Pure; performs no I/O (`token_guard` wraps `authorized` as a FastAPI dependency). With no
token configured every request is allowed (the dashboard then binds to loopback only;
`trunkline dashboard` refuses a public address without a token). Basic auth accepts any user
name with the token as password, so a browser can log in.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable

from fastapi import HTTPException, Request

from trunkline.settings import Settings

CHALLENGE = 'Basic realm="trunkline", charset="UTF-8"'


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def authorized(authorization: str | None, token: str | None) -> bool:
    """Whether an `Authorization` header value grants access when the token is `token`."""
    if not token:
        return True
    if not authorization:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return _same(credentials, token)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, separator, password = decoded.partition(":")
        return bool(separator) and _same(password, token)
    return False


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_guard(settings: Settings) -> Callable[[Request], None]:
    """A dependency that answers 401 unless the request carries the dashboard token."""
    token = settings.dashboard_token.get_secret_value() if settings.dashboard_token else None

    def guard(request: Request) -> None:
        if not authorized(request.headers.get("authorization"), token):
            raise HTTPException(
                status_code=401,
                detail="authentication required",
                headers={"WWW-Authenticate": CHALLENGE},
            )

    return guard
