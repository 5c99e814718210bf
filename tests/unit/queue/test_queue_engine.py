"""Table-driven scenarios for the merge-queue engine (serial, then batches, bisection and
speculation): each a list of events with the effects every step must produce (compact
strings; in-progress check runs and comments are checked by their own tests) and a check of
the final state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from trunkline.queue import events as ev
from trunkline.queue.effects import (
    BuildIntegration,
    CheckRunConclusion,
    CheckRunStatus,
    Comment,
    DeleteIntegrationBranch,
    Effect,
    Eject,
    FastForwardBase,
    PostCheckRun,
    ReleaseLocks,
    RequestChecks,
)
from trunkline.queue.engine import initial_state, step
from trunkline.queue.explain import describe_queue, explain, render_markdown
from trunkline.queue.model import (
    ALL_GATES,
    BuildState,
    CheckConclusion,
    EntryState,
    Gate,
    OutcomeKind,
    Priority,
    QueueConfig,
    QueueConfigError,
    QueueState,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = QueueConfig(base="main", required_checks=("ci", "lint"))
OK = CheckConclusion.SUCCESS


def gates(pr: int, sha: str, *, ok: bool = True, only: tuple[Gate, ...] = ALL_GATES) -> ev.Event:
    return ev.GatesUpdated(pr, sha, tuple(ev.GateReport(g, ok, f"{g} says {ok}") for g in only))


def passed(sha: str, name: str) -> ev.Event:
    return ev.CheckCompleted(sha, name, OK, "all good")


def compact(effect: Effect) -> str | None:
    """A one-line description of the effects scenarios assert on (None: not asserted here)."""
    match effect:
        case BuildIntegration():
            prs = ",".join(f"#{pr}@{head}" for pr, head in effect.prs)
            return f"build {effect.build_id} {prs} on {effect.base_sha}"
        case RequestChecks():
            names = ",".join(effect.check_names)
            return f"checks {effect.build_id} {effect.integration_sha} {names} a{effect.attempt}"
        case FastForwardBase():
            return f"ff {effect.build_id} {effect.expected_old_sha}->{effect.new_sha}"
        case DeleteIntegrationBranch():
            return f"delete {effect.build_id}"
        case ReleaseLocks():
            return f"release #{effect.pr}"
        case Eject():
            return f"eject #{effect.pr}: {effect.reason}"
        case PostCheckRun() if effect.status is CheckRunStatus.COMPLETED:
            return f"done #{effect.pr}@{effect.head_sha} {effect.conclusion}"
        case _:
            return None


@dataclass(frozen=True)
class Step:
    event: ev.Event
    expect: tuple[str, ...] = ()
    minutes: float | None = None  # time since T0; None keeps the previous step's time


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    final: Callable[[QueueState], bool] = lambda s: True
    config: QueueConfig = CONFIG


def run(
    scenario: Scenario,
) -> tuple[QueueState, list[tuple[Effect, ...]]]:
    state = initial_state("acme/app", scenario.config, "B0")
    now = T0
    produced = []
    for index, item in enumerate(scenario.steps):
        if item.minutes is not None:
            now = T0 + timedelta(minutes=item.minutes)
        state, effects = step(state, item.event, now)
        produced.append(effects)
        got = tuple(c for c in map(compact, effects) if c is not None)
        assert got == item.expect, f"step {index} ({item.event}): {got}"
    return state, produced


# The common start: #1 queued at h1 with every gate passing, its build on B0 in testing.
START = (
    Step(ev.Enqueue(1, "h1")),
    Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
    Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci,lint a1",)),
)
PASS_B1 = (
    Step(passed("I1", "ci")),
    Step(passed("I1", "lint"), ("ff b1 B0->I1",)),
)
MERGE_B1 = Step(ev.FastForwarded("b1", "I1"), ("delete b1", "release #1", "done #1@h1 success"))


def outcome_is(pr: int, kind: OutcomeKind, words: str = "") -> Callable[[QueueState], bool]:
    def check(state: QueueState) -> bool:
        outcome = state.outcome(pr)
        return (
            outcome is not None
            and outcome.kind is kind
            and words in outcome.reason
            and state.entry(pr) is None
        )

    return check


SCENARIOS = [
    Scenario(
        "happy path: build, test, fast-forward, merge",
        (*START, *PASS_B1, MERGE_B1),
        lambda s: s.base_sha == "I1" and not s.entries and not s.builds and 1 in s.merged_prs,
    ),
    Scenario(
        "no build while any gate is missing or failing",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(gates(1, "h1", only=(Gate.SCOPE, Gate.REVIEW))),
            Step(gates(1, "h1", ok=False, only=(Gate.APPROVAL,))),
            Step(gates(1, "h1", only=(Gate.APPROVAL,)), ("build b1 #1@h1 on B0",)),
        ),
    ),
    Scenario(
        "a waiting head entry does not block an eligible one behind it",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(ev.Enqueue(2, "h2")),
            Step(gates(2, "h2"), ("build b1 #2@h2 on B0",)),
        ),
        lambda s: s.entry_state(1) is EntryState.WAITING,
    ),
    Scenario(
        "priority first, then FIFO; a running build is not pre-empted",
        (
            Step(ev.Enqueue(1, "h1", Priority.NORMAL)),
            Step(ev.Enqueue(2, "h2", Priority.LOW)),
            Step(ev.Enqueue(3, "h3", Priority.NORMAL)),
            Step(gates(2, "h2"), ("build b1 #2@h2 on B0",)),
            Step(ev.Enqueue(4, "h4", Priority.HIGH)),
            Step(gates(3, "h3")),
            Step(gates(4, "h4")),
            Step(gates(1, "h1")),
            Step(ev.IntegrationBuilt("b1", "I2"), ("checks b1 I2 ci,lint a1",)),
            Step(passed("I2", "ci")),
            Step(passed("I2", "lint"), ("ff b1 B0->I2",)),
            Step(
                ev.FastForwarded("b1", "I2"),
                ("delete b1", "release #2", "done #2@h2 success", "build b2 #4@h4 on I2"),
            ),
            Step(
                ev.Dequeue(4, "alice", "not today"),
                ("delete b2", "done #4@h4 neutral", "build b3 #1@h1 on I2"),
            ),
            Step(
                ev.Dequeue(1, "alice"), ("delete b3", "done #1@h1 neutral", "build b4 #3@h3 on I2")
            ),
        ),
        lambda s: [e.pr for e in s.entries] == [3] and s.dequeued_count == 2,
    ),
    Scenario(
        "priority change reorders the queue before the next build",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(ev.Enqueue(2, "h2")),
            Step(ev.Enqueue(3, "h3")),
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(gates(2, "h2")),
            Step(gates(3, "h3")),
            Step(ev.PriorityChanged(3, Priority.HIGH)),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci,lint a1",)),
            *PASS_B1,
            Step(
                ev.FastForwarded("b1", "I1"),
                ("delete b1", "release #1", "done #1@h1 success", "build b2 #3@h3 on I1"),
            ),
        ),
        lambda s: [e.pr for e in s.entries] == [3, 2],
    ),
    Scenario(
        "checks on another SHA, unrequired checks and started-only checks do not pass a build",
        (
            *START,
            Step(passed("I9", "ci")),
            Step(passed("I1", "docs")),
            Step(ev.CheckStarted("I1", "ci")),
            Step(ev.CheckStarted("I1", "lint")),
            Step(passed("I1", "ci")),
            Step(passed("I1", "lint"), ("ff b1 B0->I1",)),
        ),
    ),
    Scenario(
        "base moved during testing: void build, rebuild on the new base, ignore late results",
        (
            *START,
            Step(passed("I1", "ci")),
            Step(ev.BaseMoved("B1"), ("delete b1", "build b2 #1@h1 on B1")),
            Step(passed("I1", "lint")),
            Step(ev.IntegrationBuilt("b1", "I1")),
            Step(ev.IntegrationBuilt("b2", "I2"), ("checks b2 I2 ci,lint a1",)),
            Step(passed("I2", "ci")),
            Step(passed("I2", "lint"), ("ff b2 B1->I2",)),
            Step(ev.FastForwarded("b2", "I2"), ("delete b2", "release #1", "done #1@h1 success")),
        ),
        lambda s: s.base_sha == "I2" and s.base_history == ("B0", "B1"),
    ),
    Scenario(
        "base moved during building: void and rebuild",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(ev.BaseMoved("B1"), ("delete b1", "build b2 #1@h1 on B1")),
            Step(ev.IntegrationConflict("b1", ("a.py",))),
        ),
        lambda s: s.entry(1) is not None,
    ),
    Scenario(
        "a late report of an earlier base is ignored",
        (
            *START,
            *PASS_B1,
            MERGE_B1,
            Step(ev.Enqueue(2, "h2")),
            Step(gates(2, "h2"), ("build b2 #2@h2 on I1",)),
            Step(ev.BaseMoved("B0")),
            Step(ev.BaseMoved("I1")),
        ),
        lambda s: s.base_sha == "I1",
    ),
    Scenario(
        "our own fast-forward seen as a base move before its report merges the build",
        (
            *START,
            *PASS_B1,
            Step(ev.BaseMoved("I1"), ("delete b1", "release #1", "done #1@h1 success")),
            Step(ev.FastForwarded("b1", "I1")),
        ),
        lambda s: s.base_sha == "I1" and s.merged_count == 1,
    ),
    Scenario(
        "someone moves the base to the integration commit mid-test: the PR is in, merged",
        (
            *START,
            Step(ev.BaseMoved("I1"), ("delete b1", "release #1", "done #1@h1 success")),
            Step(passed("I1", "ci")),
        ),
        lambda s: s.base_sha == "I1" and 1 in s.merged_prs,
    ),
    Scenario(
        "base moved by someone else while the fast-forward is in flight: wait for its outcome",
        (
            *START,
            *PASS_B1,
            Step(ev.BaseMoved("X1")),
            Step(
                ev.FastForwardRejected("b1", "not a fast-forward", "X1"),
                ("delete b1", "build b2 #1@h1 on X1"),
            ),
        ),
        lambda s: s.base_sha == "X1" and s.entry_state(1) is EntryState.BUILDING,
    ),
    Scenario(
        "fast-forward succeeded but a newer base was already reported: keep the newer base",
        (
            *START,
            *PASS_B1,
            Step(ev.BaseMoved("X1")),
            MERGE_B1,
        ),
        lambda s: s.base_sha == "X1" and "I1" in s.base_history,
    ),
    Scenario(
        "fast-forward rejected because the base moved: rebuild and retest",
        (
            *START,
            *PASS_B1,
            Step(
                ev.FastForwardRejected("b1", "not a fast-forward", "B1"),
                ("delete b1", "build b2 #1@h1 on B1"),
            ),
            Step(ev.FastForwarded("b1", "I1")),
        ),
        lambda s: s.base_sha == "B1" and s.merged_count == 0,
    ),
    Scenario(
        "fast-forward rejected although the base did not move: eject with the reason",
        (
            *START,
            *PASS_B1,
            Step(
                ev.FastForwardRejected("b1", "protected branch", "B0"),
                (
                    "delete b1",
                    "eject #1: fast-forward of main to I1 was refused: protected branch",
                    "done #1@h1 failure",
                ),
            ),
        ),
        outcome_is(1, OutcomeKind.EJECTED, "protected branch"),
    ),
    Scenario(
        "a rejection that shows the base at our SHA is a lost success report",
        (
            *START,
            *PASS_B1,
            Step(
                ev.FastForwardRejected("b1", "already there", "I1"),
                ("delete b1", "release #1", "done #1@h1 success"),
            ),
        ),
        lambda s: s.base_sha == "I1",
    ),
    Scenario(
        "PR head pushed mid-test: build cancelled, old verdicts void, waits, then retested",
        (
            *START,
            Step(passed("I1", "ci")),
            Step(ev.PrHeadChanged(1, "h1b"), ("delete b1",)),
            Step(passed("I1", "lint")),
            Step(gates(1, "h1")),
            Step(gates(1, "h1b", only=(Gate.SCOPE, Gate.REVIEW))),
            Step(gates(1, "h1b", only=(Gate.APPROVAL,)), ("build b2 #1@h1b on B0",)),
        ),
        lambda s: s.entry(1) is not None and s.ejected_count == 0,
    ),
    Scenario(
        "PR head pushed while the fast-forward is in flight: merged at the tested head",
        (
            *START,
            *PASS_B1,
            Step(ev.PrHeadChanged(1, "h1b")),
            MERGE_B1,
        ),
        lambda s: (o := s.outcome(1)) is not None and o.head_sha == "h1" and o.merged_sha == "I1",
    ),
    Scenario(
        "PR head pushed while in flight, then the fast-forward fails: waits for new gates",
        (
            *START,
            *PASS_B1,
            Step(ev.PrHeadChanged(1, "h1b")),
            Step(ev.FastForwardRejected("b1", "moved", "B1"), ("delete b1",)),
        ),
        lambda s: s.entry_state(1) is EntryState.WAITING and s.base_sha == "B1",
    ),
    Scenario(
        "a head reading older than the one in force is stale: the head never goes back",
        (
            Step(ev.Enqueue(1, "h1", read_at=T0)),
            Step(ev.PrHeadChanged(1, "h1b", read_at=T0 + timedelta(seconds=20))),
            Step(ev.PrHeadChanged(1, "h1", read_at=T0 + timedelta(seconds=10))),
            Step(gates(1, "h1")),
            Step(gates(1, "h1b"), ("build b1 #1@h1b on B0",)),
        ),
        lambda s: (e := s.entry(1)) is not None and e.head_sha == "h1b",
    ),
    Scenario(
        "a newer reading of the same head renews it: an older one of another head is stale",
        (
            Step(ev.Enqueue(1, "h1", read_at=T0)),
            Step(ev.PrHeadChanged(1, "h1", read_at=T0 + timedelta(seconds=20))),
            Step(ev.PrHeadChanged(1, "h0", read_at=T0 + timedelta(seconds=10))),
        ),
        lambda s: (e := s.entry(1)) is not None and e.head_sha == "h1",
    ),
    Scenario(
        "a head moved before the fast-forward: the refusal voids the build, no ejection",
        (
            *START,
            *PASS_B1,
            Step(ev.PrHeadChanged(1, "h1b")),
            Step(ev.FastForwardRejected("b1", "a PR head moved", "B0"), ("delete b1",)),
            Step(gates(1, "h1b"), ("build b2 #1@h1b on B0",)),
        ),
        lambda s: s.base_sha == "B0" and s.ejected_count == 0,
    ),
    Scenario(
        "a gate revoked mid-test cancels the build; the entry waits",
        (
            *START,
            Step(gates(1, "h1", ok=False, only=(Gate.APPROVAL,)), ("delete b1",)),
            Step(passed("I1", "ci")),
        ),
        lambda s: s.entry_state(1) is EntryState.WAITING,
    ),
    Scenario(
        "a required check fails: eject with its summary, next entry starts",
        (
            Step(ev.Enqueue(2, "h2")),
            Step(gates(2, "h2"), ("build b1 #2@h2 on B0",)),
            Step(ev.Enqueue(1, "h1")),
            Step(gates(1, "h1")),
            Step(ev.IntegrationBuilt("b1", "I2"), ("checks b1 I2 ci,lint a1",)),
            Step(
                ev.CheckCompleted("I2", "ci", CheckConclusion.FAILURE, "3 tests failed"),
                (
                    "delete b1",
                    "eject #2: required check ci failure: 3 tests failed",
                    "done #2@h2 failure",
                    "build b2 #1@h1 on B0",
                ),
            ),
            Step(ev.CheckCompleted("I2", "ci", CheckConclusion.FAILURE, "3 tests failed")),
        ),
        outcome_is(2, OutcomeKind.EJECTED, "3 tests failed"),
    ),
    Scenario(
        "skipped and neutral do not count as passing",
        (
            *START,
            Step(
                ev.CheckCompleted("I1", "lint", CheckConclusion.SKIPPED),
                (
                    "delete b1",
                    "eject #1: required check lint skipped: concluded skipped",
                    "done #1@h1 failure",
                ),
            ),
        ),
    ),
    Scenario(
        "flake retries rerun only the failed check on the same SHA",
        (
            *START,
            Step(passed("I1", "lint")),
            Step(
                ev.CheckCompleted("I1", "ci", CheckConclusion.FAILURE, "flaky"),
                ("checks b1 I1 ci a2",),
            ),
            Step(passed("I1", "ci"), ("ff b1 B0->I1",)),
        ),
        config=replace(CONFIG, flake_retries=1),
    ),
    Scenario(
        "a late report of an earlier attempt is ignored when it names its attempt",
        (
            *START,
            Step(
                ev.CheckCompleted("I1", "ci", CheckConclusion.FAILURE, "flaky", attempt=1),
                ("checks b1 I1 ci,lint a2",),
            ),
            Step(ev.CheckCompleted("I1", "ci", CheckConclusion.FAILURE, "flaky", attempt=1)),
            Step(ev.CheckStarted("I1", "ci", attempt=1)),
            Step(ev.CheckCompleted("I1", "ci", OK, attempt=2)),
            Step(ev.CheckCompleted("I1", "lint", OK, attempt=2), ("ff b1 B0->I1",)),
        ),
        config=replace(CONFIG, flake_retries=1),
    ),
    Scenario(
        "flake retries exhausted: eject",
        (
            *START,
            Step(
                ev.CheckCompleted("I1", "ci", CheckConclusion.FAILURE, "x"),
                ("checks b1 I1 ci,lint a2",),
            ),
            Step(
                ev.CheckCompleted("I1", "ci", CheckConclusion.FAILURE, "still red"),
                (
                    "delete b1",
                    "eject #1: required check ci failure: still red",
                    "done #1@h1 failure",
                ),
            ),
        ),
        config=replace(CONFIG, flake_retries=1),
    ),
    Scenario(
        "a check that never starts trips the watchdog",
        (
            *START,
            Step(ev.CheckStarted("I1", "ci")),
            Step(ev.Tick(), (), minutes=9),
            Step(
                ev.Tick(),
                (
                    "delete b1",
                    "eject #1: required check lint never started within 10m on I1",
                    "done #1@h1 failure",
                ),
                minutes=10,
            ),
        ),
    ),
    Scenario(
        "a check that started but never completes times out",
        (
            *START,
            Step(ev.CheckStarted("I1", "ci")),
            Step(ev.CheckStarted("I1", "lint")),
            Step(passed("I1", "lint")),
            Step(ev.Tick(), (), minutes=59),
            Step(
                ev.Tick(),
                (
                    "delete b1",
                    "eject #1: required check ci did not complete within 60m on I1",
                    "done #1@h1 failure",
                ),
                minutes=60,
            ),
        ),
    ),
    Scenario(
        "retry_on_timeout retries once with a fresh clock, then ejects",
        (
            *START,
            Step(ev.Tick(), ("checks b1 I1 ci,lint a2",), minutes=11),
            Step(ev.Tick(), (), minutes=20),
            Step(
                ev.Tick(),
                (
                    "delete b1",
                    "eject #1: required check ci never started within 10m; required check lint "
                    "never started within 10m on I1 after 1 retries",
                    "done #1@h1 failure",
                ),
                minutes=21,
            ),
        ),
        config=replace(CONFIG, retry_on_timeout=1),
    ),
    Scenario(
        "a CI-side cancellation is retried like a timeout",
        (
            *START,
            Step(
                ev.CheckCompleted("I1", "ci", CheckConclusion.CANCELLED),
                ("checks b1 I1 ci,lint a2",),
            ),
            Step(passed("I1", "ci")),
            Step(passed("I1", "lint"), ("ff b1 B0->I1",)),
        ),
        config=replace(CONFIG, retry_on_timeout=1),
    ),
    Scenario(
        "an integration conflict ejects with the conflicting paths",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(
                ev.IntegrationConflict("b1", ("src/a.py", "README.md")),
                (
                    "delete b1",
                    "eject #1: merge conflict with main at B0 in: src/a.py, README.md",
                    "done #1@h1 failure",
                ),
            ),
        ),
        outcome_is(1, OutcomeKind.EJECTED, "src/a.py"),
    ),
    Scenario(
        "dequeue mid-test cancels the build and keeps the locks",
        (
            *START,
            Step(ev.Dequeue(1, "alice", "needs more work"), ("delete b1", "done #1@h1 neutral")),
            Step(passed("I1", "ci")),
            Step(ev.Dequeue(1, "alice")),
        ),
        outcome_is(1, OutcomeKind.DEQUEUED, "needs more work (by alice)"),
    ),
    Scenario(
        "dequeue while the fast-forward is in flight: too late if it succeeds",
        (
            *START,
            *PASS_B1,
            Step(ev.Dequeue(1, "alice", "stop")),
            MERGE_B1,
        ),
        outcome_is(1, OutcomeKind.MERGED),
    ),
    Scenario(
        "dequeue while the fast-forward is in flight: applies if it fails",
        (
            *START,
            *PASS_B1,
            Step(ev.Dequeue(1, "alice", "stop")),
            Step(ev.Dequeue(1, "alice", "stop")),
            Step(ev.FastForwardRejected("b1", "moved", "B1"), ("delete b1", "done #1@h1 neutral")),
        ),
        outcome_is(1, OutcomeKind.DEQUEUED, "stop"),
    ),
    Scenario(
        "duplicates change nothing: enqueue, built, completed, fast-forwarded, re-enqueue merged",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(ev.Enqueue(1, "h1x", Priority.HIGH)),
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(gates(1, "h1")),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci,lint a1",)),
            Step(ev.IntegrationBuilt("b1", "I1")),
            Step(passed("I1", "ci")),
            Step(passed("I1", "ci")),
            Step(passed("I1", "lint"), ("ff b1 B0->I1",)),
            Step(passed("I1", "lint")),
            MERGE_B1,
            Step(ev.FastForwarded("b1", "I1")),
            Step(ev.Enqueue(1, "h1")),
            Step(ev.BaseMoved("I1")),
        ),
        lambda s: s.merged_count == 1 and not s.entries,
    ),
    Scenario(
        "events about unknown PRs and builds are ignored",
        (
            Step(ev.Dequeue(7, "bob")),
            Step(ev.PriorityChanged(7, Priority.HIGH)),
            Step(gates(7, "x")),
            Step(ev.PrHeadChanged(7, "y")),
            Step(ev.IntegrationBuilt("b9", "I9")),
            Step(ev.IntegrationConflict("b9", ("a",))),
            Step(ev.FastForwarded("b9", "I9")),
            Step(ev.FastForwardRejected("b9", "no", "B5")),
            Step(ev.CheckStarted("I9", "ci")),
            Step(ev.ConfigChanged(replace(CONFIG, base="develop"))),
            Step(ev.ConfigChanged(CONFIG)),
            Step(ev.Tick(), (), minutes=500),
        ),
        lambda s: s == initial_state("acme/app", CONFIG, "B0"),
    ),
    Scenario(
        "a config change voids running builds and rebuilds under the new checks",
        (
            *START,
            Step(
                ev.ConfigChanged(replace(CONFIG, required_checks=("ci",))),
                ("delete b1", "build b2 #1@h1 on B0"),
            ),
            Step(ev.IntegrationBuilt("b2", "I1"), ("checks b2 I1 ci a1",)),
            Step(passed("I1", "ci"), ("ff b2 B0->I1",)),
        ),
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_queue_engine_scenario(scenario: Scenario) -> None:
    state, _ = run(scenario)
    assert scenario.final(state), state


def test_queue_engine_ignored_events_return_the_same_state_object() -> None:
    state, _ = run(Scenario("start", START))
    for event in (
        ev.CheckCompleted("nope", "ci", OK),
        ev.Enqueue(1, "h1"),
        ev.IntegrationBuilt("b1", "I1"),
        ev.FastForwarded("b1", "I1"),
        ev.BaseMoved("B0"),
        ev.Tick(),
    ):
        after, effects = step(state, event, T0)
        assert after is state
        assert effects == ()


def test_queue_engine_is_deterministic_and_keys_are_unique() -> None:
    scenario = SCENARIOS[3]
    first_state, first = run(scenario)
    second_state, second = run(scenario)
    assert first == second
    assert first_state == second_state
    keys = [effect.key for effects in first for effect in effects]
    assert len(keys) == len(set(keys)), "effect keys must be unique across steps"
    assert all(key.startswith("acme/app@main:") for key in keys)


def test_queue_engine_posts_queue_check_runs_when_position_or_state_changes() -> None:
    state = initial_state("acme/app", CONFIG, "B0")
    state, effects = step(state, ev.Enqueue(1, "h1"), T0)
    (run1,) = [e for e in effects if isinstance(e, PostCheckRun)]
    assert (run1.pr, run1.head_sha, run1.name) == (1, "h1", "trunkline/queue")
    assert run1.status is CheckRunStatus.QUEUED
    assert run1.title == "#1 in the queue: waiting"
    assert "review pending" in run1.summary
    state, effects = step(state, ev.Enqueue(2, "h2", Priority.HIGH), T0)
    posted = {e.pr: e for e in effects if isinstance(e, PostCheckRun)}
    assert posted[1].title == "#2 in the queue: waiting"
    assert posted[2].title == "#1 in the queue: waiting"
    state, effects = step(state, ev.Enqueue(3, "h3", Priority.LOW), T0)
    posted = {e.pr: e for e in effects if isinstance(e, PostCheckRun)}
    assert set(posted) == {3}, "joining the back of the queue moves no one else"
    state, effects = step(state, gates(1, "h1"), T0)
    posted = {e.pr: e for e in effects if isinstance(e, PostCheckRun)}
    assert set(posted) == {1}
    assert posted[1].status is CheckRunStatus.IN_PROGRESS
    assert "building integration commit b1" in posted[1].summary
    state, effects = step(state, ev.PrHeadChanged(1, "h1b"), T0)
    posted = {e.pr: e for e in effects if isinstance(e, PostCheckRun)}
    assert posted[1].head_sha == "h1b"
    assert posted[1].status is CheckRunStatus.QUEUED


def test_queue_engine_merge_comments_and_ejections_carry_reasons() -> None:
    state, produced = run(Scenario("merge", (*START, *PASS_B1, MERGE_B1)))
    merge_effects = produced[-1]
    (comment,) = [e for e in merge_effects if isinstance(e, Comment)]
    assert "main fast-forwarded to I1 with #1 at h1" in comment.body
    done = [e for e in merge_effects if isinstance(e, PostCheckRun)]
    assert [d.conclusion for d in done] == [CheckRunConclusion.SUCCESS]
    assert state.recent[-1].reason == "main fast-forwarded to I1 with #1 at h1"


def test_queue_engine_dequeue_does_not_release_locks_but_merge_does() -> None:
    _, produced = run(
        Scenario("dq", (*START, Step(ev.Dequeue(1, "alice"), ("delete b1", "done #1@h1 neutral"))))
    )
    assert not any(isinstance(e, ReleaseLocks) for e in produced[-1])


def test_queue_engine_explain_describes_position_state_and_every_gate() -> None:
    state, _ = run(
        Scenario(
            "explain",
            (
                *START,
                Step(ev.Enqueue(2, "h2")),
                Step(gates(2, "h2", only=(Gate.SCOPE,))),
                Step(gates(2, "h2", ok=False, only=(Gate.REVIEW,))),
                Step(ev.CheckStarted("I1", "ci")),
                Step(passed("I1", "lint")),
            ),
        )
    )
    first = explain(state, 1)
    second = explain(state, 2)
    assert first is not None
    assert second is not None
    assert (first.position, first.queue_length, first.state) == (1, 2, EntryState.TESTING)
    assert first.why == "testing I1; waiting for: ci"
    assert [(c.name, c.status.value) for c in first.checks] == [
        ("ci", "pending"),
        ("lint", "passed"),
    ]
    assert second.state is EntryState.WAITING
    assert [(g.name, g.status.value) for g in second.gates] == [
        ("scope", "passed"),
        ("review", "failed"),
        ("approval", "pending"),
    ]
    assert second.why == "waiting for gates: review failed, approval pending"
    text = render_markdown(second)
    assert "#2** is number 2 in the queue" in text
    assert "review: review says False" in text
    assert [e.pr for e in describe_queue(state)] == [1, 2]
    assert explain(state, 99) is None


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"parallel_checks": 0}, "parallel_checks must be >= 1"),
        ({"batch_wait": timedelta(minutes=-1)}, "batch_wait must not be negative"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"required_checks": ()}, "must name at least one check"),
        ({"required_checks": ("ci", "ci")}, "must not repeat"),
        ({"check_timeout": timedelta(0)}, "must be positive"),
        ({"flake_retries": -1}, "must be >= 0"),
        ({"base": " "}, "base branch must not be empty"),
        ({"speculation_floor": 1.5}, "speculation_floor must be between 0 and 1"),
        ({"cleared_batch_size": -1}, "cleared_batch_size must be >= 0"),
        ({"isolation_slots": -1, "pretest": True}, "isolation_slots must be >= 0"),
        ({"isolation_slots": 2}, "isolation_slots needs pretest"),
    ],
)
def test_queue_config_rejects_values_it_cannot_run(changes: dict[str, object], words: str) -> None:
    with pytest.raises(QueueConfigError, match=words):
        replace(CONFIG, **changes)  # type: ignore[arg-type]


def test_queue_engine_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        step(initial_state("acme/app", CONFIG, "B0"), ev.Tick(), datetime(2026, 1, 1))


def test_queue_engine_explain_says_why_a_ready_entry_waits_and_when_it_merges() -> None:
    state, _ = run(
        Scenario(
            "explain merging",
            (*START, Step(ev.Enqueue(2, "h2")), Step(gates(2, "h2")), *PASS_B1),
        )
    )
    merging = explain(state, 1)
    queued = explain(state, 2)
    assert merging is not None
    assert queued is not None
    assert merging.state is EntryState.MERGING
    assert merging.why == "required checks passed on I1; fast-forwarding main to it"
    assert queued.state is EntryState.QUEUED
    assert queued.why == "ready; waiting for the build slot held by b1 (#1)"
    state, _ = step(state, ev.Dequeue(1, "bob", "wait"), T0)
    leaving = explain(state, 1)
    assert leaving is not None
    assert "Dequeue requested (wait (by bob))" in render_markdown(leaving)


# ---- throughput: batches, bisection, speculation -------------------------------------------

ONE_CHECK = replace(CONFIG, required_checks=("ci",))


def failed(sha: str, summary: str) -> ev.Event:
    return ev.CheckCompleted(sha, "ci", CheckConclusion.FAILURE, summary)


def ci_passed(sha: str) -> ev.Event:
    return passed(sha, "ci")


ENQUEUE_THREE = (
    Step(ev.Enqueue(1, "h1")),
    Step(ev.Enqueue(2, "h2")),
    Step(ev.Enqueue(3, "h3")),
)

THROUGHPUT_SCENARIOS = [
    Scenario(
        "a batch starts at once with what is ready when there is no wait; the rest batch up",
        (
            *ENQUEUE_THREE,
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(gates(2, "h2")),
            Step(gates(3, "h3")),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci a1",)),
            Step(ci_passed("I1"), ("ff b1 B0->I1",)),
            Step(
                ev.FastForwarded("b1", "I1"),
                ("delete b1", "release #1", "done #1@h1 success", "build b2 #2@h2,#3@h3 on I1"),
            ),
            Step(ev.IntegrationBuilt("b2", "I23"), ("checks b2 I23 ci a1",)),
            Step(ci_passed("I23"), ("ff b2 I1->I23",)),
            Step(
                ev.FastForwarded("b2", "I23"),
                (
                    "delete b2",
                    "release #2",
                    "done #2@h2 success",
                    "release #3",
                    "done #3@h3 success",
                ),
            ),
        ),
        lambda s: s.base_sha == "I23" and s.merged_prs == {1, 2, 3} and not s.builds,
        replace(ONE_CHECK, batch_size=3),
    ),
    Scenario(
        "a partial batch waits batch_wait for more PRs (time comes with Tick)",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(gates(1, "h1")),
            Step(ev.Tick(), minutes=9),
            Step(ev.Tick(), ("build b1 #1@h1 on B0",), minutes=10),
        ),
        lambda s: len(s.builds) == 1,
        replace(ONE_CHECK, batch_size=3, batch_wait=timedelta(minutes=10)),
    ),
    Scenario(
        "a failed batch is bisected until the culprit is ejected with the summary; the rest merge",
        (
            *ENQUEUE_THREE,
            Step(ev.Enqueue(4, "h4")),
            Step(gates(1, "h1")),
            Step(gates(2, "h2")),
            Step(gates(3, "h3")),
            Step(gates(4, "h4"), ("build b1 #1@h1,#2@h2,#3@h3,#4@h4 on B0",)),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci a1",)),
            # the batch fails: its first half is an isolation build on the base, off the stack
            Step(failed("I1", "test_x broke"), ("delete b1", "build b2 #1@h1,#2@h2 on B0")),
            Step(ev.IntegrationBuilt("b2", "J12"), ("checks b2 J12 ci a1",)),
            # it passes: #1 and #2 are stacked again; the culprit is in #3, #4: split untested
            Step(
                ci_passed("J12"),
                ("delete b2", "build b3 #3@h3 on B0", "build b4 #1@h1,#2@h2 on B0"),
            ),
            Step(ev.IntegrationBuilt("b3", "J3"), ("checks b3 J3 ci a1",)),
            Step(ev.IntegrationBuilt("b4", "I12"), ("checks b4 I12 ci a1",)),
            # #3 passes alone: #4 is the culprit, ejected with the batch's failing summary
            Step(
                ci_passed("J3"),
                (
                    "delete b3",
                    "eject #4: required check ci failure: test_x broke",
                    "done #4@h4 failure",
                    "build b5 #3@h3 on I12",
                ),
            ),
            Step(ci_passed("I12"), ("ff b4 B0->I12",)),
            Step(
                ev.FastForwarded("b4", "I12"),
                (
                    "delete b4",
                    "release #1",
                    "done #1@h1 success",
                    "release #2",
                    "done #2@h2 success",
                ),
            ),
            Step(ev.IntegrationBuilt("b5", "I123"), ("checks b5 I123 ci a1",)),
            Step(ci_passed("I123"), ("ff b5 I12->I123",)),
            Step(ev.FastForwarded("b5", "I123"), ("delete b5", "release #3", "done #3@h3 success")),
        ),
        lambda s: (
            s.base_sha == "I123"
            and s.merged_prs == {1, 2, 3}
            and outcome_is(4, OutcomeKind.EJECTED, "test_x broke")(s)
            and not s.builds
            and not s.bisect_groups
            and not s.pairs
        ),
        replace(ONE_CHECK, batch_size=4, parallel_checks=3, batch_wait=timedelta(minutes=10)),
    ),
    Scenario(
        "bisection: a first half that fails is split, and the second half is tested after all",
        (
            *ENQUEUE_THREE,
            Step(ev.Enqueue(4, "h4")),
            Step(gates(1, "h1")),
            Step(gates(2, "h2")),
            Step(gates(3, "h3")),
            Step(gates(4, "h4"), ("build b1 #1@h1,#2@h2,#3@h3,#4@h4 on B0",)),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci a1",)),
            Step(failed("I1", "test_x broke"), ("delete b1", "build b2 #1@h1,#2@h2 on B0")),
            Step(ev.IntegrationBuilt("b2", "J12"), ("checks b2 J12 ci a1",)),
            Step(
                failed("J12", "test_x broke"),
                ("delete b2", "build b3 #3@h3,#4@h4 on B0", "build b4 #1@h1 on B0"),
            ),
        ),
        lambda s: [b.prs for b in s.builds] == [(3, 4), (1,)] and len(s.pairs) == 1,
        replace(ONE_CHECK, batch_size=4, parallel_checks=3, batch_wait=timedelta(minutes=10)),
    ),
    Scenario(
        "speculation: the build ahead fails, the one behind is rebuilt without it",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(ev.Enqueue(2, "h2")),
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(gates(2, "h2")),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci a1", "build b2 #2@h2 on I1")),
            Step(ev.IntegrationBuilt("b2", "I12"), ("checks b2 I12 ci a1",)),
            Step(
                failed("I1", "boom"),
                (
                    "delete b1",
                    "delete b2",
                    "eject #1: required check ci failure: boom",
                    "done #1@h1 failure",
                    "build b3 #2@h2 on B0",
                ),
            ),
        ),
        lambda s: [(b.build_id, b.base_sha) for b in s.builds] == [("b3", "B0")],
        replace(ONE_CHECK, parallel_checks=2),
    ),
    Scenario(
        "speculation: a result behind stays valid; passed builds fast-forward in order",
        (
            Step(ev.Enqueue(1, "h1")),
            Step(ev.Enqueue(2, "h2")),
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(gates(2, "h2")),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci a1", "build b2 #2@h2 on I1")),
            Step(ev.IntegrationBuilt("b2", "I12"), ("checks b2 I12 ci a1",)),
            Step(ci_passed("I12")),  # not at the front: waits
            Step(ci_passed("I1"), ("ff b1 B0->I1",)),
            Step(
                ev.FastForwarded("b1", "I1"),
                ("delete b1", "release #1", "done #1@h1 success", "ff b2 I1->I12"),
            ),
            Step(ev.FastForwarded("b2", "I12"), ("delete b2", "release #2", "done #2@h2 success")),
        ),
        lambda s: s.base_sha == "I12" and s.merged_prs == {1, 2},
        replace(ONE_CHECK, parallel_checks=2),
    ),
    Scenario(
        "speculation: a failure behind a testing build is judged when the builds ahead pass",
        (
            *ENQUEUE_THREE,
            Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
            Step(gates(2, "h2")),
            Step(gates(3, "h3")),
            Step(ev.IntegrationBuilt("b1", "I1"), ("checks b1 I1 ci a1", "build b2 #2@h2 on I1")),
            Step(ev.IntegrationBuilt("b2", "I12"), ("checks b2 I12 ci a1",)),
            # #2's tree fails while #1 is still tested: set aside, #3 is stacked without it
            Step(failed("I12", "bad two"), ("build b3 #3@h3 on I1",)),
            Step(
                ci_passed("I1"),
                (
                    "delete b2",
                    "eject #2: required check ci failure: bad two",
                    "done #2@h2 failure",
                    "ff b1 B0->I1",
                ),
            ),
        ),
        lambda s: [(b.build_id, b.base_sha) for b in s.builds] == [("b1", "B0"), ("b3", "I1")],
        replace(ONE_CHECK, parallel_checks=2),
    ),
]


@pytest.mark.parametrize("scenario", THROUGHPUT_SCENARIOS, ids=lambda s: s.name)
def test_queue_engine_throughput_scenario(scenario: Scenario) -> None:
    state, _ = run(scenario)
    assert scenario.final(state), state


def test_queue_engine_pretest_stacks_only_prs_that_passed_in_isolation() -> None:
    config = replace(ONE_CHECK, batch_size=2, parallel_checks=2, pretest=True)
    state, _ = run(
        Scenario(
            "pretest",
            (
                Step(ev.Enqueue(1, "h1")),
                Step(ev.Enqueue(2, "h2")),
                Step(gates(1, "h1"), ("build b1 #1@h1 on B0",)),
                Step(gates(2, "h2"), ("build b2 #2@h2 on B0",)),
                Step(ev.IntegrationBuilt("b1", "J1"), ("checks b1 J1 ci a1",)),
                Step(ev.IntegrationBuilt("b2", "J2"), ("checks b2 J2 ci a1",)),
                Step(ci_passed("J1"), ("delete b1", "build b3 #1@h1 on B0")),
                Step(
                    failed("J2", "bad"),
                    ("delete b2", "eject #2: required check ci failure: bad", "done #2@h2 failure"),
                ),
            ),
            config=config,
        )
    )
    assert [b.bisecting for b in state.builds] == [False]
    assert (1, "h1") in state.cleared
    assert 2 not in state.merged_prs


def test_queue_engine_explains_isolation_and_pending_failures() -> None:
    state, _ = run(
        Scenario(
            "bisect", THROUGHPUT_SCENARIOS[2].steps[:11], config=THROUGHPUT_SCENARIOS[2].config
        )
    )
    isolated = explain(state, 1)
    assert isolated is not None
    assert isolated.why.startswith("isolation build b2 (#1, #2) on B0")
    state, _ = run(
        Scenario(
            "judged later", THROUGHPUT_SCENARIOS[6].steps[:9], config=THROUGHPUT_SCENARIOS[6].config
        )
    )
    pending = explain(state, 2)
    assert pending is not None
    assert "judged once the builds ahead of it pass" in pending.why


def drive(config: QueueConfig, *events: ev.Event) -> tuple[QueueState, tuple[Effect, ...]]:
    """Feed `events` from an empty queue; the state and the last step's effects."""
    state = initial_state("acme/app", config, "B0")
    effects: tuple[Effect, ...] = ()
    for event in events:
        state, effects = step(state, event, T0)
    return state, effects


