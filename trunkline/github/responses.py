"""Map a refused GitHub response to a typed error, and read `Link` pagination. Pure; no I/O."""

from __future__ import annotations

import re
from typing import Any

from trunkline.errors import TrunklineError
from trunkline.github.errors import (
    AuthenticationError,
    ConflictError,
    GitHubUnavailableError,
    NonFastForwardError,
    NotFoundError,
    NotMergeableError,
    PermissionDeniedError,
    RefExistsError,
    StaleMergeShaError,
    ValidationFailedError,
)

_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def message_of(data: Any) -> str:
    """GitHub's `message`, plus the `errors` details of a 422 when present."""
    if not isinstance(data, dict):
        return ""
    parts = [str(data.get("message") or "")]
    for item in data.get("errors") or []:
        if isinstance(item, dict):
            parts.append(str(item.get("message") or item.get("code") or ""))
        else:
            parts.append(str(item))
    return "; ".join(part for part in parts if part)


def error_for(operation: str, status: int, message: str) -> TrunklineError:
    """The typed error for a non-2xx, non-rate-limit response to `operation`."""
    text = f"{operation}: HTTP {status}: {message or 'no message'}"
    lowered = message.lower()
    if status == 401:
        return AuthenticationError(text, status=status)
    if status == 403:
        return PermissionDeniedError(text, status=status)
    if status == 404:
        return NotFoundError(text, status=status)
    if status == 405:
        if operation == "merge_pull":
            return NotMergeableError(text, status=status)
        return ValidationFailedError(text, status=status)
    if status == 409:
        if operation == "merge_pull":
            return StaleMergeShaError(text, status=status)
        return ConflictError(text, status=status)
    if status == 422:
        if operation == "update_ref" and ("fast forward" in lowered or "fast-forward" in lowered):
            return NonFastForwardError(text, status=status)
        if operation == "create_ref" and "already exists" in lowered:
            return RefExistsError(text, status=status)
        if "does not exist" in lowered:
            return NotFoundError(text, status=status)
        return ValidationFailedError(text, status=status)
    if status >= 500:
        return GitHubUnavailableError(text)
    return ValidationFailedError(text, status=status)


def next_page(headers: dict[str, str]) -> str | None:
    """The `rel="next"` URL of a `Link` header, if any."""
    link = headers.get("link") or headers.get("Link")
    if not link:
        return None
    found = _NEXT_LINK.search(link)
    return found[1] if found else None
