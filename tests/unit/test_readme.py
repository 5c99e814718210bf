"""The README stays true: its set-up commands are what CI runs; it documents every setting."""

from __future__ import annotations

import re

from prerequisites import REPO_ROOT

from trunkline.settings import Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_has_exactly_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2, commands


def test_ci_runs_the_readme_test_command() -> None:
    test_command = _quick_start_commands()[1]
    assert test_command.endswith("python -m pytest"), test_command
    assert "pip install -q -e '.[test]'" in CI_RUN
    assert re.search(r"^exec python -m pytest$", CI_RUN, flags=re.MULTILINE)


def test_every_setting_is_documented() -> None:
    missing = [
        f"TRUNKLINE_{name.upper()}"
        for name in Settings.model_fields
        if f"TRUNKLINE_{name.upper()}`" not in README
    ]
    assert not missing, f"README's settings table lacks {missing}"


def test_every_command_is_mentioned() -> None:
    import argparse

    from trunkline.cli import build_parser

    parser = build_parser()
    (commands,) = [
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ]
    missing = [name for name in commands.choices if f"trunkline {name}" not in README]
    assert not missing, f"README does not mention {missing}"
