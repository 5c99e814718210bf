"""The durable queue service and the effect runner against real databases (no forge).

SQLite and PostgreSQL: queue rows are created on first use, effects land in the outbox with
one job each, replays insert nothing, results are fed back exactly once, concurrent writers
lose no update. The runner against the recording `FakeGitHub`: fast-forward accepted /
refused / already done, check runs and comments idempotent, locks released for the PR's
work item.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select

from trunkline.bot.queue_events import queue_tick
from trunkline.clock import FakeClock
from trunkline.github.fake import FakeGitHub
from trunkline.github.model import CheckConclusion as GitHubConclusion
from trunkline.github.model import CheckRunOutput, CheckRunRequest, CheckStatus
from trunkline.locks.leases import LockManager
from trunkline.queue.effects import BuildIntegration, Comment, FastForwardBase, PostCheckRun
from trunkline.queue.events import (
    CheckCompleted,
    Enqueue,
    GateReport,
    GatesUpdated,
    IntegrationBuilt,
)
from trunkline.queue.holders import lock_holder_of_pr
from trunkline.queue.model import ALL_GATES, CheckConclusion, OutcomeKind, QueueConfig
from trunkline.queue.runner import QueueEffectRunner, RepositoryAccess
from trunkline.queue.service import (
    EFFECT_JOB,
    QueueNotFoundError,
    QueueService,
    effect_job_key,
)
from trunkline.store.engine import make_engine
from trunkline.store.schema import upgrade
from trunkline.store.tables import Job, OutboxState, WorkItem
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

REPO = "acme/app"
BASE = "main"
CONFIG = QueueConfig(base=BASE, required_checks=("ci",))
OLD = "a" * 40
HEAD = "b" * 40
INTEGRATION = "c" * 40
GATES = tuple(GateReport(gate, True) for gate in ALL_GATES)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name per test, so tests sharing the session's PostgreSQL never meet."""
    del request
    return f"acme/t{uuid.uuid4().hex[:10]}"


def _clock() -> FakeClock:
    return FakeClock(current=datetime(2026, 5, 1, 9, 0, tzinfo=UTC))


def _effect_jobs(engine: Engine, repo: str) -> int:
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count())
            .select_from(Job)
            .where(Job.kind == EFFECT_JOB, Job.key.like(f"{EFFECT_JOB}:{repo}@%"))
        ).scalar_one()
    return int(count)


def _to_fast_forward(queues: QueueService, repo: str, pr: int = 7) -> FastForwardBase:
    queues.submit(repo, BASE, Enqueue(pr, HEAD), config=CONFIG, base_sha=OLD)
    effects = queues.submit(repo, BASE, GatesUpdated(pr, HEAD, GATES))
    build = next(e for e in effects if type(e).__name__ == "BuildIntegration")
    queues.complete_effect(build.key, [IntegrationBuilt("b1", INTEGRATION)])
    effects = queues.submit(repo, BASE, CheckCompleted(INTEGRATION, "ci", CheckConclusion.SUCCESS))
    return next(e for e in effects if isinstance(e, FastForwardBase))


def test_queue_service_creates_records_and_replays_nothing(engine: Engine, repo: str) -> None:
    queues = QueueService(engine, _clock())
    with pytest.raises(QueueNotFoundError, match="no merge queue"):
        queues.submit(repo, BASE, Enqueue(1, HEAD))
    assert queues.state(repo, BASE) is None

    queues.submit(repo, BASE, Enqueue(1, HEAD), config=CONFIG, base_sha=OLD)
    effects = queues.submit(repo, BASE, GatesUpdated(1, HEAD, GATES))
    assert effects
    records = queues.outbox_records(repo, BASE)
    assert {r.key for r in records} >= {e.key for e in effects}
    assert all(r.state is OutboxState.PENDING for r in records)
    assert _effect_jobs(engine, repo) == len(records)

    # The same event again changes nothing and records nothing.
    assert queues.submit(repo, BASE, GatesUpdated(1, HEAD, GATES)) == ()
    assert len(queues.outbox_records(repo, BASE)) == len(records)
    state = queues.state(repo, BASE)
    assert state is not None
    assert state.entry(1) is not None
    assert [s.repo for s in queues.states(repo)] == [repo]


