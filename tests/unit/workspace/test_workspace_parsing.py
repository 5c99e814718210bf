"""Pure parts of the workspace: diff parsers, merge-tree parser, credentials, names."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkline.workspace.credentials import credential_env
from trunkline.workspace.diffparse import combine, parse_name_status, parse_numstat
from trunkline.workspace.integration import parse_merge_tree
from trunkline.workspace.model import (
    ChangeKind,
    DiffDescription,
    FileChange,
    RepositorySpec,
    slugify,
    work_branch,
)

_LETTER = {
    ChangeKind.ADDED: "A",
    ChangeKind.MODIFIED: "M",
    ChangeKind.DELETED: "D",
    ChangeKind.RENAMED: "R",
    ChangeKind.COPIED: "C",
    ChangeKind.TYPE_CHANGED: "T",
}

paths = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
    min_size=1,
    max_size=30,
)
counts = st.one_of(st.none(), st.integers(min_value=0, max_value=10_000))


@st.composite
def changes(draw: st.DrawFn) -> FileChange:
    kind = draw(st.sampled_from(list(ChangeKind)))
    paired = kind in (ChangeKind.RENAMED, ChangeKind.COPIED)
    added = draw(counts)
    return FileChange(
        path=draw(paths),
        kind=kind,
        old_path=draw(paths) if paired else None,
        added_lines=added,
        deleted_lines=None if added is None else draw(st.integers(0, 10_000)),
        similarity=draw(st.integers(0, 100)) if paired else None,
    )


def render(files: list[FileChange]) -> tuple[bytes, bytes]:
    """What `git diff -z --name-status -M` and `--numstat -M` print for `files`."""
    names, stats = b"", b""
    for change in files:
        score = "" if change.similarity is None else f"{change.similarity:03d}"
        added = "-" if change.added_lines is None else str(change.added_lines)
        deleted = "-" if change.deleted_lines is None else str(change.deleted_lines)
        path = os.fsencode(change.path)
        if change.old_path is not None:
            old = os.fsencode(change.old_path)
            names += f"{_LETTER[change.kind]}{score}".encode() + b"\0" + old + b"\0" + path + b"\0"
            stats += f"{added}\t{deleted}\t".encode() + b"\0" + old + b"\0" + path + b"\0"
        else:
            names += _LETTER[change.kind].encode() + b"\0" + path + b"\0"
            stats += f"{added}\t{deleted}\t".encode() + path + b"\0"
    return names, stats


@settings(deadline=None)
@given(st.lists(changes(), max_size=12, unique_by=lambda c: (c.old_path, c.path)))
def test_diff_parsers_round_trip(files: list[FileChange]) -> None:
    names, stats = render(files)
    assert combine(parse_name_status(names), parse_numstat(stats)) == tuple(files)


def test_real_git_output_with_tabs_and_newlines_in_names() -> None:
    names = b"M\0a\tb.txt\0R087\0old\nname\0new name\0D\0gone\0"
    stats = b"3\t1\ta\tb.txt\0" + b"2\t2\t\0old\nname\0new name\0" + b"0\t4\tgone\0"
    files = combine(parse_name_status(names), parse_numstat(stats))
    diff = DiffDescription("b" * 40, "h" * 40, files)
    assert diff.modified == ("a\tb.txt",)
    assert diff.renamed == (("old\nname", "new name"),)
    assert diff.deleted == ("gone",)
    assert diff.lines_changed == 12
    assert diff.touched_paths == ("a\tb.txt", "gone", "new name", "old\nname")


@pytest.mark.parametrize(
    "raw",
    [b"M\0path", b"X\0path\0", b"R100\0only-old\0", b"M\0"],
)
def test_malformed_name_status_is_an_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_name_status(raw)


@pytest.mark.parametrize("raw", [b"1\t2\0", b"x\t1\tpath\0", b"1\t1\t\0old\0"])
def test_malformed_numstat_is_an_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_numstat(raw)


def test_non_utf8_paths_survive() -> None:
    raw = b"A\0caf\xe9.txt\0"
    (entry,) = parse_name_status(raw)
    assert os.fsencode(entry.path) == b"caf\xe9.txt"


@pytest.mark.parametrize(
    ("status", "stdout", "expected"),
    [
        (0, b"abc123\0", ("abc123", ())),
        (1, b"abc123\0f\0dir/g h\0f\0\0", ("abc123", ("dir/g h", "f"))),
        (1, b"abc123\0\0", ("abc123", ())),
    ],
)
def test_parse_merge_tree(
    status: int, stdout: bytes, expected: tuple[str, tuple[str, ...]]
) -> None:
    assert parse_merge_tree(status, stdout) == expected


def test_parse_merge_tree_rejects_errors() -> None:
    with pytest.raises(ValueError, match="status 128"):
        parse_merge_tree(128, b"")


def test_credential_env_carries_the_token_only_in_a_scoped_header() -> None:
    env = credential_env("https://ghe.example.com:8443/acme/widgets.git", "ghs_abc")
    assert env["GIT_CONFIG_KEY_0"] == "http.https://ghe.example.com:8443/.extraHeader"
    header = env["GIT_CONFIG_VALUE_0"].removeprefix("Authorization: Basic ")
    assert base64.b64decode(header) == b"x-access-token:ghs_abc"
    assert env["GIT_CONFIG_COUNT"] == "2"
    assert credential_env("https://example.com/r.git", None) == {}
    assert credential_env("file:///tmp/r.git", "ghs_abc") == {}


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Fix the Widget!", "fix-the-widget"),
        ("  ", "work"),
        ("Ünïcode & spaces", "n-code-spaces"),
        ("a" * 80, "a" * 40),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_work_branch() -> None:
    assert work_branch(42, "Add login") == "trunkline/issue-42-add-login"
    with pytest.raises(ValueError, match="positive"):
        work_branch(0, "x")


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("acme", "https://example.com/acme.git"),
        ("acme/../x", "https://example.com/x.git"),
        ("acme/w", "https://x-access-token:ghs_1@example.com/acme/w.git"),
    ],
)
def test_repository_spec_rejects_bad_names_and_credentials(name: str, url: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        RepositorySpec(name, url)
