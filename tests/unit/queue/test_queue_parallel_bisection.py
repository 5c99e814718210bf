"""Parallel bisection (`QueueConfig.parallel_bisection`): a failed build starts one probe round
(its proper prefixes and a rerun of the whole, on the failed build's base); the longest
passing candidate merges, the PR after it is ejected, the rest rejoin the queue."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from trunkline.queue import events as ev
from trunkline.queue.effects import (
    BuildIntegration,
    Effect,
    Eject,
    FastForwardBase,
    ReleaseLocks,
    RequestChecks,
)
from trunkline.queue.engine import initial_state, step
from trunkline.queue.model import (
    ALL_GATES,
    CheckConclusion,
    OutcomeKind,
    QueueConfig,
    QueueConfigError,
    QueueState,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = QueueConfig(
    base="main",
    required_checks=("ci",),
    batch_size=3,
    parallel_checks=2,
    parallel_bisection=True,
    batch_wait=timedelta(minutes=5),  # a partial batch waits, so tests can fill one
)


def short(effect: Effect) -> str | None:
    match effect:
        case BuildIntegration():
            prs = ",".join(f"#{pr}" for pr, _ in effect.prs)
            return f"build {effect.build_id} {prs} on {effect.base_sha}"
        case RequestChecks():
            return f"checks {effect.build_id} {effect.integration_sha} a{effect.attempt}"
        case FastForwardBase():
            return f"ff {effect.build_id} {effect.expected_old_sha}->{effect.new_sha}"
        case Eject():
            return f"eject #{effect.pr}: {effect.reason}"
        case ReleaseLocks():
            return f"release #{effect.pr}"
        case _:
            return None


class Queue:
    def __init__(self, config: QueueConfig) -> None:
        self.state: QueueState = initial_state("acme/app", config, "B0")
        self.now = T0

    def send(self, event: ev.Event) -> list[str]:
        self.state, effects = step(self.state, event, self.now)
        return [s for s in map(short, effects) if s is not None]

    def enqueue(self, *prs: int) -> list[str]:
        out: list[str] = []
        for pr in prs:
            out += self.send(ev.Enqueue(pr, f"h{pr}"))
        for pr in prs:
            reports = tuple(ev.GateReport(g, True, "ok") for g in ALL_GATES)
            out += self.send(ev.GatesUpdated(pr, f"h{pr}", reports))
        return out


def ok(sha: str) -> ev.Event:
    return ev.CheckCompleted(sha, "ci", CheckConclusion.SUCCESS, "green")


def bad(sha: str, summary: str = "tests failed") -> ev.Event:
    return ev.CheckCompleted(sha, "ci", CheckConclusion.FAILURE, summary)


def failed_batch(config: QueueConfig) -> Queue:
    """#1-#3 in one build b1 (integration J1 on B0) whose check failed: a round started."""
    queue = Queue(config)
    assert queue.enqueue(1, 2, 3)[-1] == "build b1 #1,#2,#3 on B0"
    assert queue.send(ev.IntegrationBuilt("b1", "J1")) == ["checks b1 J1 a1"]
    assert queue.send(bad("J1")) == [
        "checks b1 J1 a2",
        "build b2 #1 on B0",
        "build b3 #1,#2 on B0",
    ]
    queue.send(ev.IntegrationBuilt("b2", "P1"))
    queue.send(ev.IntegrationBuilt("b3", "P12"))
    return queue


def test_queue_parallel_bisection_merges_the_longest_passing_prefix_and_ejects_the_next() -> None:
    queue = failed_batch(CONFIG)
    assert queue.send(ok("P1")) == []
    assert queue.send(bad("P12", "#2 breaks it")) == []  # the rerun of J1 is still out
    queue.now += timedelta(minutes=6)  # #3, back in the queue, has waited its batch wait
    out = queue.send(bad("J1", "tests failed again"))
    assert "ff b2 B0->P1" in out
    assert "eject #2: required check ci failure: tests failed" in out
    assert "build b4 #3 on P1" in out  # #3 rejoined the queue: stacked on the winner
    assert queue.send(ev.FastForwarded("b2", "P1")) == ["release #1"]
    assert queue.state.merged_prs == {1}
    outcome = queue.state.outcome(2)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.EJECTED


