"""Per-command git credentials: the installation token as an HTTP header in one environment.

Pure; performs no I/O. Git reads `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`
as configuration for that process only (git >= 2.31), so the token is never written to
`.git/config`, a remote URL, a reflog or a log line, and never appears in a command line
(`/proc/<pid>/cmdline` is world-readable; the environment is not). The header is scoped to
the remote's scheme://host[:port]/ so a redirect elsewhere does not receive it.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

TOKEN_USERNAME = "x-access-token"  # noqa: S105 - a fixed user name, not a secret


def credential_env(remote_url: str, token: str | None) -> dict[str, str]:
    """Environment entries that authenticate git's HTTP requests to `remote_url` with `token`."""
    if not token:
        return {}
    parts = urlsplit(remote_url)
    if parts.scheme not in ("http", "https"):
        return {}
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    basic = base64.b64encode(f"{TOKEN_USERNAME}:{token}".encode()).decode("ascii")
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{netloc}/.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        # Never let a credential helper of the machine store or supply anything.
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": "",
    }
