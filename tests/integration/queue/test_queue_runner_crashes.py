"""SIGKILL the queue's bot worker at every crash point of the merge path, restart it, repeat.

For each crash point the worker process is started with `TRUNKLINE_TEST_CRASH_AT=<point>:1`
(it kills itself with SIGKILL the first time it passes the point) and restarted the same way
after every death until it has died `KILLS` times, then once more without crash points. Then:
no entry lost (every enqueued PR merged), none merged twice (one integration commit per PR on
main's first-parent chain), main never held an untested commit (every main seen while polling
and every commit the queue added has a green `ci` run for its exact SHA), and every outbox
row was performed.

Points passed once per PR (`checks_passed`, `fast_forwarded`: the re-run finds the work done
and does not pass them again) get one PR per kill; the others die again on the re-run of the
same effect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from queue_world import BASE, QUEUE_MARK, REPO, QueueWorld, git, queue_world, wait_until

from trunkline.queue.crashpoints import CrashPoint
from trunkline.queue.model import OutcomeKind
from trunkline.store.tables import OutboxState

KILLS = 5
ONCE_PER_PR = {CrashPoint.CHECKS_PASSED, CrashPoint.FAST_FORWARDED}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueWorld]:
    tmp = tmp_path_factory.mktemp("queue-crashes")
    with queue_world(tmp) as value:
        yield value


@pytest.mark.slow
@pytest.mark.parametrize("point", list(CrashPoint))
def test_queue_runner_survives_sigkill_at(world: QueueWorld, point: CrashPoint) -> None:
    start = world.main_sha()
    world.mains_seen = {start}
    count = KILLS if point in ONCE_PER_PR else 2
    prs = [world.open_pr(f"{point.value}-{index}.txt") for index in range(count)]
    for pr, head in prs:
        world.enqueue(pr, head, start)
    numbers = {pr for pr, _ in prs}

    kills = 0
    worker = world.start_worker(crash_at=f"{point.value}:1")
    deadline = time.monotonic() + 150
    while not (world.merged(numbers) and kills >= KILLS):
        assert time.monotonic() < deadline, f"not merged after {kills} kills at {point}"
        if worker.poll() is not None:
            assert worker.returncode == -9, f"worker exited with {worker.returncode}"
            kills += 1
            world.stop_workers()
            worker = world.start_worker(crash_at=f"{point.value}:1" if kills < KILLS else None)
        time.sleep(0.05)
    world.stop_workers()
    assert kills == KILLS, f"the worker died {kills} times at {point}, expected {KILLS}"

    state = world.state()
    outcomes = [o for o in state.recent if o.pr in numbers]
    assert sorted(o.pr for o in outcomes) == sorted(numbers), "an entry was lost or doubled"
    assert all(o.kind is OutcomeKind.MERGED for o in outcomes)

    chain = world.first_parent_chain(start)
    assert len(chain) == len(numbers), "one integration commit per PR, nothing merged twice"
    heads = []
    for sha in chain:
        assert QUEUE_MARK in git(world.clone, "log", "-1", "--format=%B", sha)
        heads.append(git(world.clone, "rev-list", "--parents", "-n", "1", sha).split()[2])
    assert sorted(heads) == sorted(head for _, head in prs)
    for sha in world.mains_seen - {start}:
        assert sha in chain, f"main held {sha}, which the queue did not add"
        assert world.green_ci(sha), f"main held untested {sha}"
    for sha in chain:
        assert world.green_ci(sha), f"{sha} is on main without a green ci run for it"

    # The last worker performs what is left; every effect ends done, exactly once.
    worker = world.start_worker()
    wait_until(
        "every outbox row performed",
        lambda: all(r.state is OutboxState.DONE for r in world.queues.outbox_records(REPO, BASE)),
    )
    comments = [
        c["body"]
        for pr in numbers
        for c in world.api("GET", f"/repos/{REPO}/issues/{pr}/comments", world.alice)
    ]
    markers = [body.splitlines()[0] for body in comments if "queue-effect" in body]
    assert len(markers) == len(set(markers)), "a comment was posted twice"
    world.stop_workers()
