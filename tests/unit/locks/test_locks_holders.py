"""Lock holder names: made and read back in one place (`trunkline.locks.holders`)."""

from __future__ import annotations

import pytest

from trunkline.locks.holders import (
    Holder,
    describe_holder,
    human_holder,
    legacy_human_holder,
    parse_holder,
    work_item_holder,
)


def test_names() -> None:
    assert work_item_holder(12) == "issue-12"
    assert human_holder("alice", 12) == "human:alice:issue-12"
    assert legacy_human_holder("alice") == "human:alice"
    assert human_holder("alice", 1) != human_holder("alice", 2)


@pytest.mark.parametrize(
    ("text", "login", "issue", "legacy", "described"),
    [
        ("issue-12", None, 12, False, "work item #12 (issue-12)"),
        ("human:bob:issue-12", "bob", 12, False, "@bob (took over work item #12)"),
        ("human:bob", "bob", None, True, "@bob (took over a work item)"),
        ("human:b-o-b:issue-3", "b-o-b", 3, False, "@b-o-b (took over work item #3)"),
        ("human:", None, None, False, "human:"),
        ("human:bob:pr-3", None, None, False, "human:bob:pr-3"),
        ("issue-x", None, None, False, "issue-x"),
        ("worker-7", None, None, False, "worker-7"),
    ],
)
def test_parse_and_describe(
    text: str, login: str | None, issue: int | None, legacy: bool, described: str
) -> None:
    holder = parse_holder(text)
    assert holder == Holder(text, login, issue)
    assert holder.is_legacy_human is legacy
    assert holder.is_human is (login is not None)
    assert describe_holder(text) == described


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        (None, ()),
        ("issue-4", ()),
        ("human:dora:issue-4", (("dora", "took over the work item"),)),
        ("human:dora", (("dora", "took over the work item"),)),
    ],
)
def test_a_person_who_took_the_item_over_is_a_contributor(
    holder: str | None, expected: tuple[tuple[str, str], ...]
) -> None:
    from trunkline.bot.gate_runner import contributors_of

    assert contributors_of((), holder) == expected
