"""Issue lists by label and issue event logs: the JSON parser and the recording fake."""

from __future__ import annotations

from datetime import UTC, datetime

from trunkline.github import parse
from trunkline.github.fake import FakeGitHub
from trunkline.pipeline.reconciler import latest_label_event

REPO = "acme/widgets"


def test_parse_reads_a_labeled_event_with_its_actor_and_label() -> None:
    event = parse.issue_event(
        {
            "id": 9,
            "event": "labeled",
            "actor": {"login": "maya", "type": "User"},
            "created_at": "2026-01-02T03:04:05Z",
            "label": {"name": "agent", "color": "ededed"},
        }
    )
    assert (event.id, event.event, event.label) == (9, "labeled", "agent")
    assert event.actor.login == "maya"
    assert event.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    closed = parse.issue_event({"id": 10, "event": "closed", "actor": None})
    assert (closed.label, closed.actor.login) == (None, "ghost")


def test_fake_lists_open_issues_by_label_and_logs_who_changed_labels() -> None:
    github = FakeGitHub()
    github.add_repo(REPO)
    first = github.add_issue(REPO, title="one").number
    second = github.add_issue(REPO, title="two").number
    github.add_issue(REPO, title="three", labels=["bug"])
    github.label_issue(REPO, first, "agent", by="maya")
    github.label_issue(REPO, second, "Agent", by="oscar")
    github.close_issue(REPO, second)
    github.remove_label(REPO, first, "agent")  # the App removes it
    github.add_labels(REPO, first, ["agent"])

    assert [i.number for i in github.list_issues(REPO, labels=["agent"])] == [first]
    assert [i.number for i in github.list_issues(REPO, labels=["agent"], state="all")] == [
        second,
        first,
    ]
    assert github.list_issues(REPO, labels=["agent"], state="all", limit=1)[0].number == second
    log = github.list_issue_events(REPO, first)
    assert [(e.event, e.actor.login, e.label) for e in log] == [
        ("labeled", "maya", "agent"),
        ("unlabeled", "trunkline[bot]", "agent"),
        ("labeled", "trunkline[bot]", "agent"),
    ]
    latest = latest_label_event(log, "labeled", "AGENT")
    assert latest is not None
    assert latest.actor.login == "trunkline[bot]"
    assert latest_label_event(log, "labeled", "bug") is None
