"""CODEOWNERS text -> the owners of a path, with GitHub's "last matching line wins" rule.

Pure; performs no I/O; never raises on any text. Each non-blank line that is not a comment
is `PATTERN OWNER...`; text after a `#` token is a comment. A line with a pattern and no
owners makes matching paths owner-less (that is how CODEOWNERS un-assigns). Owners are
`@user` (kept as the login, "user"), `@org/team` (kept as written) or an email address.
Lines GitHub would reject are skipped: `!` negation (unsupported by CODEOWNERS), patterns
that do not compile, and unparsable owner tokens (the rest of the line still counts).
Patterns follow the same gitignore rules as the policy (see `trunkline.policies.patterns`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trunkline.policies.model import compile_pattern, normalize_principal
from trunkline.policies.patterns import CompiledPattern, IndexedMatcher

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class CodeOwnersRule:
    line: int
    pattern: str
    owners: tuple[str, ...]


def _owner(token: str) -> str | None:
    if _EMAIL.fullmatch(token):
        return token
    try:
        return normalize_principal(token) if token.startswith("@") else None
    except ValueError:
        return None


class CodeOwners:
    """Parsed CODEOWNERS; `owners_of(path)` applies the last matching rule."""

    def __init__(self, rules: tuple[CodeOwnersRule, ...], matcher: IndexedMatcher) -> None:
        self.rules = rules
        self._matcher = matcher

    def rule_for(self, path: str) -> CodeOwnersRule | None:
        matched = self._matcher.match(path)
        return self.rules[max(matched)] if matched else None

    def owners_of(self, path: str) -> tuple[str, ...]:
        rule = self.rule_for(path)
        return rule.owners if rule is not None else ()


def parse_codeowners(text: str) -> CodeOwners:
    """Parse CODEOWNERS text; lines GitHub would reject are skipped, never raised on."""
    rules: list[CodeOwnersRule] = []
    patterns: list[CompiledPattern] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#") or tokens[0].startswith("!"):
            continue
        pattern_text, *rest = tokens
        owners: list[str] = []
        for token in rest:
            if token.startswith("#"):
                break
            owner = _owner(token)
            if owner is not None and owner not in owners:
                owners.append(owner)
        try:
            compiled = compile_pattern(pattern_text)
        except ValueError:
            continue
        if not compiled.include or compiled.regex is None:
            continue
        group = len(rules)
        rules.append(CodeOwnersRule(number, pattern_text, tuple(owners)))
        patterns.append(CompiledPattern(pattern_text, group, 0, True, compiled.regex))
    return CodeOwners(tuple(rules), IndexedMatcher(patterns))
