"""The pipeline runner on SQLite with the GitHub fake, the real lock manager and queue service.

Agent roles are played by small in-test performers (the real ones are exercised on the forge
in test_pipeline_forge_flow.py); everything else — webhook handlers, decide/store/enqueue,
durable jobs, locks, GitHub writes, the merge queue's `Enqueue` — is the production code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import (
    MAINTAINER,
    OUTSIDER,
    REPO,
    Harness,
    labeled_payload,
    make_harness,
    pull_request_payload,
    review_payload,
)
from sqlalchemy import func, select, update

from trunkline.agents.work_item_rows import ItemRef
from trunkline.bot.dispatch_handlers import QUEUE_DEPARTURE_JOB
from trunkline.clock import FakeClock, SystemClock
from trunkline.errors import RetryableError, TerminalError
from trunkline.github.model import Permission, PullFile, ReviewLineComment, ReviewState
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.agent_performers import RESUME_JOB
from trunkline.pipeline.dead_commands import DeadCommandSweep
from trunkline.pipeline.model import ReviewNote, RiskAssessment, Spend, Verdict
from trunkline.pipeline.role_runs import Claimed, RoleOutcome, RoleRunLedger
from trunkline.pipeline.runner import CommandContext, Performed
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.queue import events as qev
from trunkline.queue.effects import BuildIntegration, FastForwardBase
from trunkline.queue.model import ALL_GATES, CheckConclusion
from trunkline.store.jobs import ClaimedJob, NewJob
from trunkline.store.tables import Job, JobState, TimelineEvent
from trunkline.store.tables import WorkItem as WorkItemRow


def _policy() -> Policy:
    return Policy.model_validate({"version": 1, "queue": {"required_checks": ["ci"]}})


class Agents:
    """Stand-ins for the agent roles: each answers its command with a fixed good result."""

    def __init__(self, harness_ref: list[Harness]) -> None:
        self.harness_ref = harness_ref
        self.calls: list[str] = []
        self.feedback: list[tuple[str, ...]] = []

    def performers(self) -> dict[type[Any], Any]:
        return {
            cmd.RunPlanner: self.plan,
            cmd.RunPlanReview: self.review_plan,
            cmd.RunExecutor: self.execute,
            cmd.RunSelfCheck: self.self_check,
            cmd.PushAndOpenPr: self.open_pr,
            cmd.RunReviewer: self.review,
        }

    def plan(self, command: cmd.RunPlanner, context: CommandContext) -> Performed:
        self.calls.append("plan")
        risk = RiskAssessment(level="low", reasons=("docs only",), subsystems=("default",))
        return Performed(
            ev.PlanReady(
                command.key, "plan-1", "Write the widget", ("src/**",), risk, Spend(tokens=100)
            )
        )

    def review_plan(self, command: cmd.RunPlanReview, context: CommandContext) -> Performed:
        self.calls.append("plan_review")
        return Performed(ev.PlanReviewed(command.key, command.plan_id, Verdict.APPROVE, "ok"))

    def execute(self, command: cmd.RunExecutor, context: CommandContext) -> Performed:
        self.calls.append("execute")
        self.feedback.append(tuple(str(f) for f in command.feedback))
        return Performed(ev.ExecutionDone(command.key, ev.ExecutionKind.COMPLETED))

    def self_check(self, command: cmd.RunSelfCheck, context: CommandContext) -> Performed:
        self.calls.append("self_check")
        return Performed(ev.SelfCheckDone(command.key, True, "tests pass"))

    def open_pr(self, command: cmd.PushAndOpenPr, context: CommandContext) -> Performed:
        self.calls.append("open_pr")
        github = self.harness_ref[0].github
        if command.pr is not None:  # a new round: push a new head to the same PR
            sha = f"{context.item.exec_round:040x}"
            github.push_to_pull(REPO, command.pr, sha)
            return Performed(ev.PrOpened(command.key, command.pr, sha))
        pull = github.add_pull(REPO, head_ref="trunkline/issue-1", head_sha="a" * 40)
        return Performed(ev.PrOpened(command.key, pull.number, pull.head_sha))

    def review(self, command: cmd.RunReviewer, context: CommandContext) -> Performed:
        self.calls.append("review")
        return Performed(ev.ReviewDone(command.key, command.sha, Verdict.APPROVE, 0, "good"))


def _setup(tmp_path: Path) -> tuple[Harness, Agents]:
    ref: list[Harness] = []
    agents = Agents(ref)
    harness = make_harness(tmp_path, _policy(), agents.performers())
    ref.append(harness)
    return harness, agents


def test_pipeline_runner_takes_a_maintainers_issue_to_the_merge_queue(tmp_path: Path) -> None:
    harness, agents = _setup(tmp_path)
    issue = harness.github.add_issue(REPO, title="Add a widget").number

    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE, item.history
    assert agents.calls == ["plan", "plan_review", "execute", "self_check", "open_pr", "review"]
    assert item.pr is not None
    # the merge queue holds the PR at the reviewed head
    queue = harness.queue.state(REPO, "main")
    assert queue is not None
    assert queue.entry(item.pr) is not None
    # the reviewer's verdict is a real review by the App on the head, with the verdict marker
    reviews = harness.github.list_reviews(REPO, item.pr)
    assert [r.commit_sha for r in reviews] == [item.head_sha]
    assert "trunkline:verdict=approve" in reviews[0].body
    # locks held by the item; one sticky status comment on the issue and one on the PR
    assert [lease.subsystem for lease in harness.locks.held(REPO, "issue-1")] == ["default"]
    issue_comments = harness.github.comments_on(REPO, issue)
    assert len(issue_comments) == 1
    assert "queued_for_merge" in issue_comments[0].body.lower().replace(" ", "_")
    assert len(harness.github.comments_on(REPO, item.pr)) == 1
    # the row mirrors the item and every transition is on the timeline
    with harness.engine.connect() as conn:
        row = conn.execute(
            select(WorkItemRow.state, WorkItemRow.pr_number, WorkItemRow.title)
        ).one()
        steps = conn.execute(
            select(TimelineEvent.from_state, TimelineEvent.to_state)
            .where(TimelineEvent.kind == "transition")
            .order_by(TimelineEvent.id)
        ).all()
    assert (row.state, row.pr_number) == ("queued_for_merge", item.pr)
    assert row.title == "Add a widget"  # the issue's title, for people reading the dashboard
    assert [step.to_state for step in steps] == [t.to_state.value for t in item.history]

    # the queue merges it -> the item is merged, the locks are released, a summary is posted
    harness.deliver(
        "pull_request",
        {
            "action": "closed",
            "number": item.pr,
            "pull_request": {
                "number": item.pr,
                "state": "closed",
                "title": "x",
                "merged": True,
                "head": {"ref": "trunkline/issue-1", "sha": item.head_sha},
                "base": {"ref": "main", "sha": "0" * 40},
            },
            "repository": labeled_payload(issue, MAINTAINER)["repository"],
            "sender": {"login": MAINTAINER, "id": 3},
            "installation": {"id": 7},
        },
    )
    harness.drain()
    merged = harness.service.item(REPO, issue)
    assert merged is not None
    assert merged.state is WorkState.MERGED
    assert harness.locks.held(REPO, "issue-1") == ()
    # the issue gets the summary and is closed
    assert harness.github.get_issue(REPO, issue).state == "closed"
    summaries = [c.body for c in harness.github.comments_on(REPO, issue) if "Merged #" in c.body]
    assert len(summaries) == 1


def test_pipeline_runner_refuses_an_outsider_politely(tmp_path: Path) -> None:
    harness, agents = _setup(tmp_path)
    issue = harness.github.add_issue(REPO, title="Please do this").number

    harness.deliver("issues", labeled_payload(issue, OUTSIDER))
    harness.drain()
    harness.deliver("issues", labeled_payload(issue, OUTSIDER), delivery_id="again")
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.REFUSED
    assert agents.calls == []
    comments = harness.github.comments_on(REPO, issue)
    assert len(comments) == 1
    assert f"@{OUTSIDER}" in comments[0].body
    assert "write" in comments[0].body
    assert harness.locks.held(REPO, "issue-1") == ()
    # the permission was read through the API
    assert [c.args for c in harness.github.calls_of("get_permission")] == [(OUTSIDER,)] * 2


def test_pipeline_runner_starts_one_item_for_a_duplicate_label_delivery(tmp_path: Path) -> None:
    harness, agents = _setup(tmp_path)
    issue = harness.github.add_issue(REPO, title="Add a widget").number

    harness.deliver("issues", labeled_payload(issue, MAINTAINER), delivery_id="one")
    harness.deliver("issues", labeled_payload(issue, MAINTAINER), delivery_id="one")
    harness.drain()
    harness.deliver("issues", labeled_payload(issue, MAINTAINER), delivery_id="relabel")
    harness.drain()

    assert agents.calls.count("plan") == 1
    with harness.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(WorkItemRow)).scalar_one() == 1
        planner_jobs = conn.execute(
            select(func.count()).select_from(Job).where(Job.key.like("%:run-planner"))
        ).scalar_one()
    assert planner_jobs == 1


def test_pipeline_runner_escalates_a_terminal_step_failure(tmp_path: Path) -> None:
    ref: list[Harness] = []
    agents = Agents(ref)
    performers = agents.performers()

    def broken_planner(command: cmd.RunPlanner, context: CommandContext) -> Performed:
        raise TerminalError("the planner cannot read the repository")

    performers[cmd.RunPlanner] = broken_planner
    harness = make_harness(tmp_path, _policy(), performers)
    ref.append(harness)
    issue = harness.github.add_issue(REPO, title="Add a widget").number

    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.ESCALATED
    assert "needs-human" in harness.github.get_issue(REPO, issue).labels
    bodies = " ".join(c.body for c in harness.github.comments_on(REPO, issue))
    assert "cannot read the repository" in bodies

    # labeling it again starts a new run at once (admitted: planning, failing again)
    harness.deliver("issues", labeled_payload(issue, MAINTAINER), delivery_id="again")
    harness.drain()
    again = harness.service.item(REPO, issue)
    assert again is not None
    assert again.run == 2
    assert again.state is WorkState.ESCALATED
    assert [t.to_state for t in again.history[-3:]] == [
        WorkState.QUEUED,
        WorkState.PLANNING,
        WorkState.ESCALATED,
    ]


def _run_due_jobs_now(harness: Harness, rounds: int) -> None:
    """Drain, then make every backed-off job due at once (the retries without the waits)."""
    for _ in range(rounds):
        harness.drain()
        with harness.engine.begin() as conn:
            conn.execute(
                update(Job)
                .where(Job.state == JobState.QUEUED)
                .values(run_at=datetime.now(UTC) - timedelta(seconds=1))
            )


def test_pipeline_runner_escalates_a_step_that_crashes_on_every_attempt(tmp_path: Path) -> None:
    ref: list[Harness] = []
    performers = Agents(ref).performers()
    crashes: list[int] = []

    def crashing_planner(command: cmd.RunPlanner, context: CommandContext) -> Performed:
        crashes.append(context.attempt)
        raise KeyError("plan_id")  # a bug, neither retryable nor terminal by type

    performers[cmd.RunPlanner] = crashing_planner
    harness = make_harness(tmp_path, _policy(), performers)
    ref.append(harness)
    issue = harness.github.add_issue(REPO, title="Add a widget").number

    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    _run_due_jobs_now(harness, rounds=10)

    assert crashes == list(range(1, 9))  # every attempt ran; the last one reported
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.ESCALATED
    assert "needs-human" in harness.github.get_issue(REPO, issue).labels
    bodies = " ".join(c.body for c in harness.github.comments_on(REPO, issue))
    assert "gave up after 8 attempts: KeyError" in bodies
    with harness.engine.connect() as conn:
        planner = conn.execute(select(Job.state).where(Job.key.like("%:run-planner"))).scalar_one()
    assert planner == JobState.DONE  # not dead: its last attempt answered the item


def _planner_killed_on_its_last_attempt(harness: Harness, issue: int) -> str:
    """Label `issue`; its planner job's worker dies on the job's last attempt (the lease
    sweep dead-letters it). Returns the command key the item awaits."""
    sweep = DeadCommandSweep(harness.service, SystemClock())
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    assert sweep.tick() == []  # queued: someone will perform it
    with harness.engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.key.like("%:run-planner"))
            .values(
                state=JobState.RUNNING,
                attempts=Job.max_attempts,
                claimed_by="killed-worker",
                lease_expires_at=datetime.now(UTC) - timedelta(seconds=5),
            )
        )
    assert sweep.tick() == []  # running: its worker may still answer
    assert harness.jobs.sweep().dead == 1
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.PLANNING  # it would wait forever
    assert item.awaiting is not None
    return item.awaiting


def test_pipeline_runner_escalates_an_item_whose_command_job_died(tmp_path: Path) -> None:
    ref: list[Harness] = []
    harness = make_harness(tmp_path, _policy(), Agents(ref).performers())
    ref.append(harness)
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    awaiting = _planner_killed_on_its_last_attempt(harness, issue)
    clock = FakeClock(current=datetime.now(UTC))
    sweep = DeadCommandSweep(harness.service, clock)
    # a run of the command still holds its claim (another delivery): it may still answer
    ledger = RoleRunLedger(harness.engine, clock, timedelta(seconds=30))
    item_ref = ItemRef(REPO, issue)
    assert isinstance(ledger.claim(item_ref, awaiting, "elsewhere"), Claimed)
    assert ledger.note(item_ref, awaiting, "elsewhere", Spend(700, Decimal("0.7")), Spend())
    assert sweep.tick() == []
    clock.advance(31)  # that run died too: its claim expired

    (dead,) = sweep.tick()
    assert (dead.issue, dead.command, dead.action) == (issue, awaiting, "escalated")
    assert "worker died" in dead.error
    harness.drain()
    escalated = harness.service.item(REPO, issue)
    assert escalated is not None
    assert escalated.state is WorkState.ESCALATED
    assert escalated.escalation_reason == "job_dead"
    bodies = " ".join(c.body for c in harness.github.comments_on(REPO, issue))
    assert "escalated (job_dead)" in bodies
    assert "lease expired on the last attempt" in bodies
    assert escalated.spend == Spend(700, Decimal("0.7"))  # what the dead run spent counts
    assert sweep.tick() == []  # answered once; the next tick finds nothing


def test_pipeline_runner_replays_a_recorded_run_whose_job_died(tmp_path: Path) -> None:
    ref: list[Harness] = []
    agents = Agents(ref)
    harness = make_harness(tmp_path, _policy(), agents.performers())
    ref.append(harness)
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    awaiting = _planner_killed_on_its_last_attempt(harness, issue)
    # the run had recorded its outcome; the worker died before reporting it
    ledger = RoleRunLedger(harness.engine, SystemClock())
    item_ref = ItemRef(REPO, issue)
    assert isinstance(ledger.claim(item_ref, awaiting, "died"), Claimed)
    assert ledger.record(item_ref, awaiting, "died", RoleOutcome(event=None))
    sweep = DeadCommandSweep(harness.service, SystemClock())

    (replayed,) = sweep.tick()
    assert replayed.action == "replayed"
    assert sweep.tick() == []  # the replay job is queued: nothing more to do
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is not WorkState.ESCALATED
    assert item.awaiting != awaiting  # the command was answered


def test_pipeline_runner_admits_under_max_active_and_waits_for_locks(tmp_path: Path) -> None:
    policy = Policy.model_validate(
        {"version": 1, "dispatch": {"max_active": 1}, "queue": {"required_checks": ["ci"]}}
    )
    ref: list[Harness] = []
    agents = Agents(ref)
    performers = agents.performers()
    performers.pop(cmd.RunExecutor)  # the first item stays executing, holding the lock
    performers[cmd.RunExecutor] = lambda command, context: Performed()
    harness = make_harness(tmp_path, policy, performers)
    ref.append(harness)
    first = harness.github.add_issue(REPO, title="one").number
    second = harness.github.add_issue(REPO, title="two").number

    harness.deliver("issues", labeled_payload(first, MAINTAINER))
    harness.deliver("issues", labeled_payload(second, MAINTAINER), delivery_id="2")
    harness.drain()

    states = {i.issue: i.state for i in harness.service.items(REPO)}
    assert states == {first: WorkState.EXECUTING, second: WorkState.QUEUED}

    # the first is cancelled by a human: its slot and lock go to the second
    harness.service.submit(REPO, first, ev.CancelRequested(MAINTAINER))
    harness.drain()
    states = {i.issue: i.state for i in harness.service.items(REPO)}
    assert states == {first: WorkState.CANCELLED, second: WorkState.EXECUTING}
    assert harness.locks.held(REPO, f"issue-{first}") == ()
    assert [lease.subsystem for lease in harness.locks.held(REPO, f"issue-{second}")] == ["default"]


def _queued_item(harness: Harness) -> tuple[int, int, str]:
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE
    assert item.pr is not None
    assert item.head_sha is not None
    return issue, item.pr, item.head_sha


def test_pipeline_runner_sends_a_humans_change_request_back_to_the_executor(
    tmp_path: Path,
) -> None:
    harness, agents = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)

    payload = review_payload(pr, head, "changes_requested", MAINTAINER, "Please add a test.")
    harness.deliver("pull_request_review", payload)
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE
    assert item.review_rounds == 1
    assert item.head_sha != head
    assert agents.calls.count("execute") == 2
    assert agents.calls.count("review") == 2
    queue = harness.queue.state(REPO, "main")
    assert queue is not None
    entry = queue.entry(pr)
    assert entry is not None
    assert entry.head_sha == item.head_sha
    # a bot's review is not a human's: it changes nothing
    bot = review_payload(pr, item.head_sha, "changes_requested", "other[bot]", "nit")
    harness.deliver("pull_request_review", bot)
    harness.drain()
    again = harness.service.item(REPO, issue)
    assert again is not None
    assert again.version == item.version


def test_pipeline_runner_re_reviews_a_pushed_head_and_fails_on_a_closed_pr(
    tmp_path: Path,
) -> None:
    harness, agents = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)
    pushed = "b" * 40
    harness.github.push_to_pull(REPO, pr, pushed)

    harness.deliver("pull_request", pull_request_payload("synchronize", pr, pushed))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.head_sha == pushed
    assert item.reviewed_sha == pushed
    assert agents.calls.count("review") == 2
    assert [r.commit_sha for r in harness.github.list_reviews(REPO, pr)] == [head, pushed]

    harness.deliver("pull_request", pull_request_payload("closed", pr, pushed, merged=False))
    harness.drain()
    closed = harness.service.item(REPO, issue)
    assert closed is not None
    assert closed.state is WorkState.FAILED
    assert harness.locks.held(REPO, f"issue-{issue}") == ()


def test_pipeline_runner_cancels_on_label_removal_before_execution(tmp_path: Path) -> None:
    ref: list[Harness] = []
    agents = Agents(ref)
    performers = agents.performers()
    performers[cmd.RunPlanReview] = lambda command, context: Performed()  # still reviewing
    harness = make_harness(tmp_path, _policy(), performers)
    ref.append(harness)
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()

    harness.deliver("issues", labeled_payload(issue, MAINTAINER, action="unlabeled"))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.CANCELLED
    assert agents.calls == ["plan"]


def test_pipeline_runner_lock_waiters_get_the_lock_when_it_is_released(tmp_path: Path) -> None:
    ref: list[Harness] = []
    agents = Agents(ref)
    performers = agents.performers()
    performers[cmd.RunExecutor] = lambda command, context: Performed()  # stays executing
    harness = make_harness(tmp_path, _policy(), performers, lock_poll_seconds=3600)
    ref.append(harness)
    first = harness.github.add_issue(REPO, title="one").number
    second = harness.github.add_issue(REPO, title="two").number
    harness.deliver("issues", labeled_payload(first, MAINTAINER))
    harness.deliver("issues", labeled_payload(second, MAINTAINER), delivery_id="2")
    harness.drain()
    states = {i.issue: i.state for i in harness.service.items(REPO)}
    assert states == {first: WorkState.EXECUTING, second: WorkState.WAITING_FOR_LOCKS}
    waiting = harness.service.item(REPO, second)
    assert waiting is not None
    assert waiting.waiting_on == ("default",)

    # a takeover moves the lock to the human; the waiter keeps waiting ...
    harness.service.submit(REPO, first, ev.TakeoverRequested(MAINTAINER))
    harness.drain()
    human = f"human:{MAINTAINER}:issue-{first}"
    assert [lease.holder for lease in harness.locks.held(REPO, human)] == [human]
    # ... until the human resumes (/trunkline resume -> the agents_resume job) and cancels
    harness.jobs.enqueue(
        NewJob(
            kind=RESUME_JOB,
            key=f"{RESUME_JOB}:{REPO}#{first}:77",
            payload={"repo": REPO, "issue_number": first, "requested_by": MAINTAINER},
        )
    )
    harness.drain()
    resumed = harness.service.item(REPO, first)
    assert resumed is not None
    assert resumed.state is WorkState.EXECUTING
    assert harness.locks.held(REPO, human) == ()
    harness.service.submit(REPO, first, ev.CancelRequested(MAINTAINER))
    harness.drain()  # no poll is due for an hour: the release itself nudges the waiter

    states = {i.issue: i.state for i in harness.service.items(REPO)}
    assert states == {first: WorkState.CANCELLED, second: WorkState.EXECUTING}


def test_pipeline_runner_a_stale_list_of_lock_waiters_never_repeats_an_agent_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release that nudges the waiters read them before one got its locks elsewhere:
    the nudge must not enqueue that item's awaited command again, now a RunExecutor (two
    deliveries of one executor run under two job keys: the model called twice)."""
    executed: list[str] = []

    def executor(command: cmd.RunExecutor, context: CommandContext) -> Performed:
        executed.append(command.key)
        return Performed()  # stays executing

    ref: list[Harness] = []
    performers = Agents(ref).performers()
    performers[cmd.RunExecutor] = executor
    harness = make_harness(tmp_path, _policy(), performers, lock_poll_seconds=3600)
    ref.append(harness)
    first = harness.github.add_issue(REPO, title="one").number
    second = harness.github.add_issue(REPO, title="two").number
    harness.deliver("issues", labeled_payload(first, MAINTAINER))
    harness.deliver("issues", labeled_payload(second, MAINTAINER), delivery_id="2")
    harness.drain()
    stale = harness.service.items(REPO)  # the second item waits for the lock here
    assert {i.issue: i.state for i in stale}[second] is WorkState.WAITING_FOR_LOCKS
    harness.service.submit(REPO, first, ev.CancelRequested(MAINTAINER))
    harness.drain()  # the release nudges the waiter: it takes the lock and executes
    now = harness.service.item(REPO, second)
    assert now is not None
    assert now.state is WorkState.EXECUTING
    assert len(executed) == 2  # one run per item

    monkeypatch.setattr(harness.service, "items", lambda repo=None: stale)
    assert harness.service.nudge_lock_waiters(REPO, "a-release-read-earlier") == 0
    harness.drain()
    assert len(executed) == 2
    with harness.engine.connect() as conn:
        keys = conn.execute(select(Job.key).where(Job.key.like("%run-executor%"))).scalars()
        assert len(list(keys)) == 2


