"""Webhook signatures: GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the raw body, hex).

Pure; performs no I/O. Only `sha256=` signatures are accepted (the legacy `X-Hub-Signature`
SHA-1 header is ignored), compared in constant time with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-hub-signature-256"
PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub would send for `body`."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """True only if `header` is the `sha256=` HMAC of `body` under `secret`."""
    if not secret or header is None or not header.startswith(PREFIX):
        return False
    expected = sign(secret, body).encode("ascii")
    given = header.encode("latin-1", errors="replace")
    return hmac.compare_digest(expected, given)
