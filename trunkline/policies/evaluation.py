"""Evaluate a change against a policy: subsystems, owners, risk level with reasons, approvals.

Pure; performs no I/O and never raises for any change description. Compile a policy once
(`CompiledPolicy(policy)`), then call `evaluate(change, codeowners)` as often as needed; the
result is a frozen `Evaluation` whose tuples are sorted, so equal inputs give equal results.

Semantics (docs/policy.md is the reference):
  - touched paths: added, modified, deleted, and both sides of each rename;
  - a path belongs to every subsystem whose patterns match it, or else to the default one;
  - owners of a subsystem: its `owners` from the policy; if it lists none and CODEOWNERS is
    given, the CODEOWNERS owners of its touched paths (last matching line wins per path);
  - risk: the highest level (in `risk_levels` order) any of whose conditions matches, or the
    lowest level if none does; every matched condition of every level is a reason;
  - approvals: what `approvals[level]` demands; `from: owners` resolves to the owners above.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

from trunkline.policies.codeowners import CodeOwners
from trunkline.policies.model import Policy
from trunkline.policies.patterns import (
    IndexedMatcher,
    NaiveMatcher,
    PatternMatcher,
    compile_groups,
)


@dataclass(frozen=True)
class Change:
    """What a change does, as repository-relative paths with `/` separators."""

    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (old path, new path)
    lines_changed: int = 0  # added plus removed lines
    dependency_files: tuple[str, ...] = ()  # dependency manifests the change touches
    new_dependencies: bool = False  # the change adds at least one dependency

    def touched_paths(self) -> tuple[str, ...]:
        paths = {*self.added, *self.modified, *self.deleted}
        for old, new in self.renamed:
            paths.add(old)
            paths.add(new)
        return tuple(sorted(paths))


class OwnersSource(StrEnum):
    POLICY = "policy"
    CODEOWNERS = "codeowners"
    NONE = "none"


class PathRoute(NamedTuple):
    """The subsystems one path belongs to (a named tuple: there is one per path)."""

    path: str
    subsystems: tuple[str, ...]


@dataclass(frozen=True)
class SubsystemTouch:
    name: str
    paths: tuple[str, ...]
    owners: tuple[str, ...]
    owners_source: OwnersSource
    is_default: bool


RiskCondition = Literal["paths", "deleted_files", "changed_lines_over", "new_dependencies"]


@dataclass(frozen=True)
class RiskReason:
    level: str
    condition: RiskCondition
    message: str


@dataclass(frozen=True)
class ApprovalRequirement:
    """Human approvals the change's risk level requires (`required == 0`: none)."""

    level: str
    required: int
    from_owners: bool
    approvers: tuple[str, ...]  # who may approve: resolved owners, or the named list
    plan_approval: bool
    allow_requester: bool


@dataclass(frozen=True)
class Evaluation:
    paths: tuple[PathRoute, ...]
    subsystems: tuple[SubsystemTouch, ...]
    owners: tuple[str, ...]
    risk: str
    reasons: tuple[RiskReason, ...]
    approvals: ApprovalRequirement

    @property
    def subsystem_names(self) -> tuple[str, ...]:
        return tuple(touch.name for touch in self.subsystems)