def test_pipeline_runner_posts_findings_as_line_comments_and_keeps_a_refused_review(
    tmp_path: Path,
) -> None:
    """Round 1's finding is on the diff: a line comment. Round 2's is off the diff: GitHub
    refuses the review (422); it is posted again with the finding listed in its body."""
    ref: list[Harness] = []
    agents = Agents(ref)
    performers = agents.performers()
    verdicts = [
        (Verdict.REQUEST_CHANGES, ReviewNote("src/widget.py", 2, "**major**: name it")),
        (Verdict.APPROVE, ReviewNote("README.md", 1, "**nit**: mention it")),
    ]

    def open_pr(command: cmd.PushAndOpenPr, context: CommandContext) -> Performed:
        github = ref[0].github
        if command.pr is not None:
            sha = f"{context.item.exec_round:040x}"
            github.push_to_pull(REPO, command.pr, sha)
            return Performed(ev.PrOpened(command.key, command.pr, sha))
        pull = github.add_pull(
            REPO,
            head_ref="trunkline/issue-1",
            head_sha="a" * 40,
            files=(PullFile("src/widget.py", "added", 3, 0),),
        )
        return Performed(ev.PrOpened(command.key, pull.number, pull.head_sha))

    def review(command: cmd.RunReviewer, context: CommandContext) -> Performed:
        verdict, note = verdicts.pop(0)
        return Performed(
            ev.ReviewDone(command.key, command.sha, verdict, 1, "see notes", notes=(note,))
        )

    performers[cmd.PushAndOpenPr] = open_pr
    performers[cmd.RunReviewer] = review
    harness = make_harness(tmp_path, _policy(), performers)
    ref.append(harness)
    issue = harness.github.add_issue(REPO, title="Add a widget").number

    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE, item.history
    assert item.pr is not None
    assert harness.github.review_comments[(REPO, item.pr)] == [
        ReviewLineComment("src/widget.py", 2, "**major**: name it")
    ]
    reviews = harness.github.list_reviews(REPO, item.pr)
    assert len(reviews) == 2
    assert "trunkline:verdict=request_changes" in reviews[0].body
    assert "trunkline:verdict=approve" in reviews[1].body
    assert "`README.md:1`: **nit**: mention it" in reviews[1].body


