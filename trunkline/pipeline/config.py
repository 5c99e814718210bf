"""The policy facts the pipeline's decisions need, as one frozen value.

Pure; performs no I/O. `PipelineConfig.of(policy)` maps a loaded `.github/trunkline.yml`
onto it; tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from trunkline.policies.model import Permission, Policy


@dataclass(frozen=True)
class PipelineConfig:
    dispatch_label: str = "agent"
    min_permission: Permission = Permission.WRITE
    max_active: int = 4
    #: Loops back to the executor (agent or human change requests, failed self-checks,
    #: queue ejections) before escalating; also the most planner runs per run.
    max_rounds: int = 2
    #: Risk levels whose approvals require a human to approve the plan before execution.
    plan_approval_levels: frozenset[str] = frozenset()
    escalation_label: str = "needs-human"
    escalation_notify: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_active < 0:
            raise ValueError("max_active must be >= 0")
        if self.max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")

    @classmethod
    def of(cls, policy: Policy) -> PipelineConfig:
        return cls(
            dispatch_label=policy.dispatch.label,
            min_permission=policy.dispatch.min_permission,
            max_active=policy.dispatch.max_active,
            max_rounds=policy.agents.reviewer.max_rounds,
            plan_approval_levels=frozenset(
                level for level, rule in policy.approvals.items() if rule.plan_approval
            ),
            escalation_label=policy.escalation.label,
            escalation_notify=tuple(policy.escalation.notify),
        )

    def may_dispatch(self, permission: Permission | None) -> bool:
        return permission is not None and permission.rank >= self.min_permission.rank
