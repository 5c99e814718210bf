"""GitHub App authentication: App JWT -> installation access token, cached and refreshed.

Performs I/O (one HTTPS POST per refresh, through an `httpx.Client` the caller owns). Time
comes from the injected `Clock`, so the JWT's `iat`/`exp` and the refresh decision follow
the same clock as the server in tests (the forge's movable clock). The token is held in
memory only and never logged; `TokenSource` is what the adapter depends on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx
import jwt

from trunkline.clock import Clock
from trunkline.github.errors import AuthenticationError, GitHubUnavailableError

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)


class TokenSource(Protocol):
    def token(self) -> str:
        """A token valid for at least the refresh margin."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token (the server said 401); the next `token()` mints anew."""
        ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed token (a personal access token, or tests). `invalidate` cannot help it."""

    value: str

    def token(self) -> str:
        return self.value

    def invalidate(self) -> None:
        return None


@dataclass(frozen=True)
class _Cached:
    token: str
    expires_at: datetime


class InstallationTokenProvider:
    """Mints installation tokens for one installation of one App; thread-safe."""

    def __init__(
        self,
        *,
        base_url: str,
        app_id: str,
        private_key: str,
        installation_id: int,
        clock: Clock,
        http: httpx.Client,
        refresh_margin: timedelta = REFRESH_MARGIN,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/app/installations/{installation_id}/access_tokens"
        self._app_id = app_id
        self._private_key = private_key
        self._installation_id = installation_id
        self._clock = clock
        self._http = http
        self._margin = refresh_margin
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self.refresh_count = 0

    def app_jwt(self) -> str:
        """The App's JWT: issued a minute in the past (clock drift), valid for 9 minutes."""
        now = int(self._clock.now().timestamp())
        claims = {"iat": now - 60, "exp": now + 540, "iss": self._app_id}
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    def token(self) -> str:
        with self._lock:
            cached = self._cached
            if cached is None or cached.expires_at - self._clock.now() < self._margin:
                cached = self._mint()
                self._cached = cached
            return cached.token

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _mint(self) -> _Cached:
        headers = {
            "Authorization": f"Bearer {self.app_jwt()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        try:
            response = self._http.post(self._url, headers=headers)
        except httpx.HTTPError as error:
            raise GitHubUnavailableError(f"minting an installation token failed: {error}") from None
        if response.status_code >= 500:
            raise GitHubUnavailableError(
                f"minting an installation token failed: HTTP {response.status_code}"
            )
        if response.status_code != 201:
            raise AuthenticationError(
                f"GitHub refused an installation token for installation {self._installation_id}"
                f" (HTTP {response.status_code}); check the App id, key and installation",
                status=response.status_code,
            )
        body = response.json()
        expires = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
        self.refresh_count += 1
        log.info(
            "minted installation token",
            extra={"installation_id": self._installation_id, "expires_at": expires.isoformat()},
        )
        return _Cached(str(body["token"]), expires)
