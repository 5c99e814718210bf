"""Which folders the bubblewrap command line makes readable (pure: builds argv, runs nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkline.agents.sandbox import BubblewrapSandbox, python_installation


def _ro_binds(line: list[str]) -> list[str]:
    return [line[i + 1] for i, arg in enumerate(line) if arg == "--ro-bind"]


@pytest.mark.parametrize(
    ("readable_under_tmp", "hidden", "expected_bound"),
    [
        (True, False, True),  # a virtual environment made under /tmp stays usable
        (False, False, False),  # outside /tmp it is visible through the read-only root
        (True, True, False),  # a hidden path stays hidden, even if it holds the interpreter
    ],
)
def test_the_python_installation_is_readable_unless_hidden(
    tmp_path: Path, readable_under_tmp: bool, hidden: bool, expected_bound: bool
) -> None:
    base = tmp_path if readable_under_tmp else Path("/usr/lib")
    readable = (base / "venv").resolve() if readable_under_tmp else base
    if readable_under_tmp:
        readable.mkdir()
    worktree = tmp_path / "work"
    worktree.mkdir()
    hidden_paths = (tmp_path,) if hidden else ()
    sandbox = BubblewrapSandbox(worktree, hidden_paths=hidden_paths, readable_paths=(readable,))
    assert str(tmp_path).startswith("/tmp/")
    assert (str(readable) in _ro_binds(sandbox.command_line(["true"]))) is expected_bound


def test_the_default_readable_paths_are_this_interpreters() -> None:
    sandbox = BubblewrapSandbox(Path("/nonexistent"))
    assert sandbox.readable_paths == python_installation()
    assert all(path.is_absolute() for path in sandbox.readable_paths)
