"""Intake decisions: what is stored and answered for each kind of request (pure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.bot.intake import decide_intake, storable
from trunkline.bot.signature import sign
from trunkline.store.tables import DeliveryState

SECRET = b"s3cret"
PAYLOAD = {
    "action": "opened",
    "installation": {"id": 77},
    "repository": {"full_name": "acme/widgets"},
}


def _headers(body: bytes, **extra: str) -> dict[str, str]:
    headers = {
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-github-event": "issues",
        "x-hub-signature-256": sign(SECRET, body),
    }
    headers.update({key.replace("_", "-"): value for key, value in extra.items()})
    return headers


def _decide(body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return decide_intake(SECRET, headers, body, lambda: "generated")


def test_a_signed_delivery_is_accepted_with_its_routing_fields() -> None:
    body = json.dumps(PAYLOAD).encode()
    decision = _decide(body, _headers(body))
    assert decision.status == 202
    assert decision.delivery is not None
    assert decision.delivery.state is DeliveryState.PENDING
    assert decision.delivery.event == "issues"
    assert decision.delivery.action == "opened"
    assert decision.delivery.installation_id == 77
    assert decision.delivery.repo_full_name == "acme/widgets"
    assert decision.delivery.payload == body.decode()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-hub-signature": "sha1=0000"},
        {"x-hub-signature-256": "sha256=" + "0" * 64},
        {"x-hub-signature-256": sign(b"other", b"{}")},
    ],
)
def test_unsigned_or_badly_signed_requests_store_nothing(headers: dict[str, str]) -> None:
    body = b"{}"
    decision = _decide(body, {"x-github-delivery": "d", "x-github-event": "push", **headers})
    assert decision.status == 401
    assert decision.delivery is None


@pytest.mark.parametrize(
    ("body", "override", "reason"),
    [
        (b"{not json", {}, "malformed JSON"),
        (b"[1, 2]", {}, "not an object"),
        (b"\xff\xfe{}", {}, "not UTF-8"),
        (b"{}", {"x_github_event": ""}, "X-GitHub-Event"),
        (b"{}", {"x_github_delivery": ""}, "X-GitHub-Delivery"),
        (b"{}", {"x_github_delivery": "a b"}, "X-GitHub-Delivery"),
    ],
)
def test_signed_but_unusable_requests_are_stored_as_rejected(
    body: bytes, override: dict[str, str], reason: str
) -> None:
    decision = _decide(body, _headers(body, **override))
    assert decision.status == 400
    assert decision.delivery is not None
    assert decision.delivery.state is DeliveryState.REJECTED
    assert decision.delivery.error is not None
    assert reason in decision.delivery.error
    if "x_github_delivery" in override:
        assert decision.delivery.delivery_id == "unidentified-generated"


def test_routing_fields_of_the_wrong_type_are_dropped_not_fatal() -> None:
    body = json.dumps(
        {"action": 5, "installation": {"id": True}, "repository": {"full_name": ["x"]}}
    ).encode()
    decision = _decide(body, _headers(body))
    assert decision.status == 202
    assert decision.delivery is not None
    assert decision.delivery.action is None
    assert decision.delivery.installation_id is None
    assert decision.delivery.repo_full_name is None


def test_installation_ids_beyond_64_bits_are_dropped() -> None:
    body = json.dumps({"installation": {"id": 2**70}}).encode()
    decision = _decide(body, _headers(body))
    assert decision.delivery is not None
    assert decision.delivery.installation_id is None


@given(st.text())
def test_storable_text_has_no_nul_and_encodes_as_utf8(text: str) -> None:
    cleaned = storable(text, 50)
    assert "\x00" not in cleaned
    assert len(cleaned) <= 50
    cleaned.encode("utf-8")
