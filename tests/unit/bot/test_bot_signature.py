"""Webhook signature verification, including GitHub's documented test vector."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.bot.signature import sign, verify_signature

GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_documented_test_vector_passes() -> None:
    assert sign(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE
    assert verify_signature(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        pytest.param(GITHUB_SECRET, GITHUB_BODY, None, id="missing"),
        pytest.param(GITHUB_SECRET, GITHUB_BODY, "", id="empty"),
        pytest.param(GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE, id="mutated-body"),
        pytest.param(b"another secret", GITHUB_BODY, GITHUB_SIGNATURE, id="wrong-secret"),
        pytest.param(
            GITHUB_SECRET, GITHUB_BODY, "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59", id="sha1"
        ),
        pytest.param(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE.upper(), id="upper-case"),
        pytest.param(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE[:-1], id="truncated"),
        pytest.param(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE + "0", id="extended"),
        pytest.param(GITHUB_SECRET, GITHUB_BODY, "sha256=é" + "0" * 63, id="non-ascii"),
        pytest.param(b"", GITHUB_BODY, sign(b"", GITHUB_BODY), id="empty-secret"),
    ],
)
def test_bad_signatures_fail(secret: bytes, body: bytes, header: str | None) -> None:
    assert not verify_signature(secret, body, header)


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512))
def test_a_signature_verifies_only_its_own_body(secret: bytes, body: bytes) -> None:
    header = sign(secret, body)
    assert verify_signature(secret, body, header)
    assert not verify_signature(secret, body + b"x", header)
