"""The policy's `queue:` section -> the engine's `QueueConfig`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from trunkline.errors import ConfigurationError
from trunkline.policies.model import Policy
from trunkline.queue.config_from_policy import (
    default_priority,
    queue_config_from_policy,
    queue_config_of,
)
from trunkline.queue.model import MergeMethod, Priority, QueueConfig, QueueConfigError


def policy(queue: dict[str, Any]) -> Policy:
    return Policy.model_validate({"queue": queue})


def test_every_field_is_mapped() -> None:
    config = queue_config_of(
        policy(
            {
                "base": "trunk",
                "required_checks": ["ci", {"name": "lint", "app": "github-actions"}],
                "merge_method": "squash",
                "flake_retries": 2,
                "retry_on_timeout": 1,
                "check_timeout": "1h30m",
                "check_start_timeout": "5m",
                "batch_size": 4,
                "batch_wait": "90s",
                "parallel_checks": 2,
                "pretest": True,
                "speculation_floor": 0.4,
                "cleared_batch_size": 16,
                "merge_isolated": True,
                "isolation_slots": 6,
            }
        )
    )
    assert config == QueueConfig(
        base="trunk",
        required_checks=("ci", "lint"),
        check_apps=(("lint", "github-actions"),),
        merge_method=MergeMethod.SQUASH,
        check_timeout=timedelta(minutes=90),
        check_start_timeout=timedelta(minutes=5),
        retry_on_timeout=1,
        batch_size=4,
        parallel_checks=2,
        flake_retries=2,
        batch_wait=timedelta(seconds=90),
        pretest=True,
        speculation_floor=0.4,
        cleared_batch_size=16,
        merge_isolated=True,
        isolation_slots=6,
    )
    assert config.app_for("lint") == "github-actions"
    assert config.app_for("ci") is None


def test_defaults_map_with_one_check() -> None:
    config = queue_config_from_policy(policy({"required_checks": ["ci"]}).queue)
    assert (config.base, config.merge_method, config.check_timeout) == (
        "main",
        MergeMethod.MERGE,
        timedelta(minutes=60),
    )


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ({}, "queue.required_checks is empty"),
        ({"required_checks": ["ci", "ci"]}, "must not repeat"),
        ({"required_checks": ["ci", {"name": "ci", "app": "x"}]}, "must not repeat"),
        ({"required_checks": ["ci"], "merge_method": "rebase"}, "only the last one is tested"),
    ],
)
def test_configs_the_engine_cannot_run_are_clear_errors(
    queue: dict[str, Any], message: str
) -> None:
    with pytest.raises(QueueConfigError, match=message) as raised:
        queue_config_of(policy(queue))
    assert isinstance(raised.value, ConfigurationError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("high", Priority.HIGH), ("normal", Priority.NORMAL), ("low", Priority.LOW)],
)
def test_default_priority(value: str, expected: Priority) -> None:
    assert default_priority(policy({"default_priority": value})) is expected
    assert default_priority(Policy()) is Priority.NORMAL


def test_parallel_bisection_keys_are_mapped_and_refused_with_pretest() -> None:
    config = queue_config_of(
        policy(
            {
                "required_checks": ["ci"],
                "parallel_bisection": True,
                "bisection_holds_stack": False,
            }
        )
    )
    assert config.parallel_bisection is True
    assert config.bisection_holds_stack is False
    assert queue_config_of(policy({"required_checks": ["ci"]})).parallel_bisection is False
    with pytest.raises(QueueConfigError, match="parallel_bisection"):
        queue_config_of(
            policy({"required_checks": ["ci"], "parallel_bisection": True, "pretest": True})
        )
