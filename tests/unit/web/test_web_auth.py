"""Dashboard access: bearer token or basic-auth password, nothing else."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.web.auth import authorized, is_loopback

TOKEN = "s3cret-token"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer   {TOKEN}  ", True),
        (basic("anyone", TOKEN), True),
        (basic("", TOKEN), True),
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer wrong", False),
        (f"Bearer {TOKEN}x", False),
        (f"Token {TOKEN}", False),
        (basic(TOKEN, "wrong"), False),
        ("Basic !!!notbase64", False),
        ("Basic " + base64.b64encode(TOKEN.encode()).decode(), False),
    ],
)
def test_with_a_token(header: str | None, allowed: bool) -> None:
    assert authorized(header, TOKEN) is allowed


def test_without_a_token_everything_is_allowed() -> None:
    assert authorized(None, None)
    assert authorized("Bearer whatever", "")


@given(st.text(min_size=1, max_size=40))
def test_only_the_exact_token_passes(guess: str) -> None:
    assert authorized(f"Bearer {guess}", TOKEN) is (guess.strip() == TOKEN)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