class CompiledPolicy:
    """A policy with its patterns compiled once; `indexed=False` uses the naive matcher."""

    def __init__(self, policy: Policy, *, indexed: bool = True) -> None:
        self.policy = policy
        self._subsystems = sorted(policy.subsystems)
        self._levels = list(policy.risk_levels)
        groups = [policy.subsystems[name].paths for name in self._subsystems]
        groups += [
            policy.risk[level].paths if level in policy.risk else [] for level in self._levels
        ]
        patterns = compile_groups(groups)
        self._single_names = [(name,) for name in self._subsystems]
        self._listed_owners = {
            name: tuple(sorted(set(subsystem.owners)))
            for name, subsystem in policy.subsystems.items()
        }
        self._listed_owners[policy.default_subsystem.name] = tuple(
            sorted(set(policy.default_subsystem.owners))
        )
        self._matcher: PatternMatcher = (
            IndexedMatcher(patterns) if indexed else NaiveMatcher(patterns)
        )

    def evaluate(self, change: Change, codeowners: CodeOwners | None = None) -> Evaluation:
        policy = self.policy
        count = len(self._subsystems)
        default = policy.default_subsystem.name
        routes: list[PathRoute] = []
        members: dict[str, list[str]] = {}
        path_reasons: dict[int, list[RiskReason]] = {}
        names_of = self._subsystems
        default_names: tuple[str, ...] = (default,)
        match = self._matcher.match
        single_names = self._single_names
        for path in change.touched_paths():
            matched = match(path)
            names: tuple[str, ...]
            if len(matched) == 1:
                (group,) = matched
                names = single_names[group] if group < count else default_names
            elif matched:
                groups = sorted(g for g in matched if g < count)
                names = tuple(names_of[g] for g in groups) if groups else default_names
            else:
                names = default_names
            routes.append(PathRoute(path, names))
            for name in names:
                members.setdefault(name, []).append(path)
            if matched and max(matched) >= count:
                for group, pattern in sorted(matched.items()):
                    if group >= count:
                        level = self._levels[group - count]
                        path_reasons.setdefault(group - count, []).append(
                            RiskReason(
                                level,
                                "paths",
                                f"path {path} matches {level} risk pattern {pattern.text}",
                            )
                        )

        touches = [
            self._touch(name, tuple(paths), name == default, codeowners)
            for name, paths in sorted(members.items())
        ]
        owners = tuple(sorted({owner for touch in touches for owner in touch.owners}))

        reasons: list[RiskReason] = []
        for rank in reversed(range(len(self._levels))):
            reasons.extend(path_reasons.get(rank, ()))
            reasons.extend(self._other_reasons(self._levels[rank], change))
        risk = reasons[0].level if reasons else self._levels[0]
        return Evaluation(
            paths=tuple(routes),
            subsystems=tuple(touches),
            owners=owners,
            risk=risk,
            reasons=tuple(reasons),
            approvals=self._approvals(risk, owners),
        )

    def _touch(
        self, name: str, paths: tuple[str, ...], is_default: bool, codeowners: CodeOwners | None
    ) -> SubsystemTouch:
        listed = self._listed_owners[name]
        if listed:
            return SubsystemTouch(name, paths, listed, OwnersSource.POLICY, is_default)
        if codeowners is not None:
            found = {owner for path in paths for owner in codeowners.owners_of(path)}
            return SubsystemTouch(
                name, paths, tuple(sorted(found)), OwnersSource.CODEOWNERS, is_default
            )
        return SubsystemTouch(name, paths, (), OwnersSource.NONE, is_default)

    def _other_reasons(self, level: str, change: Change) -> list[RiskReason]:
        rule = self.policy.risk.get(level)
        if rule is None:
            return []
        reasons: list[RiskReason] = []
        if rule.deleted_files:
            reasons.extend(
                RiskReason(level, "deleted_files", f"file {path} is deleted ({level} risk)")
                for path in sorted(set(change.deleted))
            )
        limit = rule.changed_lines_over
        if limit is not None and change.lines_changed > limit:
            reasons.append(
                RiskReason(
                    level,
                    "changed_lines_over",
                    f"{change.lines_changed} changed lines exceed the {level} risk limit "
                    f"of {limit}",
                )
            )
        if rule.new_dependencies and change.new_dependencies:
            where = ", ".join(sorted(set(change.dependency_files)))
            suffix = f" in {where}" if where else ""
            reasons.append(
                RiskReason(level, "new_dependencies", f"new dependencies{suffix} ({level} risk)")
            )
        return reasons

    def _approvals(self, level: str, owners: tuple[str, ...]) -> ApprovalRequirement:
        rule = self.policy.approvals.get(level)
        if rule is None:
            return ApprovalRequirement(level, 0, False, (), False, False)
        named = rule.from_
        from_owners = named == "owners"
        approvers = owners if from_owners else tuple(sorted(set(named)))
        return ApprovalRequirement(
            level, rule.required, from_owners, approvers, rule.plan_approval, rule.allow_requester
        )


def evaluate(policy: Policy, change: Change, codeowners: CodeOwners | None = None) -> Evaluation:
    """One-off evaluation; compile with `CompiledPolicy` to evaluate many changes."""
    return CompiledPolicy(policy).evaluate(change, codeowners)
