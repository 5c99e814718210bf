"""A plan's paths: which files they let the executor write, and which subsystems that needs.

Pure; performs no I/O. One definition serves both sides, so an item never writes where it
holds no lock (docs/locks.md, Plan scope):

- a path with no wildcard (`*`, `?`, `[`), no trailing `/` and no leading `!` names exactly
  one file, relative to the repository root (`calc/arith.py`, `README.md`);
- anything else is a gitignore pattern anchored at the repository root: `calc/` is the
  directory and everything under it, `calc/*.py` the Python files directly in it, `**/*.py`
  every Python file, `*.py` those at the root; `!pattern` takes paths back out.

`plan_subsystems` over-approximates: it returns every subsystem some path of the scope could
belong to, never fewer. A file is evaluated exactly; a pattern stands for everything under
its literal leading directories (`calc/*.py` -> under `calc/`; `**/*.py` and `*.py` -> the
whole repository). A subsystem pattern can reach into that region unless it is anchored
(a leading or inner `/`) and its leading components rule the region out; unanchored
subsystem patterns (`docs/`, `*.md`) match at any depth, so they reach every directory. The
default subsystem is added unless one subsystem without negations certainly covers the whole
region (a literal directory pattern containing it).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from trunkline.policies.evaluation import Change, evaluate
from trunkline.policies.model import Policy

_WILDCARDS = frozenset("*?[")


def is_exact(path: str) -> bool:
    """True when a plan path names exactly one file."""
    return not (
        _WILDCARDS.intersection(path) or path.endswith("/") or path.startswith("!") or not path
    )


def anchored(pattern: str) -> str:
    """The root-anchored gitignore form of a plan pattern (not for exact files)."""
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    body = body if body.startswith("/") else f"/{body}"
    return f"!{body}" if negated else body


def _components(pattern: str) -> tuple[list[str], bool, bool]:
    """(components, anchored, directory only) of a gitignore pattern without its `!`."""
    directory = pattern.endswith("/")
    body = pattern.rstrip("/")
    is_anchored = body.startswith("/") or "/" in body
    return body.lstrip("/").split("/"), is_anchored, directory


def _literal(component: str) -> bool:
    return bool(component) and not _WILDCARDS.intersection(component) and "\\" not in component


def region_of(pattern: str) -> tuple[str, ...]:
    """The literal leading directories of a plan pattern: its paths all lie under them."""
    components, _, _ = _components(anchored(pattern).removeprefix("!"))
    prefix: list[str] = []
    for component in components[:-1] if not pattern.endswith("/") else components:
        if not _literal(component):
            break
        prefix.append(component)
    return tuple(prefix)


def reaches(subsystem_pattern: str, region: tuple[str, ...]) -> bool:
    """Could the subsystem pattern match some path under `region`? (never a false no)"""
    components, is_anchored, _ = _components(subsystem_pattern)
    if not is_anchored:
        return True  # it matches at any depth, so below any directory too
    for mine, theirs in zip(region, components, strict=False):
        if theirs == "**":
            return True
        if _literal(theirs):
            if theirs != mine:
                return False
        elif "[" not in theirs and "\\" not in theirs and not fnmatchcase(mine, theirs):
            return False
    return True


def covers(subsystem_pattern: str, region: tuple[str, ...]) -> bool:
    """Does the subsystem pattern certainly match every path under `region`?"""
    components, is_anchored, _ = _components(subsystem_pattern)
    if components and components[-1] == "**":
        components = components[:-1]
    if not components or not all(_literal(c) for c in components):
        return False
    if is_anchored:
        return len(components) <= len(region) and tuple(components) == region[: len(components)]
    return len(components) == 1 and components[0] in region


def plan_subsystems(policy: Policy, paths: Sequence[str]) -> tuple[str, ...]:
    """Every subsystem a file the plan's scope allows could belong to (sorted)."""
    exact = [path for path in paths if is_exact(path)]
    found = set(evaluate(policy, Change(modified=tuple(exact))).subsystem_names) if exact else set()
    regions = {region_of(path) for path in paths if not is_exact(path) and not path.startswith("!")}
    default = policy.default_subsystem.name
    for region in regions:
        covered = False
        for name, subsystem in policy.subsystems.items():
            patterns = subsystem.paths
            if any(reaches(p, region) for p in patterns if not p.startswith("!")):
                found.add(name)
            if not any(p.startswith("!") for p in patterns) and any(
                covers(p, region) for p in patterns
            ):
                covered = True
        if not covered:
            found.add(default)
    return tuple(sorted(found))
