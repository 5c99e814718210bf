"""Secret redaction for anything an agent run records or shows.

Pure; performs no I/O. A `Redactor` replaces every configured secret value (and its
presence in common encodings) and every token-looking string (GitHub `ghp_`/`ghs_`/...,
Anthropic `sk-ant-`, `Bearer ...`, PEM private keys) with a placeholder. It is applied to
tool arguments and results before they reach the timeline, logs or a comment.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

REDACTED = "[REDACTED]"

_TOKEN_PATTERNS = (
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9]{20,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)\b(?:token|authorization)\s+[A-Za-z0-9._~+/=\-]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL
    ),
)

_MIN_SECRET_LENGTH = 4


def _variants(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    return {
        secret,
        base64.b64encode(raw).decode("ascii").rstrip("="),
        raw.hex(),
        secret[::-1],
    }


@dataclass(frozen=True)
class Redactor:
    """Replaces `secrets` (exact values and simple encodings) and token-like strings."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, secrets: Iterable[str | None]) -> Redactor:
        values = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        expanded = {v for s in values for v in _variants(s) if len(v) >= _MIN_SECRET_LENGTH}
        return cls(tuple(sorted(expanded, key=len, reverse=True)))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text