@pytest.mark.parametrize(("floor", "stacked"), [(0.5, True), (0.85, False)])
def test_queue_engine_speculation_floor_stacks_new_prs_while_the_stack_is_likely_to_pass(
    floor: float, stacked: bool
) -> None:
    config = replace(ONE_CHECK, batch_size=4, parallel_checks=3, pretest=True)
    config = replace(config, speculation_floor=floor)
    state, _ = drive(
        config,
        ev.Enqueue(1, "h1"),
        ev.Enqueue(2, "h2"),
        gates(1, "h1"),
        ev.IntegrationBuilt("b1", "I1"),
        gates(2, "h2"),
    )
    first, second = state.builds
    assert not first.bisecting  # 0.9 >= the floor: stacked
    assert first.base_sha == "B0"
    # Under #1 (bad at the prior 10%), #2 is stacked only while 0.9 * 0.9 >= the floor.
    assert second.bisecting is not stacked
    assert second.base_sha == ("I1" if stacked else "B0")


def test_queue_engine_merge_isolated_fast_forwards_a_passed_isolation_build_on_the_base() -> None:
    config = replace(ONE_CHECK, batch_size=2, pretest=True, merge_isolated=True)
    state, effects = drive(
        config,
        ev.Enqueue(1, "h1"),
        gates(1, "h1"),
        ev.IntegrationBuilt("b1", "J1"),
        ci_passed("J1"),
    )
    assert [compact(e) for e in effects if isinstance(e, FastForwardBase)] == ["ff b1 B0->J1"]
    state, _ = step(state, ev.FastForwarded("b1", "J1"), T0)
    assert state.base_sha == "J1"
    assert 1 in state.merged_prs
    assert not state.builds
    # Without the flag the same build only clears #1, which is tested again in the stack.
    state, effects = drive(
        replace(config, merge_isolated=False),
        ev.Enqueue(1, "h1"),
        gates(1, "h1"),
        ev.IntegrationBuilt("b1", "J1"),
        ci_passed("J1"),
    )
    assert not any(isinstance(e, FastForwardBase) for e in effects)
    assert [(b.prs, b.bisecting) for b in state.builds] == [((1,), False)]


