"""Lock holder names: who a lease belongs to, as one string, made and read in one place.

Pure; performs no I/O. Holders are plain strings in the `locks` and `lock_waiters` tables:

- `issue-<n>`: the agents of the work item for issue `<n>`;
- `human:<login>:issue-<n>`: the person `<login>` who took the work item `<n>` over. The
  holder names the item as well as the person, so one person who takes over several items
  holds each item's leases apart: cancelling or resuming one item moves or releases that
  item's leases only. (GitHub logins contain only letters, digits and hyphens, so the `:`
  separators are unambiguous.)
- `human:<login>`: the holder takeovers used before the item was part of the name
  (`legacy_human_holder`). Leases still held under it are handed back item by item, limited
  to the subsystems the item recorded (docs/locks.md, Holders).

Any other string is a holder of some other kind (a benchmark, a test) and is shown as is.
"""

from __future__ import annotations

from dataclasses import dataclass

HUMAN_PREFIX = "human:"
ISSUE_PREFIX = "issue-"


def work_item_holder(issue: int) -> str:
    """The holder of the agents of the work item for `issue`."""
    return f"{ISSUE_PREFIX}{issue}"


def human_holder(login: str, issue: int) -> str:
    """The holder of `login` while they have the work item for `issue` taken over."""
    return f"{HUMAN_PREFIX}{login}:{work_item_holder(issue)}"


def legacy_human_holder(login: str) -> str:
    """The one holder a person's takeovers shared before the item was part of the name."""
    return f"{HUMAN_PREFIX}{login}"


@dataclass(frozen=True)
class Holder:
    """A holder name read back: `login` is set for people, `issue` for one work item."""

    text: str
    login: str | None = None
    issue: int | None = None

    @property
    def is_human(self) -> bool:
        return self.login is not None

    @property
    def is_legacy_human(self) -> bool:
        """`human:<login>`, shared by every item the person took over."""
        return self.login is not None and self.issue is None


def _issue_of(text: str) -> int | None:
    number = text.removeprefix(ISSUE_PREFIX)
    if text.startswith(ISSUE_PREFIX) and number.isascii() and number.isdigit():
        return int(number)
    return None


def parse_holder(text: str) -> Holder:
    """Read a holder name; an unknown shape is a `Holder` with neither login nor issue."""
    issue = _issue_of(text)
    if issue is not None:
        return Holder(text, issue=issue)
    if not text.startswith(HUMAN_PREFIX):
        return Holder(text)
    rest = text.removeprefix(HUMAN_PREFIX)
    login, _, item = rest.partition(":")
    if not login:
        return Holder(text)
    if not item:
        return Holder(text, login=login)
    issue = _issue_of(item)
    return Holder(text) if issue is None else Holder(text, login=login, issue=issue)


def describe_holder(text: str) -> str:
    """For people: `issue-12` -> "work item #12 (issue-12)", `human:bob:issue-12` -> "@bob
    (took over work item #12)", `human:bob` -> "@bob (took over a work item)"."""
    holder = parse_holder(text)
    if holder.login is not None and holder.issue is not None:
        return f"@{holder.login} (took over work item #{holder.issue})"
    if holder.login is not None:
        return f"@{holder.login} (took over a work item)"
    if holder.issue is not None:
        return f"work item #{holder.issue} ({text})"
    return text
