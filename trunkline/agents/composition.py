"""Builds the agent runtime's adapters from `Settings` (used at the composition root).

Reads the script file for the scripted provider; otherwise performs no I/O. The price table
is a plain mapping in `Settings` (settings never import the agents) and is validated into
`ModelPrice`s here. The redactor is not built here: the composition root builds one with
`agents.redaction.redactor_for` and passes it to every writer.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from trunkline.agents.anthropic_provider import AnthropicProvider
from trunkline.agents.budget import BudgetLimits, ModelPrice, PriceTable
from trunkline.agents.messages import Provider
from trunkline.agents.sandbox import Sandbox, SandboxMode, make_sandbox
from trunkline.agents.scripted_provider import ScriptedProvider, load_script
from trunkline.agents.worktree_git import Author
from trunkline.errors import ConfigurationError
from trunkline.settings import Settings


def build_provider(settings: Settings) -> Provider:
    if settings.agent_provider == "scripted":
        if settings.agent_script is None:
            raise ConfigurationError("the scripted provider needs TRUNKLINE_AGENT_SCRIPT")
        return ScriptedProvider(load_script(settings.agent_script))
    if settings.anthropic_api_key is None:
        raise ConfigurationError("the anthropic provider needs TRUNKLINE_ANTHROPIC_API_KEY")
    return AnthropicProvider.create(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=settings.agent_max_retries,
        timeout=settings.agent_request_timeout,
    )


def price_table(settings: Settings) -> PriceTable:
    """The typed price table from `TRUNKLINE_AGENT_PRICES` (a plain mapping in settings).

    Raises `ConfigurationError` naming the model and the field when an entry is invalid
    (unknown key, negative or missing price).
    """
    table: dict[str, ModelPrice] = {}
    for model, entry in settings.agent_prices.items():
        values = {key: Decimal(str(value)) for key, value in entry.items() if value is not None}
        try:
            table[model] = ModelPrice.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
            )
            raise ConfigurationError(
                f"TRUNKLINE_AGENT_PRICES: invalid price for model {model!r}: {problems}"
            ) from None
    return table


def build_sandbox(
    settings: Settings, worktree: Path, hidden_paths: tuple[Path, ...] = ()
) -> Sandbox:
    """The command runner for one worktree; the data directory (database, mirrors, other
    items' worktrees) is hidden behind an empty tmpfs, the worktree re-bound inside it, and
    the GitHub App's private key file is unreadable inside."""
    key = settings.github_private_key_path
    return make_sandbox(
        SandboxMode(settings.sandbox),
        worktree,
        path=settings.sandbox_path,
        time_limit=settings.sandbox_command_timeout,
        output_cap=settings.sandbox_output_cap,
        hidden_paths=(
            settings.data_dir.resolve(),
            *((key,) if key is not None else ()),
            *hidden_paths,
        ),
    )


def author_of(settings: Settings) -> Author:
    return Author(settings.git_author_name, settings.git_author_email)


def limits_of(
    usd: float, tokens: int, wall_seconds: float, executor_turns: int, review_rounds: int
) -> BudgetLimits:
    """Budget limits from the policy's `agents` section values."""
    return BudgetLimits(
        tokens=tokens,
        usd=Decimal(str(usd)),
        wall_seconds=wall_seconds,
        executor_turns=executor_turns,
        review_rounds=review_rounds,
    )