def test_queue_parallel_bisection_culprit_first_ejects_it_and_requeues_the_rest() -> None:
    queue = failed_batch(CONFIG)
    queue.send(bad("P1"))
    queue.send(bad("P12"))
    queue.now += timedelta(minutes=6)
    out = queue.send(bad("J1"))
    assert "eject #1: required check ci failure: tests failed" in out
    assert "build b4 #2,#3 on B0" in out
    assert {e.pr for e in queue.state.entries} == {2, 3}


def test_queue_parallel_bisection_a_passing_rerun_is_a_flake_and_merges_the_batch() -> None:
    queue = failed_batch(CONFIG)
    out = queue.send(ok("J1"))
    assert "ff b1 B0->J1" in out
    assert not any(b.probe_of for b in queue.state.builds)
    assert queue.send(ok("P1")) == []  # a late probe report changes nothing
    out = queue.send(ev.FastForwarded("b1", "J1"))
    assert out.count("release #1") + out.count("release #2") + out.count("release #3") == 3


def test_queue_parallel_bisection_single_pr_is_ejected_only_after_two_failures() -> None:
    queue = Queue(replace(CONFIG, batch_size=1, parallel_checks=1))
    queue.enqueue(1)
    queue.send(ev.IntegrationBuilt("b1", "J1"))
    assert queue.send(bad("J1")) == ["checks b1 J1 a2"]
    assert queue.send(bad("J1")) == ["eject #1: required check ci failure: tests failed"]


def test_queue_parallel_bisection_holding_the_stack_voids_builds_behind_and_waits() -> None:
    queue = Queue(replace(CONFIG, batch_size=1, parallel_checks=2))
    queue.enqueue(1, 2)
    queue.now += timedelta(minutes=10)
    queue.send(ev.IntegrationBuilt("b1", "J1"))
    queue.send(ev.IntegrationBuilt("b2", "J2"))
    stacked = queue.state.build("b2")
    assert stacked is not None
    assert stacked.base_sha == "J1"
    queue.enqueue(3)
    out = queue.send(bad("J1"))
    assert out == ["checks b1 J1 a2"]  # b2 is void (stacked on J1); nothing new is stacked
    assert [b.build_id for b in queue.state.builds] == ["b1"]


def test_queue_parallel_bisection_off_the_stack_rebuilds_builds_behind_at_once() -> None:
    queue = Queue(replace(CONFIG, batch_size=2, parallel_checks=2, bisection_holds_stack=False))
    queue.enqueue(1, 2)
    queue.send(ev.IntegrationBuilt("b1", "J1"))
    queue.enqueue(3)
    queue.now += timedelta(minutes=6)  # the batch wait is over; the check timeouts are not
    assert queue.send(ev.Tick()) == ["build b2 #3 on J1"]
    queue.send(ev.IntegrationBuilt("b2", "J3"))
    out = queue.send(bad("J1"))
    assert "build b3 #1 on B0" in out  # the probe
    assert "build b4 #3 on B0" in out  # #3 rebuilt on the failed build's base at once
    queue.send(ev.IntegrationBuilt("b3", "P1"))
    queue.send(ev.IntegrationBuilt("b4", "J4"))
    queue.send(ok("P1"))
    out = queue.send(bad("J1"))  # #2 convicted; #1 passed but the stack is not empty: requeued
    assert "eject #2: required check ci failure: tests failed" in out
    assert 1 in {e.pr for e in queue.state.entries}
    assert queue.send(ok("J4"))[-1] == "ff b4 B0->J4"


def test_queue_parallel_bisection_a_dequeued_member_voids_the_round() -> None:
    queue = failed_batch(CONFIG)
    queue.send(ev.Dequeue(2, by="alice", reason="not ready"))
    assert not any(b.probed or b.probe_of for b in queue.state.builds)
    assert {e.pr for e in queue.state.entries} == {1, 3}


def test_queue_parallel_bisection_cannot_be_combined_with_pretest() -> None:
    with pytest.raises(QueueConfigError, match="parallel_bisection"):
        replace(CONFIG, pretest=True)
