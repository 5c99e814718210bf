"""Budgets: pricing, the check before every call, and the never-exceeded invariant (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.agents.budget import (
    BudgetLimits,
    CallEstimate,
    Exhausted,
    ModelPrice,
    Spend,
    check_call,
    check_review_round,
    cost_of,
    estimate_call,
    max_cost_of_call,
    price_for,
)
from trunkline.agents.messages import Usage
from trunkline.errors import ConfigurationError

PRICE = ModelPrice(input=Decimal(3), output=Decimal(15))
LIMITS = BudgetLimits(
    tokens=10_000, usd=Decimal("1"), wall_seconds=100, executor_turns=5, review_rounds=2
)


def test_agents_cost_uses_all_four_rates() -> None:
    usage = Usage(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert cost_of(usage, PRICE) == Decimal(3) + Decimal(15) + Decimal("3.75") + Decimal("0.3")
    explicit = ModelPrice(
        input=Decimal(1), output=Decimal(2), cache_write=Decimal(5), cache_read=Decimal(0)
    )
    assert cost_of(usage, explicit) == Decimal(8)


def test_agents_max_cost_prices_input_at_the_dearest_rate() -> None:
    assert max_cost_of_call(1_000_000, 1_000_000, PRICE) == Decimal("3.75") + Decimal(15)


def test_agents_unknown_model_price_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no price for model 'x'"):
        price_for({"m": PRICE}, "x")


@pytest.mark.parametrize(
    ("spend", "estimate", "elapsed", "executor", "expected"),
    [
        (Spend(), CallEstimate(10_000, Decimal("1"), 100), 0, True, None),
        (Spend(), CallEstimate(10_001, Decimal(0), 0), 0, False, Exhausted.TOKENS),
        (Spend(usd=Decimal("0.5")), CallEstimate(1, Decimal("0.51"), 0), 0, False, Exhausted.USD),
        (Spend(), CallEstimate(1, Decimal(0), 10), 91, False, Exhausted.WALL),
        (
            Spend(executor_turns=5),
            CallEstimate(1, Decimal(0), 0),
            0,
            True,
            Exhausted.EXECUTOR_TURNS,
        ),
        (Spend(executor_turns=5), CallEstimate(1, Decimal(0), 0), 0, False, None),
    ],
)
def test_agents_check_call_table(
    spend: Spend, estimate: CallEstimate, elapsed: float, executor: bool, expected: Exhausted | None
) -> None:
    assert (
        check_call(spend, LIMITS, estimate, elapsed_seconds=elapsed, executor_turn=executor)
        == expected
    )


def test_agents_review_rounds_bound() -> None:
    assert check_review_round(Spend(review_rounds=1), LIMITS) is None
    assert check_review_round(Spend(review_rounds=2), LIMITS) is Exhausted.REVIEW_ROUNDS


@given(
    calls=st.lists(
        st.tuples(
            st.integers(1, 3000),  # input ceiling
            st.integers(1, 2000),  # max_tokens
            st.floats(0, 1),  # fraction of the input ceiling really used
            st.floats(0, 1),  # fraction of max_tokens really produced
        ),
        max_size=30,
    ),
    token_cap=st.integers(0, 40_000),
    usd_cents=st.integers(0, 50),
)
def test_agents_caps_are_never_exceeded(
    calls: list[tuple[int, int, float, float]], token_cap: int, usd_cents: int
) -> None:
    limits = BudgetLimits(token_cap, Decimal(usd_cents) / 100, 1e9, 10_000, 10)
    spend = Spend()
    for ceiling, max_tokens, used_in, used_out in calls:
        estimate = estimate_call(ceiling, max_tokens, PRICE, 0)
        if check_call(spend, limits, estimate, elapsed_seconds=0, executor_turn=True):
            continue
        usage = Usage(
            input_tokens=int(ceiling * used_in * 0.5),
            cache_creation_input_tokens=int(ceiling * used_in * 0.5),
            output_tokens=int(max_tokens * used_out),
        )
        spend = spend.add_call(usage, cost_of(usage, PRICE), executor_turn=True)
        assert spend.tokens <= limits.tokens
        assert spend.usd <= limits.usd
