"""From a repository's policy to the `{subsystem: max_active}` mapping a lease request names.

Pure; performs no I/O. Named subsystems take their `max_active` from `subsystems:`, the
default subsystem from `default_subsystem:`. An unknown name is a caller error (the policy
maps paths to subsystems first, so every name comes from the same policy).
"""

from __future__ import annotations

from collections.abc import Iterable

from trunkline.policies.model import Policy


class UnknownSubsystemError(ValueError):
    """A subsystem name the policy does not define."""


def capacities_for(policy: Policy, subsystems: Iterable[str]) -> dict[str, int]:
    """`{name: max_active}` for every subsystem in `subsystems`, as the policy says."""
    result: dict[str, int] = {}
    for name in subsystems:
        if name in policy.subsystems:
            result[name] = policy.subsystems[name].max_active
        elif name == policy.default_subsystem.name:
            result[name] = policy.default_subsystem.max_active
        else:
            known = sorted([*policy.subsystems, policy.default_subsystem.name])
            raise UnknownSubsystemError(
                f"subsystem {name!r} is not in the policy (known: {', '.join(known)})"
            )
    return result
