"""The slash command parser and the permission rule: table-driven, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.bot.slash_commands import (
    HELP_TEXT,
    MAX_COMMANDS,
    CommandName,
    PriorityLevel,
    SlashCommand,
    UnknownCommand,
    parse_commands,
    permission_refusal,
    required_permission,
)
from trunkline.github.model import Permission


def names(body: str) -> list[tuple[str, str | None]]:
    return [
        (c.name.value, c.argument) if isinstance(c, SlashCommand) else ("?", c.problem)
        for c in parse_commands(body)
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/trunkline takeover", [("takeover", None)]),
        ("/trunkline resume\n", [("resume", None)]),
        ("  /trunkline   Approve-Plan  ", [("approve-plan", None)]),
        ("/TRUNKLINE QUEUE", [("queue", None)]),
        ("/trunkline priority high", [("priority", "high")]),
        ("/trunkline priority LOW", [("priority", "low")]),
        (
            "please\n/trunkline dequeue\nthanks\n/trunkline explain",
            [("dequeue", None), ("explain", None)],
        ),
        ("/trunkline approve\r\n/trunkline retry\r\n", [("approve", None), ("retry", None)]),
        ("/trunkline cancel", [("cancel", None)]),
        ("/trunkline approve 1a2B3c4", [("approve", "1a2b3c4")]),  # names the SHA it approves
        ("no commands here", []),
        ("see /trunkline takeover in the docs", []),  # not at the start of the line
        ("/trunklines takeover", []),
        ("```\n/trunkline takeover\n```", []),
        (
            "~~~~\n/trunkline takeover\n~~~\n/trunkline approve\n~~~~\n/trunkline retry",
            [("retry", None)],
        ),
        ("```sh\n/trunkline takeover", []),  # an unclosed fence runs to the end
        ("> /trunkline takeover", []),
        (">/trunkline takeover", []),
        ("    /trunkline takeover", []),  # indented code
        ("\t/trunkline takeover", []),
        ("   /trunkline takeover", [("takeover", None)]),  # three spaces is still text
        ("<!-- /trunkline approve -->", []),
        ("<!--\n/trunkline approve\n-->\n/trunkline retry", [("retry", None)]),
        ("<!-- never closed\n/trunkline approve", []),
        ("/trunk\u200bline approve", [("approve", None)]),  # invisible characters removed
        ("\u200b/trunkline approve", [("approve", None)]),
    ],
)
def test_bot_slash_commands_are_parsed(body: str, expected: list[tuple[str, str | None]]) -> None:
    assert names(body) == expected


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("/trunkline", "needs a command"),
        ("/trunkline merge-now", "`merge-now` is not a trunkline command"),
        ("/trunkline priority", "takes one of"),
        ("/trunkline priority urgent", "takes one of"),
        ("/trunkline priority high now", "takes one of"),
        ("/trunkline takeover now", "takes no arguments"),
        ("/trunkline approve abc12", "takes nothing or a commit SHA"),  # too short
        ("/trunkline approve please", "takes nothing or a commit SHA"),
        ("/trunkline approve 1a2b3c4 5d6e7f8", "takes nothing or a commit SHA"),
        ("/trunkline approve-plan 1a2b3c4", "takes no arguments"),
    ],
)
def test_bot_slash_unknown_commands_come_with_help(line: str, problem: str) -> None:
    (parsed,) = parse_commands(f"hello\n{line}")
    assert isinstance(parsed, UnknownCommand)
    assert problem in parsed.problem
    assert parsed.line == 2
    assert parsed.help.endswith(HELP_TEXT)
    for name in CommandName:
        assert f"/trunkline {name.value}" in HELP_TEXT


def test_bot_slash_lines_are_numbered_and_capped() -> None:
    body = "x\n<!--\n\n-->\n/trunkline takeover"
    (parsed,) = parse_commands(body)
    assert isinstance(parsed, SlashCommand)
    assert parsed.line == 5
    assert parse_commands("\n".join(["/trunkline explain"] * 50)).__len__() == MAX_COMMANDS


def test_bot_slash_priority_level() -> None:
    (parsed,) = parse_commands("/trunkline priority normal")
    assert isinstance(parsed, SlashCommand)
    assert parsed.priority is PriorityLevel.NORMAL
    (other,) = parse_commands("/trunkline takeover")
    assert isinstance(other, SlashCommand)
    assert other.priority is None


@pytest.mark.parametrize(
    ("name", "has", "allowed"),
    [
        (CommandName.TAKEOVER, Permission.WRITE, True),
        (CommandName.TAKEOVER, Permission.ADMIN, True),
        (CommandName.RESUME, Permission.MAINTAIN, True),
        (CommandName.TAKEOVER, Permission.TRIAGE, False),
        (CommandName.RESUME, Permission.READ, False),
        (CommandName.APPROVE, Permission.NONE, False),
        (CommandName.EXPLAIN, Permission.READ, True),
        (CommandName.EXPLAIN, Permission.NONE, False),
    ],
)
def test_bot_slash_permissions(name: CommandName, has: Permission, allowed: bool) -> None:
    refusal = permission_refusal("carol", name, has)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert refusal.startswith("Sorry @carol")
        assert required_permission(name).value in refusal
        assert has.value in refusal


@given(st.text(max_size=400))
def test_bot_slash_parser_never_raises_and_respects_the_cap(body: str) -> None:
    parsed = parse_commands(body)
    assert len(parsed) <= MAX_COMMANDS
    for command in parsed:
        assert command.line >= 1


@given(st.lists(st.sampled_from(list(CommandName)), min_size=1, max_size=5), st.text(max_size=50))
def test_bot_slash_fenced_commands_are_never_seen(commands: list[CommandName], noise: str) -> None:
    inner = "\n".join(f"/trunkline {c.value}" for c in commands)
    noise = noise.replace("`", "").replace("~", "")
    assert parse_commands(f"{noise}\n```\n{inner}\n```\n") == ()
    assert all(
        isinstance(c, SlashCommand) for c in parse_commands(inner.replace("priority", "explain"))
    )
