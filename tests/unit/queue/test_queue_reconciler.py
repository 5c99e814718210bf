"""The reconciler's pure part: GitHub's readings become the events lost webhooks carried."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trunkline.github.model import CheckConclusion as GitHubConclusion
from trunkline.github.model import CheckRun, CheckStatus, CommitStatus
from trunkline.queue import events as ev
from trunkline.queue.effects import BuildIntegration
from trunkline.queue.engine import initial_state, step
from trunkline.queue.model import ALL_GATES, CheckConclusion, Priority, QueueConfig, QueueState
from trunkline.queue.reconciler import PullReading, Readings, observations, unevaluated

NOW = datetime(2026, 5, 1, 9, tzinfo=UTC)
BASE, HEAD, INTEGRATION = "a" * 40, "b" * 40, "c" * 40


def state_under_test() -> QueueState:
    """PR 7 queued, gates passing, its integration commit under test."""
    state = initial_state("acme/app", QueueConfig(base="main", required_checks=("ci",)), BASE)
    state, _ = step(state, ev.Enqueue(7, HEAD, Priority.NORMAL), NOW)
    reports = tuple(ev.GateReport(gate, True) for gate in ALL_GATES)
    state, effects = step(state, ev.GatesUpdated(7, HEAD, reports), NOW)
    (build,) = [effect for effect in effects if isinstance(effect, BuildIntegration)]
    state, _ = step(state, ev.IntegrationBuilt(build.build_id, INTEGRATION), NOW)
    return state


def run(
    name: str,
    status: CheckStatus,
    conclusion: GitHubConclusion | None = None,
    *,
    app: str | None = "ci-app",
    run_id: int = 1,
) -> CheckRun:
    return CheckRun(run_id, name, INTEGRATION, status, conclusion, app_slug=app, summary="from CI")


def readings(
    *,
    base: str = BASE,
    head: str = HEAD,
    open_: bool = True,
    merged: bool = False,
    runs: tuple[CheckRun, ...] = (),
    statuses: tuple[CommitStatus, ...] = (),
) -> Readings:
    return Readings(
        base,
        {7: PullReading(head, open_, merged)},
        {INTEGRATION: runs},
        statuses={INTEGRATION: statuses},
        own_app="trunkline",
    )


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (readings(), ()),
        (readings(base="d" * 40), (ev.BaseMoved("d" * 40),)),
        (readings(head="e" * 40), (ev.PrHeadChanged(7, "e" * 40),)),
        (readings(open_=False), (ev.Dequeue(7, by="trunkline", reason="PR closed"),)),
        (
            readings(open_=False, merged=True),
            (ev.Dequeue(7, by="trunkline", reason="PR merged outside the queue"),),
        ),
        (
            readings(runs=(run("ci", CheckStatus.COMPLETED, GitHubConclusion.SUCCESS),)),
            (ev.CheckCompleted(INTEGRATION, "ci", CheckConclusion.SUCCESS, "from CI"),),
        ),
        (
            readings(runs=(run("ci", CheckStatus.COMPLETED, GitHubConclusion.FAILURE),)),
            (ev.CheckCompleted(INTEGRATION, "ci", CheckConclusion.FAILURE, "from CI"),),
        ),
        (
            readings(runs=(run("ci", CheckStatus.IN_PROGRESS),)),
            (ev.CheckStarted(INTEGRATION, "ci"),),
        ),
        (readings(runs=(run("ci", CheckStatus.QUEUED),)), ()),
        (readings(runs=(run("lint", CheckStatus.COMPLETED, GitHubConclusion.SUCCESS),)), ()),
        (
            readings(
                runs=(run("ci", CheckStatus.COMPLETED, GitHubConclusion.SUCCESS, app="trunkline"),)
            ),
            (),
        ),
        (
            readings(
                runs=(
                    run("ci", CheckStatus.COMPLETED, GitHubConclusion.FAILURE),
                    run("ci", CheckStatus.COMPLETED, GitHubConclusion.SUCCESS, run_id=2),
                )
            ),
            (ev.CheckCompleted(INTEGRATION, "ci", CheckConclusion.SUCCESS, "from CI"),),
        ),
        (
            readings(statuses=(CommitStatus("ci", "failure", "lint broke"),)),
            (ev.CheckCompleted(INTEGRATION, "ci", CheckConclusion.FAILURE, "lint broke"),),
        ),
        (
            readings(statuses=(CommitStatus("ci", "pending"),)),
            (ev.CheckStarted(INTEGRATION, "ci"),),
        ),
    ],
    ids=[
        "nothing-lost",
        "base-moved",
        "head-pushed",
        "closed",
        "merged-outside-the-queue-leaves-with-a-reason",
        "check-passed",
        "check-failed",
        "check-started",
        "check-queued-is-not-started",
        "not-a-required-check",
        "trunkline-own-app-never-counts",
        "newest-run-wins-after-a-rerun",
        "commit-status-failure-counts",
        "commit-status-pending-is-started",
    ],
)
def test_readings_become_the_events_of_lost_webhooks(
    reading: Readings, expected: tuple[ev.Event, ...]
) -> None:
    assert observations(state_under_test(), reading) == expected


def test_a_lost_check_report_lets_the_queue_fast_forward() -> None:
    state = state_under_test()
    passed = readings(runs=(run("ci", CheckStatus.COMPLETED, GitHubConclusion.SUCCESS),))
    effects: list[object] = []
    for event in observations(state, passed):
        state, produced = step(state, event, NOW)
        effects.extend(produced)
    assert [type(effect).__name__ for effect in effects].count("FastForwardBase") == 1
    # Reading again after the engine knows: nothing new.
    again = [step(state, event, NOW)[1] for event in observations(state, passed)]
    assert all(not produced for produced in again)


def test_new_queue_settings_come_first_and_none_keeps_the_current() -> None:
    state = state_under_test()
    stricter = QueueConfig(base="main", required_checks=("ci", "security-scan"))
    reading = Readings(BASE, {7: PullReading(HEAD, True, False)}, {}, stricter)
    assert observations(state, reading) == (ev.ConfigChanged(stricter),)
    same = Readings(BASE, {7: PullReading(HEAD, True, False)}, {}, state.config)
    assert observations(state, same) == ()
    unknown = Readings(BASE, {7: PullReading(HEAD, True, False)}, {}, None)
    assert observations(state, unknown) == ()


def test_entries_without_verdicts_on_their_head_are_named_for_a_gate_refresh() -> None:
    state = state_under_test()
    assert unevaluated(state) == ()
    # a push the reconciler noticed voids the verdicts: the entry needs its gates again
    (event,) = observations(state, readings(head="d" * 40))
    state, _ = step(state, event, NOW)
    assert unevaluated(state) == (7,)
    reports = tuple(ev.GateReport(gate, gate is not ALL_GATES[0]) for gate in ALL_GATES)
    state, _ = step(state, ev.GatesUpdated(7, "d" * 40, reports), NOW)
    assert unevaluated(state) == ()  # a failed gate is a verdict, not a missing one


def test_an_evaluation_that_read_earlier_never_replaces_a_later_one() -> None:
    """Two gate evaluations race: the one that started reading later (review passed) is
    submitted first; the older one (review not yet posted) arrives after it and is ignored."""
    state = initial_state("acme/app", QueueConfig(base="main", required_checks=("ci",)), BASE)
    state, _ = step(state, ev.Enqueue(7, HEAD, Priority.NORMAL), NOW)
    later, earlier = NOW.replace(second=30), NOW.replace(second=10)
    passing = tuple(ev.GateReport(gate, True) for gate in ALL_GATES)
    stale = tuple(ev.GateReport(gate, gate is not ALL_GATES[1]) for gate in ALL_GATES)
    state, effects = step(state, ev.GatesUpdated(7, HEAD, passing, read_at=later), NOW)
    assert any(isinstance(effect, BuildIntegration) for effect in effects)
    after, produced = step(state, ev.GatesUpdated(7, HEAD, stale, read_at=earlier), NOW)
    assert after == state
    assert produced == ()
    # a newer evaluation still replaces it, and one without a read time is taken as news
    newer = NOW.replace(second=50)
    state, _ = step(state, ev.GatesUpdated(7, HEAD, stale, read_at=newer), NOW)
    entry = state.entry(7)
    assert entry is not None
    assert not entry.gates_pass
