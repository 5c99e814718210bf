"""The file tools on a real directory: confinement to the worktree, scope, caps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trunkline.agents.roles import EXECUTOR_TOOLS, READ_ONLY_TOOLS
from trunkline.agents.tools import MAX_READ_BYTES, MAX_SEARCH_RESULTS, Toolbox


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    root = tmp_path / "wt"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "src" / "a.py").write_text("def a():\n    return 1  # TODO\n")
    (root / "src" / "pkg" / "b.py").write_text("TODO = 2\n<!-- hidden -->\n")
    (root / "bin.dat").write_bytes(b"\x00\x01\x02")
    (tmp_path / "outside.txt").write_text("outside")
    (root / "src" / "out-link").symlink_to(tmp_path / "outside.txt")
    (root / "src" / "in-link.py").symlink_to("a.py")
    (root / "dirlink").symlink_to(tmp_path)
    return root


def toolbox(root: Path, scope: tuple[str, ...] = ("src/**",)) -> Toolbox:
    return Toolbox(root, EXECUTOR_TOOLS, write_scope=scope)


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        ("read_file", {"path": "../outside.txt"}, "'..' is refused"),
        ("read_file", {"path": "/etc/hostname"}, "absolute paths are refused"),
        ("read_file", {"path": "~/x"}, "absolute paths are refused"),
        ("read_file", {"path": "C:/x"}, "absolute paths are refused"),
        ("read_file", {"path": "src/out-link"}, "resolves outside the worktree"),
        ("read_file", {"path": "dirlink/outside.txt"}, "resolves outside the worktree"),
        ("read_file", {"path": ".git/config"}, ".git internals"),
        ("read_file", {"path": "src/\x00"}, "NUL"),
        ("list_files", {"path": "dirlink"}, "resolves outside the worktree"),
        ("search", {"pattern": "x", "path": "../"}, "'..' is refused"),
        ("search", {"pattern": "(", "path": "."}, "invalid regular expression"),
        ("search", {"pattern": "x" * 201}, "pattern longer"),
        ("write_file", {"path": "src/in-link.py", "content": "x"}, "writing through symlinks"),
        ("write_file", {"path": "src/out-link", "content": "x"}, "resolves outside"),
        ("write_file", {"path": "README.md", "content": "x"}, "outside the paths the plan"),
        ("write_file", {"path": ".git/hooks/post-commit", "content": "x"}, ".git internals"),
        ("write_file", {"path": "src/a.py", "content": "x" * 1_000_001}, "larger than"),
        ("run_command", {"command": "pytest"}, "not allowlisted"),
        ("delete_everything", {}, "unknown tool"),
    ],
)
def test_agents_tool_refusals(
    worktree: Path, tool: str, arguments: dict[str, object], reason: str
) -> None:
    before = sorted(str(p) for p in worktree.parent.rglob("*"))
    outcome = toolbox(worktree).execute(tool, arguments)
    assert outcome.refused, outcome.content
    assert outcome.is_error
    assert outcome.refusal_reason is not None
    assert reason in outcome.refusal_reason
    assert sorted(str(p) for p in worktree.parent.rglob("*")) == before
    assert (worktree.parent / "outside.txt").read_text() == "outside"


def test_agents_tool_invalid_arguments_are_errors_not_refusals(worktree: Path) -> None:
    outcome = toolbox(worktree).execute("read_file", {"path": "src/a.py", "mode": "rw"})
    assert outcome.is_error
    assert not outcome.refused
    assert "invalid arguments" in outcome.content


def test_agents_read_list_search_write(worktree: Path) -> None:
    tools = toolbox(worktree)
    listing = tools.execute("list_files", {"path": "."}).content
    assert "src/a.py" in listing
    assert "src/pkg/b.py" in listing
    assert ".git/config" not in listing
    read = tools.execute("read_file", {"path": "src/pkg/b.py"}).content
    assert "TODO = 2" in read
    assert "hidden" not in read
    assert "untrusted-data" in read
    assert "binary file" in tools.execute("read_file", {"path": "bin.dat"}).content
    inside_link = tools.execute("read_file", {"path": "src/in-link.py"})
    assert "def a()" in inside_link.content
    found = tools.execute("search", {"pattern": r"TODO"}).content
    assert "src/a.py:2:" in found
    assert "src/pkg/b.py:1:" in found
    wrote = tools.execute("write_file", {"path": "src/new/c.py", "content": "C = 3\n"})
    assert not wrote.is_error, wrote.content
    assert (worktree / "src" / "new" / "c.py").read_text() == "C = 3\n"
    assert tools.written == ["src/new/c.py"]


def test_agents_read_only_toolbox_has_no_write_or_commands(worktree: Path) -> None:
    tools = Toolbox(worktree, READ_ONLY_TOOLS)
    assert {s.name for s in tools.specs} == {"list_files", "read_file", "search"}
    assert tools.execute("write_file", {"path": "src/a.py", "content": "x"}).refused
    assert tools.execute("run_command", {"command": "ls"}).refused


def test_agents_caps_on_read_and_search(worktree: Path) -> None:
    (worktree / "src" / "big.py").write_text("x = 1\n" * (MAX_READ_BYTES // 4))
    tools = toolbox(worktree)
    assert "truncated at" in tools.execute("read_file", {"path": "src/big.py"}).content
    found = tools.execute("search", {"pattern": "x = 1", "path": "src"}).content
    assert f"capped at {MAX_SEARCH_RESULTS} results" in found


def test_agents_write_scope_allows_declared_patterns_only(worktree: Path) -> None:
    tools = toolbox(worktree, scope=("docs/*.md", "src/pkg/"))
    assert not tools.execute("write_file", {"path": "docs/a.md", "content": "x"}).is_error
    assert not tools.execute("write_file", {"path": "src/pkg/z.py", "content": "x"}).is_error
    assert tools.execute("write_file", {"path": "docs/sub/a.md", "content": "x"}).refused
    assert tools.execute("write_file", {"path": "src/a.py", "content": "x"}).refused
    assert os.path.exists(worktree / "docs" / "a.md")
