"""The merge queue running for real: forge webhooks, simulated CI, a bot worker process.

Three PRs are enqueued (Enqueue + passing gates, as the gates handlers submit them) while an
outsider fast-forwards main with the App's token and one PR is pushed to while it is tested.
Then: main is linear (every first-parent commit since the start is the outsider's or a queue
integration commit), every commit the queue put on main has a green `ci` run for its exact
SHA, the pushed PR was retested and merged at its new head, nothing merged twice, and every
outbox row was performed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from queue_world import (
    BASE,
    CONFIG,
    QUEUE_MARK,
    REPO,
    QueueWorld,
    git,
    queue_world,
    wait_until,
)

from trunkline.queue.crashpoints import (
    CrashPoint,
    NoCrashPoints,
    crash_points_from_env,
    parse_crash_spec,
)
from trunkline.queue.events import Enqueue
from trunkline.queue.model import BuildState, OutcomeKind
from trunkline.store.tables import OutboxState


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueWorld]:
    tmp = tmp_path_factory.mktemp("queue-runner")
    with queue_world(tmp) as value:
        yield value


def _testing(world: QueueWorld, pr: int, base_sha: str, head_sha: str) -> bool:
    world.main_sha()
    build = world.state().build_of(pr)
    return (
        build is not None
        and build.state is BuildState.TESTING
        and build.base_sha == base_sha
        and build.head_of(pr) == head_sha
    )


def test_queue_runner_merges_three_prs_while_the_base_moves_and_a_pr_is_pushed(
    world: QueueWorld,
) -> None:
    worker = world.start_worker()
    start = world.main_sha()
    prs = {}
    for name in ("one.txt", "two.txt", "three.txt"):
        prs[name] = world.open_pr(name)
    (pr1, head1_old), (pr2, _), (pr3, _) = prs.values()
    world.hold_ci()
    try:
        for pr, head in prs.values():
            world.enqueue(pr, head, start)

        # The base moves while PR 1 is tested: its build is void and rebuilt on the new main.
        wait_until("PR 1 testing on the start", lambda: _testing(world, pr1, start, head1_old))
        outsider = world.outsider_push("outsider.txt")
        wait_until("PR 1 retested", lambda: _testing(world, pr1, outsider, head1_old))

        # PR 1 is pushed to while it is tested: its build is void, the gates handlers
        # re-approve the new head once the queue has seen it, and it is tested again (after
        # PR 2, which takes the free slot while PR 1 waits for its gates).
        head1 = world.push_to_pr("one.txt", "one-more.txt")
        wait_until(
            "the queue sees PR 1's new head",
            lambda: (entry := world.state().entry(pr1)) is not None and entry.head_sha == head1,
        )
        world.approve(pr1, head1)
    finally:
        world.release_ci()

    wait_until("all three merged", lambda: world.merged({pr1, pr2, pr3}), timeout=240)
    assert worker.poll() is None, "the worker died"

    state = world.state()
    merged = {o.pr: o for o in state.recent if o.kind is OutcomeKind.MERGED}
    assert set(merged) == {pr1, pr2, pr3}
    assert not [o for o in state.recent if o.kind is not OutcomeKind.MERGED]
    assert merged[pr1].head_sha == head1 != head1_old

    chain = world.first_parent_chain(start)
    assert outsider in chain
    queue_commits = [sha for sha in chain if sha != outsider]
    assert len(queue_commits) == 3, "one integration commit per PR, nothing merged twice"
    merged_heads = []
    for sha in queue_commits:
        assert QUEUE_MARK in git(world.clone, "log", "-1", "--format=%B", sha)
        assert world.green_ci(sha), f"{sha} is on main without a green ci run for it"
        parents = git(world.clone, "rev-list", "--parents", "-n", "1", sha).split()[1:]
        assert len(parents) == 2
        merged_heads.append(parents[1])
    assert sorted(merged_heads) == sorted([head1, prs["two.txt"][1], prs["three.txt"][1]])
    assert {o.merged_sha for o in merged.values()} == set(queue_commits)
    # main was only ever seen at the start, the outsider's commit or a tested queue commit.
    assert world.mains_seen <= {start, outsider, *queue_commits}
    assert git(world.clone, "show", f"forge/{BASE}:one-more.txt") == "more"

    wait_until(
        "every outbox row performed",
        lambda: all(r.state is OutboxState.DONE for r in world.queues.outbox_records(REPO, BASE)),
    )


def test_queue_runner_ejects_a_pr_whose_integration_fails_ci(world: QueueWorld) -> None:
    if not world.workers or world.workers[-1].poll() is not None:
        world.start_worker()
    start = world.main_sha()
    pr, head = world.open_pr("BROKEN")
    world.enqueue(pr, head, start)
    wait_until(
        "PR ejected",
        lambda: (o := world.state().outcome(pr)) is not None and o.kind is OutcomeKind.EJECTED,
        timeout=120,
    )
    assert world.main_sha() == start
    comments = world.api("GET", f"/repos/{REPO}/issues/{pr}/comments", world.alice)
    assert any("Removed from the merge queue" in c["body"] for c in comments)
    runs = world.api("GET", f"/repos/{REPO}/commits/{head}/check-runs", world.alice)
    queue_runs = [r for r in runs["check_runs"] if r["name"] == "trunkline/queue"]
    assert len(queue_runs) == 1
    wait_until(
        "queue check run failed",
        lambda: any(
            r["name"] == "trunkline/queue" and r["conclusion"] == "failure"
            for r in world.api("GET", f"/repos/{REPO}/commits/{head}/check-runs", world.alice)[
                "check_runs"
            ]
        ),
    )


def test_queue_runner_dequeues_a_pr_closed_without_merging(world: QueueWorld) -> None:
    if not world.workers or world.workers[-1].poll() is not None:
        world.start_worker()
    start = world.main_sha()
    pr, head = world.open_pr("closed.txt")
    # Enqueued but its gates never pass: it waits until its PR is closed.
    world.queues.submit(REPO, BASE, Enqueue(pr, head), config=CONFIG, base_sha=start)
    world.api("PATCH", f"/repos/{REPO}/pulls/{pr}", world.alice, {"state": "closed"})
    wait_until(
        "PR dequeued",
        lambda: (o := world.state().outcome(pr)) is not None and o.kind is OutcomeKind.DEQUEUED,
    )
    assert world.state().entry(pr) is None
    assert world.main_sha() == start


def test_queue_runner_crash_spec_is_validated() -> None:
    assert parse_crash_spec("fast_forwarded:3").count == 3
    assert parse_crash_spec("claimed").point is CrashPoint.CLAIMED
    with pytest.raises(ValueError, match="unknown crash point 'nope'"):
        parse_crash_spec("nope:1")
    with pytest.raises(ValueError, match="count must be >= 1"):
        parse_crash_spec("claimed:0")
    assert isinstance(crash_points_from_env({}), NoCrashPoints)
