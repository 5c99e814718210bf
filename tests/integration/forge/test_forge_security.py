"""Security: forged or stale App JWTs, expired tokens, other installations, signatures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from trunkline.forge.auth import generate_key_pair
from trunkline.forge.seed import SeedSpec
from trunkline.forge.testing import ForgeHandle, WebhookReceiver, running_forge
from trunkline.forge.webhooks import sign

SPEC = {
    "users": [{"login": "alice"}, {"login": "erin"}],
    "app": {"owner": "alice", "webhook_secret": "shared-secret"},
    "repositories": [
        {"owner": "alice", "name": "demo", "private": True},
        {"owner": "erin", "name": "other", "private": True},
    ],
    "installation": {"account": "alice"},
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def forge(receiver: WebhookReceiver) -> Iterator[ForgeHandle]:
    spec = SeedSpec.model_validate(
        {**SPEC, "app": {**SPEC["app"], "webhook_url": receiver.url}}  # type: ignore[dict-item]
    )
    with running_forge(spec) as handle:
        yield handle


def mint(forge: ForgeHandle, token: str, installation: int | None = None) -> httpx.Response:
    inst = installation or forge.installation_id
    return httpx.post(
        f"{forge.api_url}/app/installations/{inst}/access_tokens",
        headers={"Authorization": f"Bearer {token}"},
    )


def claims(forge: ForgeHandle, iat_offset: int = -30, lifetime: int = 540) -> dict[str, object]:
    now = int(time.time())
    return {"iat": now + iat_offset, "exp": now + iat_offset + lifetime, "iss": str(forge.app_id)}


def test_a_jwt_signed_by_another_key_is_refused(forge: ForgeHandle) -> None:
    other_key, _ = generate_key_pair()
    forged = jwt.encode(claims(forge), other_key, algorithm="RS256")
    response = mint(forge, forged)
    assert response.status_code == 401
    assert mint(forge, forge.app_jwt()).status_code == 201


@pytest.mark.parametrize(
    ("iat_offset", "lifetime"),
    [(-30, 3600), (-1200, 600)],
    ids=["longer-than-ten-minutes", "expired"],
)
def test_jwts_outside_their_lifetime_are_refused(
    forge: ForgeHandle, iat_offset: int, lifetime: int
) -> None:
    token = jwt.encode(
        claims(forge, iat_offset, lifetime), forge.private_key_path.read_text(), algorithm="RS256"
    )
    assert mint(forge, token).status_code == 401


def test_an_unsigned_jwt_is_refused(forge: ForgeHandle) -> None:
    token = jwt.encode(claims(forge), "", algorithm="none")
    assert mint(forge, token).status_code == 401


def test_installation_tokens_expire_after_an_hour_on_the_forge_clock(forge: ForgeHandle) -> None:
    token = forge.installation_token()
    url = f"{forge.api_url}/repos/alice/demo"
    assert httpx.get(url, headers={"Authorization": f"token {token}"}).status_code == 200
    forge.advance_clock(3601)
    expired = httpx.get(url, headers={"Authorization": f"token {token}"})
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"


def test_a_token_reaches_only_its_installations_repositories(forge: ForgeHandle) -> None:
    token = forge.installation_token()
    headers = {"Authorization": f"token {token}"}
    assert httpx.get(f"{forge.api_url}/repos/erin/other", headers=headers).status_code == 404
    created = httpx.post(
        f"{forge.api_url}/repos/erin/other/issues", headers=headers, json={"title": "x"}
    )
    assert created.status_code == 404
    assert mint(forge, forge.app_jwt(), installation=999_999).status_code == 404


def test_webhook_signatures_verify_only_with_the_shared_secret(
    forge: ForgeHandle, receiver: WebhookReceiver
) -> None:
    token = forge.installation_token()
    httpx.post(
        f"{forge.api_url}/repos/alice/demo/issues",
        headers={"Authorization": f"token {token}"},
        json={"title": "signed"},
    ).raise_for_status()
    forge.wait_idle()
    hook = next(h for h in receiver.snapshot() if h.event == "issues")
    assert hook.signature == sign("shared-secret", hook.body)
    assert hook.signature != sign("wrong-secret", hook.body)
    assert hook.signature != sign("shared-secret", hook.body + b" ")


def test_the_app_mints_a_fresh_token_after_the_clock_moved(forge: ForgeHandle) -> None:
    forge.advance_clock(7200)
    fresh = forge.installation_token()
    response = httpx.get(
        f"{forge.api_url}/repos/alice/demo", headers={"Authorization": f"token {fresh}"}
    )
    assert response.status_code == 200
