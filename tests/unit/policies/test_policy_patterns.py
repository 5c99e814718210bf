"""Gitignore pattern semantics, negation, and the index agreeing with the naive matcher."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.policies.patterns import (
    IndexedMatcher,
    NaiveMatcher,
    compile_groups,
    place,
)


def _matches(patterns: list[str], path: str) -> bool:
    compiled = compile_groups([patterns])
    indexed = 0 in IndexedMatcher(compiled).match(path)
    naive = 0 in NaiveMatcher(compiled).match(path)
    assert indexed == naive
    return indexed


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # "**" crosses directories; "*" stays within one
        ("src/**", "src/a.py", True),
        ("src/**", "src/a/b/c.py", True),
        ("src/**", "src", False),
        ("src/**", "lib/src/a.py", False),
        ("src/*", "src/a.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("**/migrations/**", "migrations/0001.py", True),
        ("**/migrations/**", "app/db/migrations/0001.py", True),
        ("**/migrations/**", "app/migrations.py", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/x/y/c", False),
        # no slash: matches the name at any depth, as a file or a directory
        ("*.md", "README.md", True),
        ("*.md", "docs/guide/intro.md", True),
        ("*.md", "docs/intro.markdown", False),
        ("Makefile", "tools/Makefile", True),
        ("Makefile", "Makefile.old", False),
        # a trailing slash: a directory at any depth, never a file of that name
        ("docs/", "docs/index.md", True),
        ("docs/", "site/docs/index.md", True),
        ("docs/", "docs", False),
        # a leading or inner slash anchors at the repository root
        ("/docs/", "site/docs/index.md", False),
        ("/docs/", "docs/index.md", True),
        ("/x", "x", True),
        ("/x", "x/y", True),
        ("/x", "a/x", False),
        ("docs/api", "docs/api/index.md", True),
        ("docs/api", "site/docs/api/index.md", False),
        # character classes and single-character wildcards
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("v[0-9].md", "v3.md", True),
        ("v[0-9].md", "vx.md", False),
        # matching is case-sensitive, as in git on Linux
        ("*.MD", "readme.md", False),
        ("Docs/", "docs/a.md", False),
        ("docs/", "Docs/a.md", False),
    ],
)
def test_pattern_semantics(pattern: str, path: str, expected: bool) -> None:
    assert _matches([pattern], path) is expected


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["src/**", "!src/generated/**"], "src/app.py", True),
        (["src/**", "!src/generated/**"], "src/generated/x.py", False),
        # the last matching pattern decides, so a later inclusion wins again
        (["src/**", "!src/generated/**", "src/generated/keep.py"], "src/generated/keep.py", True),
        # a negation alone includes nothing
        (["!src/**"], "src/app.py", False),
        (["!src/**"], "lib/app.py", False),
    ],
)
def test_negation_last_match_wins(patterns: list[str], path: str, expected: bool) -> None:
    assert _matches(patterns, path) is expected


def test_match_reports_the_deciding_pattern() -> None:
    compiled = compile_groups([["**/*.py", "src/**"], ["docs/"]])
    matched = IndexedMatcher(compiled).match("src/a.py")
    assert set(matched) == {0}
    assert matched[0].text == "src/**"


@pytest.mark.parametrize(
    ("pattern", "bucket", "keys"),
    [
        ("src/api/**", "prefix", ("src", "api")),
        ("/Makefile", "prefix", ("Makefile",)),
        ("services/*/api/**", "prefix", ("services",)),
        ("docs/", "component", ("docs",)),
        ("**/migrations/**", "component", ("migrations",)),
        ("Makefile", "component", ("Makefile",)),
        ("*.md", "suffix", (".md",)),
        ("*.tar.gz", "suffix", (".gz",)),
        ("*", "general", ()),
        ("**/*.py", "general", ()),
        ("foo\\*", "general", ()),
        ("!src/**", "prefix", ("src",)),
    ],
)
def test_index_placement(pattern: str, bucket: str, keys: tuple[str, ...]) -> None:
    placement = place(pattern)
    assert (placement.bucket, placement.keys) == (bucket, keys)


def test_index_narrows_candidates() -> None:
    compiled = compile_groups([[f"services/s{i}/**"] for i in range(50)] + [["*.md"]])
    candidates = IndexedMatcher(compiled).candidates("services/s7/src/main.py")
    assert [p.text for p in candidates] == ["services/s7/**"]


_SEGMENT = st.sampled_from(
    ["a", "b", "ab", "a.md", "x.py", ".hidden", "*", "**", "?", "a*", "*.md", "[ab]", "c d", "!"]
)
_PATTERN = st.builds(
    lambda negate, lead, parts, trail: (
        ("!" if negate else "") + ("/" if lead else "") + "/".join(parts) + ("/" if trail else "")
    ),
    st.booleans(),
    st.booleans(),
    st.lists(_SEGMENT, min_size=1, max_size=4),
    st.booleans(),
)
_PATH = st.lists(
    st.sampled_from(["a", "b", "ab", "a.md", "x.py", ".hidden", "c d", "A", "!", ""]),
    min_size=1,
    max_size=5,
).map("/".join)


def _compilable(patterns: list[str]) -> list[str]:
    good = []
    for text in patterns:
        try:
            compile_groups([[text]])
        except ValueError:
            continue
        good.append(text)
    return good


@settings(max_examples=400, deadline=None)
@given(
    groups=st.lists(st.lists(_PATTERN, min_size=1, max_size=4), min_size=1, max_size=5),
    paths=st.lists(_PATH, min_size=1, max_size=10),
)
def test_indexed_matcher_equals_naive(groups: list[list[str]], paths: list[str]) -> None:
    compiled = compile_groups([_compilable(group) for group in groups])
    indexed, naive = IndexedMatcher(compiled), NaiveMatcher(compiled)
    for path in paths:
        assert indexed.match(path) == naive.match(path)


@settings(max_examples=400, deadline=None)
@given(
    patterns=st.lists(st.text(alphabet="ab./*?!\\ [-]", min_size=1, max_size=10), max_size=6),
    paths=st.lists(st.text(alphabet="ab./ !*", max_size=12), min_size=1, max_size=8),
)
def test_indexed_matcher_equals_naive_for_raw_text(patterns: list[str], paths: list[str]) -> None:
    compiled = compile_groups([_compilable(patterns)])
    indexed, naive = IndexedMatcher(compiled), NaiveMatcher(compiled)
    for path in paths:
        assert indexed.match(path) == naive.match(path)