def _run_queue_to_checks(harness: Harness, pr: int, head: str) -> str:
    """Pass every gate of `pr` and build its integration commit; returns the commit's SHA."""
    reports = tuple(qev.GateReport(gate, True) for gate in ALL_GATES)
    effects = harness.queue.submit(REPO, "main", qev.GatesUpdated(pr, head, reports))
    build = next(e for e in effects if isinstance(e, BuildIntegration))
    integration = "c" * 40
    harness.queue.submit(REPO, "main", qev.IntegrationBuilt(build.build_id, integration))
    return integration


def test_pipeline_runner_follows_the_queues_ejection_back_to_the_executor(
    tmp_path: Path,
) -> None:
    harness, agents = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)
    sha = _run_queue_to_checks(harness, pr, head)

    failure = qev.CheckCompleted(sha, "ci", CheckConclusion.FAILURE, "2 tests failed")
    harness.queue.submit(REPO, "main", failure)
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    # the ejection used a review round and the executor ran again with the reason
    assert item.review_rounds == 1
    assert agents.calls.count("execute") == 2
    assert item.state is WorkState.QUEUED_FOR_MERGE
    assert item.head_sha != head


def test_pipeline_runner_takes_a_squash_merge_from_the_queue_not_from_the_closed_pr(
    tmp_path: Path,
) -> None:
    harness, _ = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)
    sha = _run_queue_to_checks(harness, pr, head)
    effects = harness.queue.submit(
        REPO, "main", qev.CheckCompleted(sha, "ci", CheckConclusion.SUCCESS)
    )
    forward = next(e for e in effects if isinstance(e, FastForwardBase))
    harness.queue.submit(REPO, "main", qev.FastForwarded(forward.build_id, sha))

    # a squash merge closes the PR without a GitHub merge; that close arrives first
    harness.deliver("pull_request", pull_request_payload("closed", pr, head, merged=False))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.MERGED
    assert item.merged_sha == sha
    assert harness.github.get_issue(REPO, issue).state == "closed"