def test_queue_engine_merge_isolated_waits_for_the_stack_and_base_moved_to_it_merges() -> None:
    config = replace(ONE_CHECK, batch_size=1, parallel_checks=2, pretest=True)
    config = replace(config, merge_isolated=True)
    state, _ = drive(
        config,
        ev.Enqueue(1, "h1"),
        ev.Enqueue(2, "h2"),
        gates(1, "h1"),
        gates(2, "h2"),
        ev.IntegrationBuilt("b1", "J1"),
        ev.IntegrationBuilt("b2", "J2"),
        ci_passed("J1"),  # #1 merges directly (the stack is empty)
    )
    passed_build = state.build("b1")
    assert passed_build is not None
    assert passed_build.state is BuildState.PASSED
    state, _ = step(state, ev.BaseMoved("J1"), T0)  # the push webhook before the report
    assert state.base_sha == "J1"
    assert 1 in state.merged_prs
    # b2 was made on B0, which is no longer the base: it only clears #2.
    state, effects = step(state, ci_passed("J2"), T0)
    assert not any(isinstance(e, FastForwardBase) for e in effects)
    assert (2, "h2") in state.cleared


@pytest.mark.parametrize(("cleared_batch_size", "stacked"), [(0, (1, 2, 3)), (2, (1, 2))])
def test_queue_engine_cleared_batch_size_bounds_batches_of_cleared_prs(
    cleared_batch_size: int, stacked: tuple[int, ...]
) -> None:
    config = replace(ONE_CHECK, batch_size=3, pretest=True, batch_wait=timedelta(minutes=10))
    config = replace(config, cleared_batch_size=cleared_batch_size)
    state = initial_state("acme/app", config, "B0")
    for pr in (1, 2, 3):
        state, _ = step(state, ev.Enqueue(pr, f"h{pr}"), T0)
        state, _ = step(state, gates(pr, f"h{pr}"), T0)
    later = T0 + timedelta(minutes=10)
    for event in (ev.Tick(), ev.IntegrationBuilt("b1", "J1"), ci_passed("J1")):
        state, _ = step(state, event, later)
    assert [(b.prs, b.bisecting) for b in state.builds] == [(stacked, False)]


