"""Building the runtime's adapters from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkline.agents.anthropic_provider import AnthropicProvider
from trunkline.agents.composition import author_of, build_provider, build_redactor
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
    settings = load_settings(anthropic_api_key="api-key-value", webhook_secret="hook-value")
    redactor = build_redactor(settings, extra_secrets=("installation-token",))
    text = redactor.redact("api-key-value hook-value installation-token")
    assert text == "[REDACTED] [REDACTED] [REDACTED]"
    assert author_of(settings).name == "trunkline[bot]"