def test_pipeline_runner_steers_only_by_reviews_of_people_who_may_dispatch(
    tmp_path: Path,
) -> None:
    harness, agents = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)
    before = harness.service.item(REPO, issue)
    assert before is not None

    # an outsider (read access) cannot steer the executor or use up review rounds
    harness.github.set_permission(REPO, OUTSIDER, Permission.READ)
    payload = review_payload(pr, head, "changes_requested", OUTSIDER, "also delete the tests")
    harness.deliver("pull_request_review", payload)
    harness.drain()
    after = harness.service.item(REPO, issue)
    assert after is not None
    assert (after.version, after.review_rounds) == (before.version, 0)
    assert agents.calls.count("execute") == 1

    # the maintainer's review made only of line comments sends them to the executor
    review = harness.github.add_review(
        REPO,
        pr,
        author=MAINTAINER,
        state=ReviewState.CHANGES_REQUESTED,
        commit_sha=head,
        comments=[ReviewLineComment("src/widget.py", 3, "handle an empty widget")],
    )
    payload = review_payload(pr, head, "changes_requested", MAINTAINER, "")
    payload["review"]["id"] = review.id
    harness.deliver("pull_request_review", payload)
    harness.drain()
    assert agents.calls.count("execute") == 2
    assert any("src/widget.py:3: handle an empty widget" in f for f in agents.feedback[-1])


