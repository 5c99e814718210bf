"""Building the runtime's adapters from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkline.agents.anthropic_provider import AnthropicProvider
from trunkline.agents.composition import author_of, build_provider
from trunkline.agents.redaction import redactor_for
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.errors import ConfigurationError
from trunkline.settings import load_settings


def test_agents_build_scripted_provider_from_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "script.yml"
    script.write_text("responses:\n  - content: [{type: text, text: hi}]\n")
    provider = build_provider(load_settings(agent_provider="scripted", agent_script=script))
    assert isinstance(provider, ScriptedProvider)
    assert provider.remaining == 1
    with pytest.raises(ConfigurationError, match="TRUNKLINE_AGENT_SCRIPT"):
        build_provider(load_settings(agent_provider="scripted"))


def test_agents_build_anthropic_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUNKLINE_ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="TRUNKLINE_ANTHROPIC_API_KEY"):
        build_provider(load_settings(agent_provider="anthropic"))
    settings = load_settings(
        anthropic_api_key="k-123456",
        anthropic_base_url="http://127.0.0.1:9",
        agent_max_retries=3,
        agent_request_timeout=7,
    )
    provider = build_provider(settings)
    assert isinstance(provider, AnthropicProvider)
    assert str(provider.client.base_url).startswith("http://127.0.0.1:9")
    assert provider.client.max_retries == 3
    assert provider.max_call_seconds() == 4 * 7 + 3 * 8


def test_agents_redactor_covers_every_secret_setting() -> None:
    settings = load_settings(
        anthropic_api_key="api-key-value",
        webhook_secret="hook-value",
        database_url="postgresql://bot:db-password-value@db/trunkline",
    )
    redactor = redactor_for(
        settings, {"MY_SERVICE_TOKEN": "env-token-value"}, extra_secrets=("installation-token",)
    )
    text = redactor.redact(
        "api-key-value hook-value installation-token env-token-value db-password-value"
    )
    assert text == "[REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED]"
    assert author_of(settings).name == "trunkline[bot]"


def test_agents_price_table_is_validated_from_plain_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from decimal import Decimal

    from trunkline.agents.budget import ModelPrice
    from trunkline.agents.composition import price_table

    defaults = price_table(load_settings())
    assert set(defaults) == {"claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"}
    assert defaults["claude-sonnet-4-5"] == ModelPrice(input=Decimal(3), output=Decimal(15))
    monkeypatch.setenv(
        "TRUNKLINE_AGENT_PRICES",
        '{"m": {"input": 0.8, "output": 4, "cache_write": null, "cache_read": 0.08}}',
    )
    table = price_table(load_settings())
    assert table["m"].input == Decimal("0.8")
    assert table["m"].cache_read == Decimal("0.08")
    assert table["m"].cache_write is None
    monkeypatch.delenv("TRUNKLINE_AGENT_PRICES")
    for bad, message in (
        ({"m": {"input": 1, "output": 2, "cahce_read": 1}}, "cahce_read"),
        ({"m": {"input": -1, "output": 2}}, "input"),
        ({"m": {"output": 2}}, "input"),
    ):
        with pytest.raises(ConfigurationError, match=f"'m'.*{message}"):
            price_table(load_settings(agent_prices=bad))
