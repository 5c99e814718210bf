"""Budgets for one work item: tokens, US dollars, wall time, executor turns, review rounds.

Pure; performs no I/O. `check_call` is asked BEFORE every model call with the most that call
could cost (an upper bound of its input tokens plus its `max_tokens` of output, priced at the
dearest input rate): if the call could cross any cap it is refused, so a cap is never
exceeded. `Spend` adds up what calls really cost (from the API's usage counters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from trunkline.agents.messages import Usage
from trunkline.errors import ConfigurationError

_MILLION = Decimal(1_000_000)


class ModelPrice(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_write: Decimal | None = Field(default=None, ge=0)
    cache_read: Decimal | None = Field(default=None, ge=0)

    @property
    def effective_cache_write(self) -> Decimal:
        return self.cache_write if self.cache_write is not None else self.input * Decimal("1.25")

    @property
    def effective_cache_read(self) -> Decimal:
        return self.cache_read if self.cache_read is not None else self.input * Decimal("0.1")


PriceTable = Mapping[str, ModelPrice]


def price_for(prices: PriceTable, model: str) -> ModelPrice:
    try:
        return prices[model]
    except KeyError:
        raise ConfigurationError(
            f"no price for model {model!r} in the price table (TRUNKLINE_AGENT_PRICES); "
            "a USD budget cannot be enforced without one"
        ) from None


def cost_of(usage: Usage, price: ModelPrice) -> Decimal:
    """What `usage` cost, in US dollars."""
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.effective_cache_write
        + usage.cache_read_input_tokens * price.effective_cache_read
    )
    return total / _MILLION


def max_cost_of_call(input_ceiling: int, max_tokens: int, price: ModelPrice) -> Decimal:
    """The most a call could cost: every input token at the dearest input rate."""
    dearest_input = max(price.input, price.effective_cache_write, price.effective_cache_read)
    return (input_ceiling * dearest_input + max_tokens * price.output) / _MILLION


@dataclass(frozen=True)
class BudgetLimits:
    tokens: int
    usd: Decimal
    wall_seconds: float
    executor_turns: int
    review_rounds: int


@dataclass(frozen=True)
class Spend:
    usage: Usage = field(default_factory=Usage)
    usd: Decimal = Decimal(0)
    calls: int = 0
    executor_turns: int = 0
    review_rounds: int = 0

    @property
    def tokens(self) -> int:
        return self.usage.total_tokens

    def add_call(self, usage: Usage, usd: Decimal, *, executor_turn: bool) -> Spend:
        return replace(
            self,
            usage=self.usage + usage,
            usd=self.usd + usd,
            calls=self.calls + 1,
            executor_turns=self.executor_turns + (1 if executor_turn else 0),
        )

    def add_review_round(self) -> Spend:
        return replace(self, review_rounds=self.review_rounds + 1)


class Exhausted(StrEnum):
    TOKENS = "budget_tokens"
    USD = "budget_usd"
    WALL = "budget_wall"
    EXECUTOR_TURNS = "max_turns"
    REVIEW_ROUNDS = "max_review_rounds"


@dataclass(frozen=True)
class CallEstimate:
    tokens: int
    usd: Decimal
    seconds: float


def estimate_call(
    input_ceiling: int, max_tokens: int, price: ModelPrice, max_seconds: float
) -> CallEstimate:
    return CallEstimate(
        tokens=input_ceiling + max_tokens,
        usd=max_cost_of_call(input_ceiling, max_tokens, price),
        seconds=max_seconds,
    )


def check_call(
    spend: Spend,
    limits: BudgetLimits,
    estimate: CallEstimate,
    *,
    elapsed_seconds: float,
    executor_turn: bool,
) -> Exhausted | None:
    """Which cap the next call could cross, or None when it is affordable."""
    if executor_turn and spend.executor_turns >= limits.executor_turns:
        return Exhausted.EXECUTOR_TURNS
    if spend.tokens + estimate.tokens > limits.tokens:
        return Exhausted.TOKENS
    if spend.usd + estimate.usd > limits.usd:
        return Exhausted.USD
    if elapsed_seconds + estimate.seconds > limits.wall_seconds:
        return Exhausted.WALL
    return None


def check_review_round(spend: Spend, limits: BudgetLimits) -> Exhausted | None:
    """Whether one more review round is allowed."""
    if spend.review_rounds >= limits.review_rounds:
        return Exhausted.REVIEW_ROUNDS
    return None
