"""The policy's max_active per subsystem, as lease requests name it."""

from __future__ import annotations

import pytest

from trunkline.locks.capacities import UnknownSubsystemError, capacities_for
from trunkline.policies.model import Policy

POLICY = Policy.model_validate(
    {
        "version": 1,
        "subsystems": {
            "api": {"paths": ["src/api/**"], "max_active": 1},
            "docs": {"paths": ["docs/**"], "max_active": 3},
            "frozen": {"paths": ["vendor/**"], "max_active": 0},
        },
        "default_subsystem": {"name": "rest", "max_active": 2},
    }
)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["api"], {"api": 1}),
        (["docs", "rest"], {"docs": 3, "rest": 2}),
        (["frozen"], {"frozen": 0}),
        ([], {}),
    ],
)
def test_capacities_come_from_the_policy(names: list[str], expected: dict[str, int]) -> None:
    assert capacities_for(POLICY, names) == expected


def test_the_default_subsystem_of_an_empty_policy() -> None:
    assert capacities_for(Policy(), ["default"]) == {"default": 1}


def test_unknown_subsystems_are_named() -> None:
    with pytest.raises(UnknownSubsystemError, match="'web' is not in the policy"):
        capacities_for(POLICY, ["web"])
