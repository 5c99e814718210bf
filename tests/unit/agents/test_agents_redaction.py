"""Secret redaction (pure)."""

from __future__ import annotations

import base64

import pytest

from trunkline.agents.redaction import REDACTED, Redactor

SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    "text",
    [
        f"value={SECRET}",
        base64.b64encode(SECRET.encode()).decode(),
        SECRET.encode().hex(),
        "ghp_" + "a" * 36,
        "ghs_" + "B1" * 20,
        "github_pat_" + "x" * 40,
        "sk-ant-api03-" + "z" * 40,
        "Authorization: Bearer abcdefghijklmnop.qrs",
        "token " + "t" * 40,
        "AKIAABCDEFGHIJKLMNOP",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    ],
)
def test_agents_redactor_hides_secrets_and_tokens(text: str) -> None:
    redacted = Redactor.of([SECRET]).redact(text)
    assert REDACTED in redacted
    assert SECRET not in redacted
    for fragment in ("aaaaaaaaaaaa", "B1B1B1B1", "zzzzzzzz", "abcdefghijklmnop", "MIIE"):
        assert fragment not in redacted


@pytest.mark.parametrize("text", ["ordinary text", "ghp_short", "the bearer of news", "sk-1"])
def test_agents_redactor_leaves_ordinary_text(text: str) -> None:
    assert Redactor.of([SECRET]).redact(text) == text


def test_agents_redactor_ignores_empty_and_tiny_secrets() -> None:
    redactor = Redactor.of([None, "", "ab"])
    assert redactor.secrets == ()
    assert redactor.redact("ab ab") == "ab ab"
