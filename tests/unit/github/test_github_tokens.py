"""Installation tokens: cached, refreshed with at least five minutes left, errors typed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trunkline.agents.redaction import Redactor
from trunkline.clock import FakeClock
from trunkline.errors import ConfigurationError
from trunkline.github.errors import AuthenticationError, GitHubUnavailableError
from trunkline.github.installations import InstallationClients
from trunkline.github.redacting import RedactingGitHub
from trunkline.github.tokens import InstallationTokenProvider
from trunkline.settings import load_settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()


def provider(clock: FakeClock, handler: httpx.MockTransport) -> InstallationTokenProvider:
    return InstallationTokenProvider(
        base_url="https://ghe.example.com/api/v3/",
        app_id="42",
        private_key=PEM,
        installation_id=7,
        clock=clock,
        http=httpx.Client(transport=handler),
    )


def test_tokens_are_cached_and_refreshed_with_five_minutes_left() -> None:
    clock = FakeClock()
    minted: list[dict[str, object]] = []

    def mint(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v3/app/installations/7/access_tokens"
        claims = jwt.decode(
            request.headers["authorization"].removeprefix("Bearer "),
            KEY.public_key(),
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False},
        )
        minted.append(claims)
        expires = (clock.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        return httpx.Response(201, json={"token": f"ghs_{len(minted)}", "expires_at": expires})

    tokens = provider(clock, httpx.MockTransport(mint))
    assert tokens.token() == "ghs_1"
    now = int(clock.now().timestamp())
    assert minted[0] == {"iat": now - 60, "exp": now + 540, "iss": "42"}
    clock.advance(54 * 60)
    assert tokens.token() == "ghs_1"  # six minutes left
    clock.advance(61)
    assert tokens.token() == "ghs_2"  # under five minutes left
    tokens.invalidate()
    assert tokens.token() == "ghs_3"
    assert tokens.refresh_count == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (404, AuthenticationError), (503, GitHubUnavailableError)],
)
def test_refusals_are_typed(status: int, error: type[Exception]) -> None:
    tokens = provider(FakeClock(), httpx.MockTransport(lambda _: httpx.Response(status)))
    with pytest.raises(error):
        tokens.token()


def test_one_adapter_and_token_cache_per_installation(tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(500))
    key = tmp_path / "app.pem"
    key.write_text(PEM)
    settings = load_settings(
        github_api_url="https://ghe.example.com/api/v3",
        github_app_id="42",
        github_private_key_path=key,
        github_bot_login="trunkline[bot]",
    )
    clients = InstallationClients.from_settings(
        settings,
        clock=FakeClock(),
        http=httpx.Client(transport=transport),
        redactor=Redactor(),
    )
    assert isinstance(clients.for_installation(1), RedactingGitHub)  # every write redacted
    assert clients.for_installation(1) is clients.for_installation(1)
    assert clients.for_installation(1) is not clients.for_installation(2)
    assert clients.tokens(1) is clients.tokens(1)
    with pytest.raises(ConfigurationError, match="APP_ID"):
        InstallationClients.from_settings(
            load_settings(github_app_id=None),
            clock=FakeClock(),
            http=httpx.Client(),
            redactor=Redactor(),
        )
    with pytest.raises(ConfigurationError, match="cannot read"):
        InstallationClients.from_settings(
            load_settings(github_app_id="1", github_private_key_path=tmp_path / "missing.pem"),
            clock=FakeClock(),
            http=httpx.Client(),
            redactor=Redactor(),
        )
