"""Gitignore-style pattern groups, compiled once and matched through an index.

Pure; performs no I/O. A *group* is an ordered list of gitignore patterns (a subsystem's
`paths`, a risk level's `paths`, one CODEOWNERS line). Within a group the last pattern that
matches a path decides, so `!pattern` (negation) excludes what earlier patterns included;
a group matches a path when its deciding pattern is an inclusion. Patterns compile with
pathspec's `GitIgnoreSpecPattern` (git's wildmatch rules: `*`, `?`, `[...]`, `**`, a
trailing `/` for directories, a leading or inner `/` anchors to the repository root;
matching is case-sensitive).

Two matchers give identical answers. `NaiveMatcher` tries every pattern on every path.
`IndexedMatcher` first narrows the candidates, each pattern stored in exactly one bucket:
  - anchored patterns with literal leading directories (`src/api/**`) in a trie keyed by
    those components, so a path meets only the patterns along its own prefix;
  - other patterns with a fully literal component (`docs/`, `**/migrations/**`) by that
    component name, looked up by every component of the path;
  - `*<suffix>` patterns (`*.md`) by the suffix from its last dot, looked up by the same
    part of each path component;
  - everything else in a general bucket tried on every path.
Every bucket over-approximates (a pattern can only match paths that reach its bucket), and
the regular expression still decides, so the index never changes a result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trunkline.policies.model import compile_pattern

_WILDCARD_CHARS = frozenset("*?[\\")


@dataclass(frozen=True)
class CompiledPattern:
    """One pattern of one group; `order` is its position in the group."""

    text: str
    group: int
    order: int
    include: bool
    regex: re.Pattern[str]


def compile_groups(groups: Sequence[Sequence[str]]) -> tuple[CompiledPattern, ...]:
    """Compile each group's patterns; patterns must already be valid (the model checks)."""
    compiled = []
    for group, texts in enumerate(groups):
        for order, text in enumerate(texts):
            pattern = compile_pattern(text)
            assert pattern.regex is not None
            assert pattern.include is not None
            compiled.append(
                CompiledPattern(text, group, order, bool(pattern.include), pattern.regex)
            )
    return tuple(compiled)


def decide(matches: Iterable[CompiledPattern]) -> dict[int, CompiledPattern]:
    """Group -> the inclusion pattern that decided it, from the patterns that matched."""
    last: dict[int, CompiledPattern] = {}
    for pattern in matches:
        seen = last.get(pattern.group)
        if seen is None or pattern.order > seen.order:
            last[pattern.group] = pattern
    return {group: pattern for group, pattern in last.items() if pattern.include}


class PatternMatcher(Protocol):
    def match(self, path: str) -> dict[int, CompiledPattern]:
        """The groups that contain `path`, each with the pattern that decided it."""
        ...


class NaiveMatcher:
    """Tries every pattern on every path: the reference the index is checked against."""

    def __init__(self, patterns: Sequence[CompiledPattern]) -> None:
        self._patterns = tuple(patterns)

    def match(self, path: str) -> dict[int, CompiledPattern]:
        return decide(p for p in self._patterns if p.regex.search(path) is not None)


@dataclass
class _TrieNode:
    patterns: list[CompiledPattern] = field(default_factory=list)
    children: dict[str, _TrieNode] = field(default_factory=dict)


def _is_literal(component: str) -> bool:
    return component not in ("", ".", "..") and not _WILDCARD_CHARS.intersection(component)


@dataclass(frozen=True)
class _Placement:
    """Where a pattern lives in the index."""

    bucket: str  # "prefix", "component", "suffix" or "general"
    keys: tuple[str, ...] = ()


