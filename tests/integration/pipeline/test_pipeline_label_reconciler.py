"""The dispatch pipeline's label reconciler on SQLite with the GitHub fake: labels and label
removals whose `issues` webhook never arrived are decided as if it had, exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline_harness import INSTALLATION, MAINTAINER, OUTSIDER, REPO, Harness, make_harness
from pipeline_harness import labeled_payload as webhook
from sqlalchemy import func, insert, select

from trunkline.github.port import GitHubPort
from trunkline.pipeline.reconciler import LabelReconciler
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.store.tables import Delivery, Job

LABEL = "agent"


def _policy() -> Policy:
    return Policy.model_validate({"version": 1})


def _reconciler(harness: Harness, noted: dict[str, int]) -> LabelReconciler:
    def github_for(installation: int | None) -> GitHubPort:
        assert installation == INSTALLATION
        return harness.github

    return LabelReconciler(
        harness.service,
        github_for,
        harness.service.clock,
        installation_for=noted.get,
        note_installation=lambda repo, inst: noted.__setitem__(repo, inst or 0),
        noted_repositories=lambda: tuple(noted),
    )


def _store_delivery(harness: Harness) -> None:
    """A webhook of the repository stored before the crash (how a fresh process knows it)."""
    with harness.engine.begin() as conn:
        conn.execute(
            insert(Delivery).values(
                delivery_id="earlier",
                event="issues",
                action="opened",
                installation_id=INSTALLATION,
                repo_full_name=REPO,
                received_at=datetime.now(UTC),
                state="processed",
                payload=json.dumps({"action": "opened"}),
            )
        )


def _planner_jobs(harness: Harness) -> int:
    with harness.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(Job).where(Job.key.like("%:run-planner"))
            ).scalar_one()
        )


def test_a_label_whose_webhook_was_lost_starts_exactly_one_item(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, _policy())
    _store_delivery(harness)  # the process knows the repository only from stored deliveries
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.github.label_issue(REPO, issue, LABEL, by=MAINTAINER)  # the webhook is lost
    reconciler = _reconciler(harness, {})

    healed = reconciler.tick()

    assert [(h.issue, h.event, h.by) for h in healed] == [(issue, "labeled", MAINTAINER)]
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert (item.state, item.requester, item.run) == (WorkState.PLANNING, MAINTAINER, 1)
    assert _planner_jobs(harness) == 1
    # further ticks and the real webhook arriving late change nothing
    assert reconciler.tick() == []
    harness.deliver("issues", webhook(issue, MAINTAINER))
    after = harness.service.item(REPO, issue)
    assert after is not None
    assert after.version == item.version
    assert _planner_jobs(harness) == 1


def test_an_outsiders_label_is_refused_once_not_on_every_tick(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, _policy())
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.github.label_issue(REPO, issue, LABEL, by=OUTSIDER)
    reconciler = _reconciler(harness, {REPO: INSTALLATION})

    assert [h.by for h in reconciler.tick()] == [OUTSIDER]
    harness.drain()
    for _ in range(3):
        assert reconciler.tick() == []
        harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.REFUSED
    comments = harness.github.comments_on(REPO, issue)
    assert len(comments) == 1
    assert OUTSIDER in comments[0].body


def test_a_live_item_is_untouched(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, _policy())
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.github.label_issue(REPO, issue, LABEL, by=MAINTAINER)
    harness.deliver("issues", webhook(issue, MAINTAINER))  # delivered as usual
    before = harness.service.item(REPO, issue)
    assert before is not None
    assert before.state is WorkState.PLANNING
    reconciler = _reconciler(harness, {REPO: INSTALLATION})

    assert reconciler.tick() == []

    after = harness.service.item(REPO, issue)
    assert after is not None
    assert after.version == before.version
    # a live item still labeled needs no event log read
    assert harness.github.calls_of("list_issue_events") == []


def test_a_label_removed_before_execution_cancels_the_item(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, _policy())
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.github.label_issue(REPO, issue, LABEL, by=MAINTAINER)
    harness.deliver("issues", webhook(issue, MAINTAINER))
    harness.github.unlabel_issue(REPO, issue, LABEL, by="mona")  # the webhook is lost
    reconciler = _reconciler(harness, {REPO: INSTALLATION})

    assert [(h.event, h.by) for h in reconciler.tick()] == [("unlabeled", "mona")]

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.CANCELLED
    assert "mona" in (item.exit_reason or "")
    assert reconciler.tick() == []


def test_a_terminal_item_restarts_only_on_a_label_applied_after_it_ended(tmp_path: Path) -> None:
    harness = make_harness(tmp_path, _policy())  # no planner: the first run escalates
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    start = datetime.now(UTC) - timedelta(minutes=5)
    harness.github.label_issue(REPO, issue, LABEL, by=MAINTAINER, at=start)
    harness.deliver("issues", webhook(issue, MAINTAINER))
    harness.drain()
    escalated = harness.service.item(REPO, issue)
    assert escalated is not None
    assert escalated.state is WorkState.ESCALATED
    reconciler = _reconciler(harness, {REPO: INSTALLATION})

    # the dispatch label stays on an escalated issue: that old label restarts nothing
    assert reconciler.tick() == []
    # a maintainer removes and re-applies it (both webhooks lost): a new run
    later = escalated.updated_at + timedelta(seconds=5)
    harness.github.unlabel_issue(REPO, issue, LABEL, by=MAINTAINER, at=later)
    harness.github.label_issue(REPO, issue, LABEL, by=MAINTAINER, at=later)

    assert [h.event for h in reconciler.tick()] == ["labeled"]
    restarted = harness.service.item(REPO, issue)
    assert restarted is not None
    assert (restarted.run, restarted.state) == (2, WorkState.PLANNING)