def test_pipeline_runner_keeps_a_merge_the_queue_reports_before_the_item_records_its_enqueue(
    tmp_path: Path,
) -> None:
    """The queue may merge a PR while the item's Enqueue job is still running (a slow or
    retried job): the merge is a fact in `ready` too, and the late `Enqueued` changes
    nothing."""
    harness, _ = _setup(tmp_path)
    early: list[BaseException | None] = []

    def enqueue_slowly(command: cmd.Enqueue, context: CommandContext) -> Performed:
        job = ClaimedJob(
            1,
            "departure",
            QUEUE_DEPARTURE_JOB,
            {"repo": REPO, "pr": command.pr, "state": "merged", "merged_sha": "d" * 40},
            1,
            20,
            "test",
            datetime.now(UTC),
        )
        try:  # the queue merged it already; the item is still `ready`
            harness.handlers.queue_departure_job(job)
            early.append(None)
        except RetryableError as error:
            early.append(error)
        return Performed(ev.Enqueued(command.key, command.pr))

    harness.service.performers[cmd.Enqueue] = enqueue_slowly  # in place of the real one
    issue = harness.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    assert early == [None]  # taken at once, not dropped and not postponed
    merged = harness.service.item(REPO, issue)
    assert merged is not None
    assert merged.state is WorkState.MERGED
    assert merged.merged_sha == "d" * 40
    assert harness.github.get_issue(REPO, issue).state == "closed"


