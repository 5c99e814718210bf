"""Test support for the bot: signed webhook requests, as GitHub sends them.

Pure; performs no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from trunkline.bot.signature import sign


def signed_headers(
    secret: str, body: bytes, *, event: str, delivery_id: str, signature: str | None = None
) -> dict[str, str]:
    """The headers of a GitHub delivery of `body` (override `signature` to forge one)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": sign(secret.encode(), body) if signature is None else signature,
    }


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()