def test_queue_engine_isolation_slots_run_isolation_builds_beside_the_stack() -> None:
    config = replace(ONE_CHECK, batch_size=1, parallel_checks=1, pretest=True)
    events = [e for pr in (1, 2, 3, 4) for e in (ev.Enqueue(pr, f"h{pr}"), gates(pr, f"h{pr}"))]
    events += [ev.IntegrationBuilt("b1", "J1"), ci_passed("J1")]  # #1 cleared: stacked
    shared, _ = drive(config, *events)
    # One slot for everything: #1's isolation build, then #1 stacked; #2-#4 wait.
    assert [(b.prs, b.bisecting) for b in shared.builds] == [((1,), False)]
    separate, _ = drive(replace(config, isolation_slots=2), *events)
    # Two isolation builds at a time beside the one stacked build.
    assert [(b.prs, b.bisecting) for b in separate.builds] == [
        ((2,), True),
        ((1,), False),
        ((3,), True),
    ]
    assert {b.base_sha for b in separate.builds} == {"B0"}


@pytest.mark.parametrize(("waiting", "next_isolation_build"), [(0, (2,)), (2, (2, 3))])
def test_queue_engine_untested_half_rejoins_a_backlog_of_untested_prs(
    waiting: int, next_isolation_build: tuple[int, ...]
) -> None:
    """With isolation slots, a failed first half leaves its second half untested: tested on its
    own while the queue is short, back among the untested PRs (tested in a full batch) while a
    full batch waits."""
    config = replace(ONE_CHECK, batch_size=2, pretest=True, batch_wait=timedelta(minutes=10))
    config = replace(config, isolation_slots=1)
    events = [e for pr in (1, 2) for e in (ev.Enqueue(pr, f"h{pr}"), gates(pr, f"h{pr}"))]
    events += [ev.IntegrationBuilt("b1", "J1"), failed("J1", "bad")]  # bisected: b2 is #1
    for pr in range(3, 3 + waiting):
        events += [ev.Enqueue(pr, f"h{pr}"), gates(pr, f"h{pr}")]
    state, _ = drive(config, *events)
    assert [(b.prs, b.bisecting) for b in state.builds] == [((1,), True)]
    state, _ = drive(config, *events, ev.IntegrationBuilt("b2", "J2"), failed("J2", "bad"))
    assert 1 not in {e.pr for e in state.entries}  # ejected: it failed alone
    assert not state.pairs
    assert [(b.prs, b.bisecting) for b in state.builds] == [(next_isolation_build, True)]
