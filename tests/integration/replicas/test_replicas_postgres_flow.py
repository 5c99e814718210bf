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
- both replicas decided pipeline events; no job died.

Each replica has a data directory of its own (nothing is shared but the database and the
forge): the executor pushes its commit before it answers and later jobs work from the pushed
branch, so the self-check, the pull request and the review may run on either replica. The
bots log at INFO so that a failed check can show what happened to the items concerned.
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
                tmp_path / f"{name}-data",  # a disk of its own: nothing shared but the database
                TRUNKLINE_LOG_LEVEL="INFO",  # the evidence when a check fails
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


def _main_pushes(world: DispatchWorld) -> list[dict[str, object]]:
    """The forge's `push` deliveries to main, oldest first."""
    found: list[dict[str, object]] = []
    seen: set[str] = set()
    for summary in world.forge.admin("GET", "deliveries"):
        if summary.get("event") != "push" or summary.get("guid") in seen:
            continue
        seen.add(str(summary.get("guid")))
        payload = world.forge.admin("GET", f"deliveries/{summary['id']}").get("payload") or {}
        if payload.get("ref") == "refs/heads/main":
            found.append(payload)
    return found


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


def _run_evidence(
    world: DispatchWorld,
    engine: Engine,
    counted: dict[tuple[int, str], int],
    expected: dict[tuple[int, str], int],
) -> str:
    """Why a role ran other than once: its agent runs, the item's jobs, the bots' warnings."""
    wrong = sorted(
        key for key in set(counted) | set(expected) if counted.get(key) != expected.get(key)
    )
    lines = [f"role runs other than once: {[(k, counted.get(k, 0)) for k in wrong]}"]
    with engine.connect() as conn:
        for issue in sorted({issue for issue, _ in wrong}):
            agent_runs = conn.execute(
                select(AgentRun.role, AgentRun.state, AgentRun.started_at, AgentRun.finished_at)
                .join(WorkItemRow, AgentRun.work_item_id == WorkItemRow.id)
                .where(WorkItemRow.issue_number == issue)
                .order_by(AgentRun.id)
            ).all()
            jobs = conn.execute(
                select(Job.key, Job.state, Job.attempts, Job.claimed_by, Job.last_error)
                .where(Job.key.like(f"pipeline_command:{REPO}#{issue}:%"))
                .order_by(Job.id)
            ).all()
            lines.append(f"#{issue} agent runs: {[tuple(map(str, r)) for r in agent_runs]}")
            lines.append(f"#{issue} jobs: {[tuple(map(str, j)) for j in jobs]}")
    about = [f'"alice/demo#{issue}' for issue in sorted({issue for issue, _ in wrong})]
    for bot in world.bots:
        notable = [
            line[:700]
            for line in bot.log_tail(20_000_000).splitlines()
            if '"level": "WARNING"' in line
            or '"level": "ERROR"' in line
            or any(mention in line for mention in about)
        ]
        lines.append(f"--- {bot.name}:\n" + "\n".join(notable[-80:]))
    return "\n".join(lines)


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
        states = _states(engine)
        unfinished = {
            (issue, "unmerged"): 1 for issue, state in states.items() if state != "merged"
        }
        raise AssertionError(
            f"states after {FLOW_SECONDS}s: {dict(summary)}; queue entries whose gates were "
            f"never evaluated: {stalled}\n{_run_evidence(world, engine, unfinished, {})}"
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
    counted = {(issue, role): count for issue, role, count in runs}
    expected = {(issue, role): 1 for issue in issues for role in ROLES}
    assert counted == expected, _run_evidence(world, engine, counted, expected)

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

    # main has every change and only moved forward (fast-forwards, never forced)
    main = world.forge.git_path("alice", "demo")
    files = subprocess.run(
        ["git", "-C", str(main), "ls-tree", "-r", "--name-only", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(numbers) <= set(files)
    pushes = _main_pushes(world)
    assert pushes, "no push to main was delivered"
    assert not [push for push in pushes if push.get("forced")]
    tips = [str(push["after"]) for push in pushes]
    for before, after in itertools.pairwise(tips):
        forward = subprocess.run(
            ["git", "-C", str(main), "merge-base", "--is-ancestor", before, after], check=False
        )
        assert forward.returncode == 0, f"main moved from {before[:12]} to {after[:12]}"
    tip = subprocess.run(
        ["git", "-C", str(main), "rev-parse", "main"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert tips[-1] == tip

    # both replicas decided pipeline events (jobs' claims are cleared when done: their logs
    # tell); nothing died
    for bot in world.bots:
        assert '"message": "work item decided"' in bot.log_tail(20_000_000), bot.name
    with engine.connect() as conn:
        dead = conn.execute(
            select(Job.kind, Job.last_error).where(Job.state == JobState.DEAD)
        ).all()
    assert dead == []