def place(text: str) -> _Placement:
    """The narrowest bucket a pattern can live in without missing a path it matches."""
    body = text[1:] if text.startswith("!") else text
    if not body or body.endswith(" ") or "\\" in body:
        return _Placement("general")  # escapes and trailing spaces: keep it simple
    if body.endswith("/"):
        body = body[:-1]
    anchored = body.startswith("/") or "/" in body
    if body.startswith("/"):
        body = body[1:]
    components = body.split("/")
    if anchored:
        prefix: list[str] = []
        for component in components:
            if not _is_literal(component):
                break
            prefix.append(component)
        if prefix:
            return _Placement("prefix", tuple(prefix))
    literal = [c for c in components if _is_literal(c)]
    if literal:
        return _Placement("component", (max(literal, key=len),))
    if len(components) == 1 and not anchored:
        rest = components[0][1:]
        if components[0].startswith("*") and "." in rest and _is_literal(rest):
            return _Placement("suffix", (rest[rest.rindex(".") :],))
    return _Placement("general")


class IndexedMatcher:
    """Same answers as `NaiveMatcher`, trying only the patterns a path could match."""

    def __init__(self, patterns: Sequence[CompiledPattern]) -> None:
        self._root = _TrieNode()
        self._by_component: dict[str, list[CompiledPattern]] = {}
        self._by_suffix: dict[str, list[CompiledPattern]] = {}
        self._general: list[CompiledPattern] = []
        for pattern in patterns:
            placement = place(pattern.text)
            if placement.bucket == "prefix":
                node = self._root
                for component in placement.keys:
                    node = node.children.setdefault(component, _TrieNode())
                node.patterns.append(pattern)
            elif placement.bucket == "component":
                self._by_component.setdefault(placement.keys[0], []).append(pattern)
            elif placement.bucket == "suffix":
                self._by_suffix.setdefault(placement.keys[0], []).append(pattern)
            else:
                self._general.append(pattern)

    def candidates(self, path: str) -> list[CompiledPattern]:
        """Every pattern that could match `path` (each at most once)."""
        components = path.split("/")
        found: list[CompiledPattern] = list(self._general)
        node: _TrieNode | None = self._root
        for component in components:
            assert node is not None
            node = node.children.get(component)
            if node is None:
                break
            found.extend(node.patterns)
        by_component = self._by_component
        if by_component:
            for component in set(components):
                bucket = by_component.get(component)
                if bucket is not None:
                    found.extend(bucket)
        by_suffix = self._by_suffix
        if by_suffix:
            suffixes = set()
            for component in components:
                dot = component.rfind(".")
                if dot >= 0:
                    suffixes.add(component[dot:])
            for suffix in suffixes:
                bucket = by_suffix.get(suffix)
                if bucket is not None:
                    found.extend(bucket)
        return found

    def match(self, path: str) -> dict[int, CompiledPattern]:
        # `candidates` inlined: this is the hot loop of every evaluation.
        last: dict[int, CompiledPattern] = {}
        components = path.split("/")
        buckets: list[list[CompiledPattern]] = [self._general] if self._general else []
        node: _TrieNode | None = self._root
        for component in components:
            assert node is not None
            node = node.children.get(component)
            if node is None:
                break
            if node.patterns:
                buckets.append(node.patterns)
        by_component = self._by_component
        by_suffix = self._by_suffix
        seen_suffixes: set[str] = set()
        for component in set(components):
            bucket = by_component.get(component)
            if bucket is not None:
                buckets.append(bucket)
            if by_suffix:
                dot = component.rfind(".")
                if dot >= 0:
                    suffix = component[dot:]
                    if suffix not in seen_suffixes:
                        seen_suffixes.add(suffix)
                        bucket = by_suffix.get(suffix)
                        if bucket is not None:
                            buckets.append(bucket)
        for bucket in buckets:
            for pattern in bucket:
                if pattern.regex.search(path) is not None:
                    seen = last.get(pattern.group)
                    if seen is None or pattern.order > seen.order:
                        last[pattern.group] = pattern
        if not last:
            return last
        return {group: pattern for group, pattern in last.items() if pattern.include}