def _departure(pr: int, state: str, **payload: str) -> ClaimedJob:
    """The queue's departure job for `pr`, as the job runner hands it to the handler."""
    data = {"repo": REPO, "pr": pr, "state": state, **payload}
    return ClaimedJob(1, "departure", QUEUE_DEPARTURE_JOB, data, 1, 20, "test", datetime.now(UTC))


def test_pipeline_runner_escalates_an_item_whose_pr_a_person_took_out_of_the_queue(
    tmp_path: Path,
) -> None:
    """Without this the item waited in `queued_for_merge` for ever, holding its locks."""
    harness, _ = _setup(tmp_path)
    issue, pr, _head = _queued_item(harness)
    holder = f"issue-{issue}"
    assert harness.locks.held(REPO, holder)

    harness.queue.submit(REPO, "main", qev.Dequeue(pr, by="omar", reason="dequeued by @omar"))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.ESCALATED
    assert item.escalation_reason == "dequeued"
    assert "dequeued by @omar" in (item.exit_reason or "")
    assert not harness.locks.held(REPO, holder)


def test_pipeline_runner_leaves_a_dequeue_of_a_closed_pr_to_its_close(tmp_path: Path) -> None:
    harness, _ = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)
    harness.github.close_pull(REPO, pr)
    harness.queue.submit(REPO, "main", qev.Dequeue(pr, by="omar", reason="PR closed"))
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.QUEUED_FOR_MERGE  # the departure decided nothing...

    harness.deliver("pull_request", pull_request_payload("closed", pr, head, merged=False))
    harness.drain()
    closed = harness.service.item(REPO, issue)
    assert closed is not None
    assert closed.state is WorkState.FAILED  # ...the close did


