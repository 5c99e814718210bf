"""Slash commands in issue and pull request comments: `/trunkline <command> [args]`.

Pure; performs no I/O. `parse_commands(body)` returns, in order, one `SlashCommand` per
well-formed command line and one `UnknownCommand` (with a short help text) per line that
starts with `/trunkline` but is not a command trunkline knows or has wrong arguments.

A command line is a line whose first word is `/trunkline` (after at most three spaces of
indentation, as in Markdown). Ignored, because a human does not see them as commands:
lines inside fenced code blocks (``` or ~~~), indented code (four spaces or a tab),
block quotes (`>`), and HTML comments (invisible in GitHub's rendering). Invisible format
characters (zero-width spaces, bidi controls) are removed first, so they can neither hide a
command nor smuggle one. Command names are case-insensitive; at most `MAX_COMMANDS` lines
are read per comment.

Permissions are not decided here: `required_permission` says what each command needs and
`permission_refusal` words the polite refusal; the handler asks GitHub (`get_permission`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from trunkline.github.model import Permission

PREFIX = "/trunkline"
MAX_COMMANDS = 10
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")


class CommandName(StrEnum):
    QUEUE = "queue"
    DEQUEUE = "dequeue"
    APPROVE = "approve"
    APPROVE_PLAN = "approve-plan"
    RETRY = "retry"
    TAKEOVER = "takeover"
    RESUME = "resume"
    CANCEL = "cancel"
    PRIORITY = "priority"
    EXPLAIN = "explain"


class PriorityLevel(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


_DESCRIPTIONS: dict[CommandName, str] = {
    CommandName.QUEUE: "put this pull request in the merge queue",
    CommandName.DEQUEUE: "take it out of the merge queue",
    CommandName.APPROVE: "approve the current head SHA (`/trunkline approve <sha>` names it)",
    CommandName.APPROVE_PLAN: "approve the agent's plan",
    CommandName.RETRY: "run the agents again",
    CommandName.TAKEOVER: "stop the agent; the branch and its locks become yours",
    CommandName.RESUME: "hand the branch back to the agent, with your commits",
    CommandName.CANCEL: "stop working on this item and release its locks",
    CommandName.PRIORITY: "set the queue priority: `high`, `normal` or `low`",
    CommandName.EXPLAIN: "say why this item is where it is",
}

HELP_TEXT = "trunkline understands:\n" + "\n".join(
    f"- `/trunkline {name.value}{' high|normal|low' if name is CommandName.PRIORITY else ''}`"
    f": {text}"
    for name, text in _DESCRIPTIONS.items()
)

# What each command needs from the commenter on the repository (GitHub roles).
_REQUIRED: dict[CommandName, Permission] = {
    CommandName.EXPLAIN: Permission.READ,
}


@dataclass(frozen=True)
class SlashCommand:
    name: CommandName
    argument: str | None
    line: int  # 1-based line of the comment body

    @property
    def priority(self) -> PriorityLevel | None:
        if self.name is not CommandName.PRIORITY or self.argument is None:
            return None
        return PriorityLevel(self.argument)

    @property
    def sha(self) -> str | None:
        """The commit SHA (prefix) `/trunkline approve <sha>` names, if any."""
        return self.argument if self.name is CommandName.APPROVE else None


@dataclass(frozen=True)
class UnknownCommand:
    text: str  # the line as written (without invisible characters)
    problem: str
    line: int

    @property
    def help(self) -> str:
        return f"{self.problem}\n\n{HELP_TEXT}"


ParsedCommand = SlashCommand | UnknownCommand


def _visible(body: str) -> str:
    text = "".join(c for c in body if unicodedata.category(c) != "Cf")
    # Keep line numbers: an HTML comment is replaced by as many newlines as it spanned.
    return _HTML_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _command_lines(body: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, raw in enumerate(_visible(body).replace("\r\n", "\n").split("\n"), 1):
        opened = _FENCE.match(raw)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        if raw.startswith(("    ", "\t")):
            continue
        stripped = raw.strip()
        if stripped.startswith(">"):
            continue
        words = stripped.split()
        if words and words[0].lower() == PREFIX:
            lines.append((number, stripped))
    return lines


def parse_line(text: str, line: int) -> ParsedCommand:
    """One `/trunkline ...` line -> a command, or an `UnknownCommand` saying what is wrong."""
    words = text.split()[1:]
    if not words:
        return UnknownCommand(text, "`/trunkline` needs a command.", line)
    word, args = words[0].lower(), [w.lower() for w in words[1:]]
    try:
        name = CommandName(word)
    except ValueError:
        return UnknownCommand(text, f"`{words[0][:40]}` is not a trunkline command.", line)
    if name is CommandName.PRIORITY:
        if len(args) != 1 or args[0] not in {p.value for p in PriorityLevel}:
            return UnknownCommand(
                text, "`/trunkline priority` takes one of `high`, `normal`, `low`.", line
            )
        return SlashCommand(name, args[0], line)
    if name is CommandName.APPROVE and args:
        if len(args) != 1 or not _SHA_PREFIX.fullmatch(args[0]):
            return UnknownCommand(
                text,
                "`/trunkline approve` takes nothing or a commit SHA (7 to 40 hex digits).",
                line,
            )
        return SlashCommand(name, args[0], line)
    if args:
        return UnknownCommand(text, f"`/trunkline {name.value}` takes no arguments.", line)
    return SlashCommand(name, None, line)


def parse_commands(body: str) -> tuple[ParsedCommand, ...]:
    """Every command line of a comment body, in order (at most `MAX_COMMANDS`)."""
    return tuple(parse_line(text, n) for n, text in _command_lines(body)[:MAX_COMMANDS])


def required_permission(name: CommandName) -> Permission:
    """The weakest repository role allowed to run `name` (write, except `explain`: read)."""
    return _REQUIRED.get(name, Permission.WRITE)


def permission_refusal(login: str, name: CommandName, has: Permission) -> str | None:
    """None when `has` suffices; otherwise the polite refusal to post."""
    needed = required_permission(name)
    if has.at_least(needed):
        return None
    return (
        f"Sorry @{login}, `/trunkline {name.value}` needs {needed.value} access to this "
        f"repository, and you have {has.value}. Ask a maintainer to run it for you."
    )
