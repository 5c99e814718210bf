"""A batch of four PRs, one bad, through the real queue runner on the forge and its CI.

The queue runs with `batch_size=4`: the four PRs are tested together as ONE integration
commit (base + the four heads), which fails CI; the batch is bisected (isolation builds on
main, off the stack) until the bad PR is isolated and ejected with the failing check's
summary; the three good PRs merge. main stays linear and green: every first-parent commit
since the start is a queue integration commit with a green `ci` run for its exact SHA, whose
first parent is the commit before it and whose other parents are exactly the heads of the
PRs merged with it; the forge marks the good PRs merged; the bad PR's file never reaches main.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from queue_world import BASE, QUEUE_MARK, REPO, QueueWorld, git, queue_world, wait_until

from trunkline.queue.events import Enqueue, GateReport, GatesUpdated, Tick
from trunkline.queue.model import ALL_GATES, OutcomeKind, QueueConfig

BATCH_CONFIG = QueueConfig(
    base=BASE,
    required_checks=("ci",),
    check_timeout=timedelta(minutes=30),
    check_start_timeout=timedelta(minutes=30),
    batch_size=4,
    batch_wait=timedelta(seconds=1),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueWorld]:
    tmp = tmp_path_factory.mktemp("queue-batches")
    with queue_world(tmp) as value:
        yield value


def _enqueue(world: QueueWorld, pr: int, head: str, base_sha: str) -> None:
    world.queues.submit(REPO, BASE, Enqueue(pr, head), config=BATCH_CONFIG, base_sha=base_sha)


def _approve(world: QueueWorld, pr: int, head: str) -> None:
    reports = tuple(GateReport(gate, True, "test") for gate in ALL_GATES)
    world.queues.submit(REPO, BASE, GatesUpdated(pr, head, reports))


def test_queue_batch_of_four_with_a_bad_pr_merges_the_three_good_ones(world: QueueWorld) -> None:
    worker = world.start_worker()
    start = world.main_sha()
    good = [world.open_pr(name) for name in ("alpha.txt", "beta.txt", "gamma.txt")]
    bad = world.open_pr("BROKEN")
    prs = [good[0], good[1], bad, good[2]]
    world.hold_ci()
    try:
        for pr, head in prs:
            _enqueue(world, pr, head, start)
        for pr, head in prs:  # the fourth approval fills the batch: one build of four
            _approve(world, pr, head)
        build = world.state().build_of(prs[0][0])
        assert build is not None
        assert build.prs == tuple(pr for pr, _ in prs)
    finally:
        world.release_ci()

    def settled() -> bool:
        # The scheduler's periodic Tick (lets a partial batch start after batch_wait).
        world.queues.submit(REPO, BASE, Tick())
        return world.merged({pr for pr, _ in good}) and world.state().outcome(bad[0]) is not None

    wait_until("three merged and the bad one out", settled, timeout=300, interval=0.5)
    assert worker.poll() is None, "the worker died"

    state = world.state()
    outcome = state.outcome(bad[0])
    assert outcome is not None
    assert outcome.kind is OutcomeKind.EJECTED
    assert outcome.reason.startswith("required check ci failure"), outcome.reason
    merged = {o.pr: o for o in state.recent if o.kind is OutcomeKind.MERGED}
    assert set(merged) == {pr for pr, _ in good}
    assert not state.entries

    chain = world.first_parent_chain(start)
    assert chain, "main did not move"
    tips = {o.merged_sha for o in merged.values() if o.merged_sha is not None}
    assert tips == set(chain), "every first-parent commit is a tip the queue merged at"
    heads = {pr: head for pr, head in prs}
    previous = start
    for sha in reversed(chain):  # oldest first
        assert QUEUE_MARK in git(world.clone, "log", "-1", "--format=%B", sha)
        assert world.green_ci(sha), f"main moved to {sha} without a green ci run for it"
        parents = git(world.clone, "rev-list", "--parents", "-n", "1", sha).split()[1:]
        assert parents[0] == previous, "one commit per build, on the commit before it"
        with_it = {o.pr for o in merged.values() if o.merged_sha == sha}
        assert sorted(parents[1:]) == sorted(heads[pr] for pr in with_it)
        previous = sha
    for pr, _ in good:
        pull = world.api("GET", f"/repos/{REPO}/pulls/{pr}", world.alice)
        assert pull["merged"] is True, f"#{pr} is not marked merged"
    # main was only ever seen at the start or at a tested tip.
    assert world.mains_seen <= {start, *tips}
    for name in ("alpha.txt", "beta.txt", "gamma.txt"):
        assert git(world.clone, "show", f"forge/{BASE}:{name}") == "ok"
    assert git(world.clone, "show", f"forge/{BASE}:BROKEN", check=False) == ""

    comments = world.api("GET", f"/repos/{REPO}/issues/{bad[0]}/comments", world.alice)
    assert any("required check ci failure" in c["body"] for c in comments), comments