def test_queue_service_feeds_an_effect_result_back_exactly_once(engine: Engine, repo: str) -> None:
    queues = QueueService(engine, _clock())
    queues.submit(repo, BASE, Enqueue(1, HEAD), config=CONFIG, base_sha=OLD)
    effects = queues.submit(repo, BASE, GatesUpdated(1, HEAD, GATES))
    build = next(e for e in effects if type(e).__name__ == "BuildIntegration")
    first = queues.complete_effect(build.key, [IntegrationBuilt("b1", INTEGRATION)])
    assert first is not None
    assert first
    version = queues.state(repo, BASE)
    assert queues.complete_effect(build.key, [IntegrationBuilt("b1", "d" * 40)]) is None
    assert queues.state(repo, BASE) == version
    record = queues.outbox(build.key)
    assert record is not None
    assert record.state is OutboxState.DONE
    assert effect_job_key("x" * 400).startswith(f"{EFFECT_JOB}:sha256:")


def test_queue_service_concurrent_submits_lose_nothing(engine: Engine, repo: str) -> None:
    queues = QueueService(engine, _clock())
    queues.submit(repo, BASE, Enqueue(100, HEAD), config=CONFIG, base_sha=OLD)
    errors: list[BaseException] = []

    def enqueue(first: int) -> None:
        try:
            for pr in range(first, first + 5):
                queues.submit(repo, BASE, Enqueue(pr, f"{pr:040d}"))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=enqueue, args=(n * 10,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    state = queues.state(repo, BASE)
    assert state is not None
    assert len(state.entries) == 31


# -- the runner against the fake GitHub (SQLite only: the runner's store use is the service's)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'runner.db'}")
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _runner(engine: Engine, github: FakeGitHub, tmp_path: Path) -> QueueEffectRunner:
    queues = QueueService(engine, _clock())
    access = RepositoryAccess(
        github=github,
        spec=RepositorySpec(REPO, "https://example.invalid/acme/app.git"),
        token=lambda: None,
    )
    return QueueEffectRunner(
        queues,
        lambda _repo: access,
        Workspace(tmp_path / "ws", Identity("bot", "bot@example.com")),
        LockManager(engine),
        _clock(),
    )


def _fake(base_sha: str = OLD, ci: GitHubConclusion = GitHubConclusion.SUCCESS) -> FakeGitHub:
    github = FakeGitHub()
    github.add_repo(REPO, root_sha=OLD)
    github.add_commit(REPO, INTEGRATION, OLD, HEAD)
    github.add_commit(REPO, HEAD, OLD)
    github.set_ref(REPO, f"heads/{BASE}", base_sha)
    for _ in range(6):
        github.add_issue(REPO, title="an earlier issue")
    assert github.add_pull(REPO, head_ref="feature-7", head_sha=HEAD).number == 7
    # The CI's report on the integration commit, re-read right before the fast-forward.
    github.create_check_run(
        REPO,
        CheckRunRequest(
            name="ci",
            head_sha=INTEGRATION,
            status=CheckStatus.COMPLETED,
            conclusion=ci,
            output=CheckRunOutput(title="ci", summary=f"ci {ci}"),
        ),
    )
    return github


def test_queue_runner_fast_forwards_once(sqlite_engine: Engine, tmp_path: Path) -> None:
    github = _fake()
    runner = _runner(sqlite_engine, github, tmp_path)
    forward = _to_fast_forward(runner.queues, REPO)
    runner.perform_key(forward.key)
    runner.perform_key(forward.key)  # a re-run after a lost `finish`: nothing happens
    assert github.get_ref(REPO, f"heads/{BASE}").sha == INTEGRATION
    assert len(github.calls_of("update_ref")) == 1
    state = runner.queues.state(REPO, BASE)
    assert state is not None
    assert state.base_sha == INTEGRATION
    assert state.outcome(7) is not None
    # Performed again from scratch (the crash after the push): reported as done, not refused.
    record = runner.queues.outbox(forward.key)
    assert record is not None
    assert runner.perform(record).events[0].__class__.__name__ == "FastForwarded"


def test_queue_runner_rereads_the_checks_and_never_moves_the_base_to_a_red_commit(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    github = _fake(ci=GitHubConclusion.FAILURE)  # the engine saw success; a rerun went red
    runner = _runner(sqlite_engine, github, tmp_path)
    forward = _to_fast_forward(runner.queues, REPO)
    runner.perform_key(forward.key)
    assert github.get_ref(REPO, f"heads/{BASE}").sha == OLD
    assert not github.calls_of("update_ref")
    state = runner.queues.state(REPO, BASE)
    assert state is not None
    outcome = state.outcome(7)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.EJECTED
    assert "required check ci failure: ci failure" in outcome.reason


def test_queue_runner_never_merges_a_pr_whose_head_moved_before_the_fast_forward(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    pushed = "f" * 40
    github = _fake()
    runner = _runner(sqlite_engine, github, tmp_path)
    forward = _to_fast_forward(runner.queues, REPO)
    assert forward.prs == ((7, HEAD),)
    github.push_to_pull(REPO, 7, pushed)  # its webhook is late: the engine has not heard
    runner.perform_key(forward.key)
    assert github.get_ref(REPO, f"heads/{BASE}").sha == OLD
    assert not github.calls_of("update_ref")
    state = runner.queues.state(REPO, BASE)
    assert state is not None
    assert state.base_sha == OLD
    assert state.outcome(7) is None
    assert state.builds == ()
    entry = state.entry(7)
    assert entry is not None
    assert entry.head_sha == pushed
    assert not entry.gates_pass


def test_queue_runner_reports_a_refused_fast_forward(sqlite_engine: Engine, tmp_path: Path) -> None:
    moved = "e" * 40
    github = _fake()
    github.add_commit(REPO, moved, OLD)
    runner = _runner(sqlite_engine, github, tmp_path)
    forward = _to_fast_forward(runner.queues, REPO)
    github.set_ref(REPO, f"heads/{BASE}", moved)  # an outsider pushed meanwhile
    runner.perform_key(forward.key)
    assert github.get_ref(REPO, f"heads/{BASE}").sha == moved
    state = runner.queues.state(REPO, BASE)
    assert state is not None
    assert state.base_sha == moved, "the refusal carried the real base: rebuild on it"
    assert state.outcome(7) is None
    assert state.entry(7) is not None


def test_queue_runner_check_runs_and_comments_are_idempotent(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    github = _fake()
    runner = _runner(sqlite_engine, github, tmp_path)
    pr = github.add_pull(REPO, head_ref="feature", head_sha=HEAD).number
    runner.queues.submit(REPO, BASE, Enqueue(pr, HEAD), config=CONFIG, base_sha=OLD)
    records = runner.queues.outbox_records(REPO, BASE)
    post = next(r for r in records if isinstance(r.effect, PostCheckRun))
    runner.perform(post)
    runner.perform(post)
    runs = [r for r in github.list_check_runs(REPO, HEAD) if r.name == "trunkline/queue"]
    assert len(runs) == 1
    comment_effect = Comment(key=f"{REPO}@{BASE}:test-comment", pr=pr, body="hello")
    comment = dataclasses.replace(post, key=comment_effect.key, effect=comment_effect)
    runner.perform(comment)
    runner.perform(comment)
    bodies = [c.body for c in github.list_issue_comments(REPO, pr)]
    assert len(bodies) == 1
    assert bodies[0].endswith("hello")


def test_queue_runner_releases_the_locks_of_the_prs_work_item(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    github = _fake()
    runner = _runner(sqlite_engine, github, tmp_path)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    with sqlite_engine.begin() as conn:
        conn.execute(
            insert(WorkItem).values(
                repo_full_name=REPO,
                issue_number=12,
                state="in_review",
                pr_number=7,
                data={},
                version=0,
                created_at=now,
                updated_at=now,
            )
        )
        assert lock_holder_of_pr(conn, REPO, 7) == "issue-12"
        assert lock_holder_of_pr(conn, REPO, 8) is None
    locks = LockManager(sqlite_engine)
    locks.acquire(REPO, "issue-12", {"api": 1}, timedelta(minutes=5))
    assert locks.held(REPO, "issue-12")
    forward = _to_fast_forward(runner.queues, REPO)
    runner.perform_key(forward.key)
    state = runner.queues.state(REPO, BASE)
    assert state is not None
    outcome = state.outcome(7)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.MERGED
    release = next(
        r
        for r in runner.queues.outbox_records(REPO, BASE)
        if type(r.effect).__name__ == "ReleaseLocks"
    )
    runner.perform_key(release.key)
    assert not locks.held(REPO, "issue-12")


def test_queue_tick_ejects_a_build_whose_checks_never_started(sqlite_engine: Engine) -> None:
    clock = _clock()
    queues = QueueService(sqlite_engine, clock)
    config = QueueConfig(
        base=BASE, required_checks=("ci",), check_start_timeout=timedelta(minutes=5)
    )
    queues.submit(REPO, BASE, Enqueue(7, HEAD), config=config, base_sha=OLD)
    effects = queues.submit(REPO, BASE, GatesUpdated(7, HEAD, GATES))
    build = next(e for e in effects if type(e).__name__ == "BuildIntegration")
    queues.complete_effect(build.key, [IntegrationBuilt("b1", INTEGRATION)])
    tick = queue_tick(queues)
    tick()
    state = queues.state(REPO, BASE)
    assert state is not None
    assert state.entry(7) is not None
    clock.advance(6 * 60)
    tick()
    state = queues.state(REPO, BASE)
    assert state is not None
    assert state.entry(7) is None
    outcome = state.outcome(7)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.EJECTED


def test_queue_reconciler_recovers_a_lost_check_webhook(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    from trunkline.github.model import CheckConclusion as GitHubConclusion
    from trunkline.github.model import CheckRunRequest, CheckStatus
    from trunkline.queue.reconciler import queue_reconciler

    github = _fake()
    pull = github.add_pull(REPO, head_ref="feature", head_sha=HEAD)
    runner = _runner(sqlite_engine, github, tmp_path)
    queues = runner.queues
    queues.submit(REPO, BASE, Enqueue(pull.number, HEAD), config=CONFIG, base_sha=OLD)
    effects = queues.submit(REPO, BASE, GatesUpdated(pull.number, HEAD, GATES))
    build = next(e for e in effects if isinstance(e, BuildIntegration))
    queues.complete_effect(build.key, [IntegrationBuilt(build.build_id, INTEGRATION)])
    # CI reports on the integration commit, but its webhook never arrives.
    github.create_check_run(
        REPO,
        CheckRunRequest("ci", INTEGRATION, CheckStatus.COMPLETED, GitHubConclusion.SUCCESS),
    )
    reconcile = queue_reconciler(queues, runner.access)
    reconcile()

    def fast_forwards() -> list[FastForwardBase]:
        records = queues.outbox_records(REPO, BASE)
        return [r.effect for r in records if isinstance(r.effect, FastForwardBase)]

    assert [f.new_sha for f in fast_forwards()] == [INTEGRATION]
    reconcile()  # reading again changes nothing
    assert len(fast_forwards()) == 1


@pytest.mark.parametrize(
    ("policy", "expected_checks"),
    [
        ("version: 1\nqueue: {required_checks: [ci, security-scan]}\n", ("ci", "security-scan")),
        ("version: 1\nqueue: {required_checks: [ci, security-scan], bogus: 1}\n", ("ci",)),
        ("version: 1\nqueue: {required_checks: [ci, lint], merge_method: rebase}\n", ("ci",)),
    ],
    ids=["stricter-policy-applies", "invalid-policy-keeps-the-last-good", "refused-settings-keep"],
)
def test_queue_reconciler_follows_the_base_branchs_policy(
    sqlite_engine: Engine, tmp_path: Path, policy: str, expected_checks: tuple[str, ...]
) -> None:
    from trunkline.queue.reconciler import queue_reconciler

    github = _fake()
    pull = github.add_pull(REPO, head_ref="feature", head_sha=HEAD)
    github.set_file(REPO, BASE, ".github/trunkline.yml", policy)
    runner = _runner(sqlite_engine, github, tmp_path)
    runner.queues.submit(REPO, BASE, Enqueue(pull.number, HEAD), config=CONFIG, base_sha=OLD)
    queue_reconciler(runner.queues, runner.access)()
    state = runner.queues.state(REPO, BASE)
    assert state is not None
    assert state.config.required_checks == expected_checks


def test_a_pr_edited_to_another_base_leaves_the_queue(sqlite_engine: Engine) -> None:
    from trunkline.bot.events import parse_payload
    from trunkline.bot.queue_events import register_queue_events
    from trunkline.bot.router import RoutedEvent, Router

    queues = QueueService(sqlite_engine, _clock())
    queues.submit(REPO, BASE, Enqueue(7, HEAD), config=CONFIG, base_sha=OLD)
    router = Router()
    register_queue_events(router, queues)

    def edited(base: str) -> None:
        payload = {
            "action": "edited",
            "number": 7,
            "pull_request": {
                "number": 7,
                "state": "open",
                "title": "t",
                "head": {"ref": "feature", "sha": HEAD},
                "base": {"ref": base, "sha": OLD},
            },
            "repository": {"id": 1, "name": "app", "full_name": REPO, "private": False},
            "sender": {"login": "mallory", "id": 9, "type": "User"},
        }
        parsed = parse_payload("pull_request", payload)
        assert parsed is not None
        router.dispatch(RoutedEvent("d", "pull_request", "edited", parsed, payload))

    edited(BASE)  # a title edit: still on main, nothing happens
    state = queues.state(REPO, BASE)
    assert state is not None
    assert state.entry(7) is not None
    edited("release")
    state = queues.state(REPO, BASE)
    assert state is not None
    assert state.entry(7) is None
    outcome = state.outcome(7)
    assert outcome is not None
    assert "base branch changed to release" in outcome.reason
