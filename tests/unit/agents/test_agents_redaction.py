"""Secret redaction (pure)."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from trunkline.agents.redaction import REDACTED, Redactor, redactor_for
from trunkline.settings import Settings

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


BASIC = base64.b64encode(b"x-access-token:opaque-installation-credential").decode()


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        # git's extraheader of a workspace push, as GIT_CURL_VERBOSE prints it
        (f"> Authorization: Basic {BASIC}", BASIC),
        (f"authorization: basic {BASIC}", BASIC),
        (f"http.extraHeader=Authorization: Basic {BASIC}", BASIC),
        (f"curl -H 'basic {BASIC}'", BASIC),
        ("Authorization: token opaque-value-123", "opaque-value-123"),
        # forge installation tokens are token_urlsafe: '-' and '_' in the body
        ("ghs_Ab-_cD3-eF4_gH5-iJ6_kL7-mN8_oP9-qR", "Ab-_cD3-eF4_gH5"),
        ("gho_-aaaaaaaaaaaaaaaaaaaaaaaaaaa_bbbbbbbb", "aaaaaaaa"),
        ("postgresql://bot:Pa55w0rd@db/trunkline", "Pa55w0rd"),
        ("connect to postgresql+psycopg://bot:p%40ss@db:5432/x failed", "p%40ss"),
        ("https://x-access-token:opaque-credential@github.com/acme/app.git", "opaque-credential"),
        # the last lines of a private key whose BEGIN line was cut off
        (
            "ZW5kIG9mIGtleSBib2R5IGxpbmUgb25lIGhlcmU=\nbGluZSB0d28gb2YgdGhlIGtleSBib2R5\n"
            "-----END RSA PRIVATE KEY-----\nexit status 1",
            "bGluZSB0d28",
        ),
    ],
)
def test_agents_redactor_hides_credentials_in_headers_urls_and_tokens(
    text: str, hidden: str
) -> None:
    redacted = Redactor.of([]).redact(text)
    assert hidden not in redacted
    assert REDACTED in redacted


def test_agents_redactor_keeps_the_user_and_host_of_a_url() -> None:
    assert Redactor.of([]).redact("postgresql://bot:Pa55w0rd@db/x") == (
        f"postgresql://bot:{REDACTED}@db/x"
    )
    assert "exit status 1" in Redactor.of([]).redact(
        "bGluZSB0d28gb2YgdGhlIGtleSBib2R5\n-----END PRIVATE KEY-----\nexit status 1"
    )


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=36, max_size=40))
def test_agents_redactor_hides_every_urlsafe_installation_token(body: str) -> None:
    token = f"ghs_{body}"
    redacted = Redactor.of([]).redact(f"push failed: {token}.")
    assert redacted == f"push failed: {REDACTED}."


@pytest.mark.parametrize(
    "text",
    [
        "basic functionality works",
        "Basic authentication is refused for this endpoint",
        "https://example.com:8080/path@v2",
        "mail maya@example.com about https://example.com/x",
        "ssh://git@github.com/acme/app.git",
        "-----END PUBLIC KEY-----",
    ],
)
def test_agents_redactor_leaves_prose_and_plain_urls(text: str) -> None:
    assert Redactor.of([]).redact(text) == text


def test_agents_redactor_for_takes_settings_env_and_database_url() -> None:
    settings = Settings(
        webhook_secret=SecretStr("webhook-secret-value"),
        database_url="postgresql://bot:db-secret-value@db/x",
    )
    environ = {
        "GH_TOKEN": "env-token-value",
        "DATABASE_URL": "postgresql://bot:env-db-value@db/x",
        "HOME": "/home/bot",
    }
    redactor = redactor_for(settings, environ, extra_secrets=("extra-value",))
    text = "webhook-secret-value db-secret-value env-token-value env-db-value extra-value /home/bot"
    assert redactor.redact(text) == " ".join([REDACTED] * 5 + ["/home/bot"])
    assert redactor_for(None, {}).secrets == ()


def test_agents_secret_named_numbers_and_flags_are_not_secrets() -> None:
    """`TOKEN_TTL=3600` must not blank every "3600" written anywhere (markers, verdicts)."""
    environ = {
        "TOKEN_TTL": "3600",
        "SECRET_ROTATION": "true",
        "API_TOKEN": "short",
        "GH_TOKEN": "long-enough-token",
    }
    redactor = redactor_for(None, environ)
    assert redactor.redact("ttl 3600 true short") == "ttl 3600 true short"
    assert redactor.redact("long-enough-token") == REDACTED