def test_pipeline_runner_ends_merged_when_the_merge_lands_during_a_change_request(
    tmp_path: Path,
) -> None:
    """A change request sends the item back to the executor while the queue's fast-forward
    is in flight (the queue defers the Dequeue); the merge lands: the item ends merged."""
    harness, _ = _setup(tmp_path)
    issue, pr, head = _queued_item(harness)
    sha = _run_queue_to_checks(harness, pr, head)
    effects = harness.queue.submit(
        REPO, "main", qev.CheckCompleted(sha, "ci", CheckConclusion.SUCCESS)
    )
    forward = next(e for e in effects if isinstance(e, FastForwardBase))

    review = review_payload(pr, head, "changes_requested", MAINTAINER, "Rename it.")
    harness.deliver("pull_request_review", review)
    sent_back = harness.service.item(REPO, issue)
    assert sent_back is not None
    assert sent_back.state is WorkState.EXECUTING
    harness.queue.submit(REPO, "main", qev.FastForwarded(forward.build_id, sha))
    harness.handlers.queue_departure_job(_departure(pr, "merged", merged_sha=sha))
    harness.drain()

    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.MERGED
    assert item.merged_sha == sha
    assert not harness.locks.held(REPO, f"issue-{issue}")
    assert harness.github.get_issue(REPO, issue).state == "closed"
