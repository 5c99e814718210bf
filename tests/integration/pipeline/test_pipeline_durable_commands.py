"""Fire-and-forget commands survive a GitHub outage of any length; stale ones are skipped.

The pipeline runner on SQLite with the GitHub fake behind a switchable outage (every call
a 502 while it lasts), the production `EscalationPerformer` on a real local git remote, and
the plan roles played by in-test performers. Backoff waits are skipped; a job's delay is
made due by moving its `run_at`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pipeline_harness import MAINTAINER, REPO, Harness, labeled_payload, make_harness
from sqlalchemy import select, update

from trunkline.agents.escalation import EscalationPolicy, EscalationReport, perform_escalation
from trunkline.agents.outcome import OutcomeKind
from trunkline.errors import RetryableError
from trunkline.github.errors import GitHubUnavailableError
from trunkline.github.fake import FakeGitHub
from trunkline.github.port import GitHubPort
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.escalation_performer import EscalationPerformer
from trunkline.pipeline.model import RiskAssessment, Spend, Verdict
from trunkline.pipeline.runner import (
    COMMAND_JOB,
    COMMAND_JOB_MAX_ATTEMPTS,
    CommandContext,
    Performed,
)
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Policy
from trunkline.store.backoff import BackoffPolicy
from trunkline.store.jobs import NewJob
from trunkline.store.tables import Job, JobState
from trunkline.workspace.errors import GitTransportError
from trunkline.workspace.model import Identity, RepositorySpec, Worktree
from trunkline.workspace.workspace import Workspace

NOTIFY = "cc @lead"


class Outage:
    """The GitHub fake, every call failing with a 502 while `down`."""

    def __init__(self, inner: FakeGitHub) -> None:
        self._inner = inner
        self.down = False
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                self.refused.append(name)
                raise GitHubUnavailableError("502 Bad Gateway")
            return attribute(*args, **kwargs)

        return call


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def bare_remote(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "initial")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    return bare


@dataclass
class Rig:
    harness: Harness
    outage: Outage
    #: the plan reviewer's verdict per run (default: escalate); a run missing from
    #: `plans_in_runs` never gets a plan (the item waits in planning)
    plans_in_runs: set[int] = field(default_factory=lambda: {1, 2})
    on_escalate: Callable[[], None] = lambda: None

    @property
    def github(self) -> FakeGitHub:
        return self.harness.github


def make_rig(tmp_path: Path) -> Rig:
    policy = Policy.model_validate(
        {
            "version": 1,
            "queue": {"required_checks": ["ci"]},
            "escalation": {"notify": ["lead"]},
        }
    )
    outages: list[Outage] = []

    def wrap(fake: FakeGitHub) -> GitHubPort:
        outages.append(Outage(fake))
        return cast(GitHubPort, outages[0])

    rigs: list[Rig] = []

    def plan(command: cmd.RunPlanner, context: CommandContext) -> Performed:
        if context.item.run not in rigs[0].plans_in_runs:
            return Performed()  # no answer: the item waits in planning
        risk = RiskAssessment(level="low", subsystems=("default",))
        return Performed(
            ev.PlanReady(command.key, "plan-1", "Do it", ("src/**",), risk, Spend(tokens=1))
        )

    def review_plan(command: cmd.RunPlanReview, context: CommandContext) -> Performed:
        rigs[0].on_escalate()
        return Performed(
            ev.PlanReviewed(command.key, command.plan_id, Verdict.ESCALATE, "the plan is unsafe")
        )

    harness = make_harness(
        tmp_path,
        policy,
        {cmd.RunPlanner: plan, cmd.RunPlanReview: review_plan},
        wrap_github=wrap,
    )
    harness.pool.config.backoff = BackoffPolicy(base_seconds=0, cap_seconds=0)
    remote = bare_remote(tmp_path).as_uri()
    EscalationPerformer(
        github_for=lambda installation: cast(GitHubPort, outages[0]),
        policy_for=lambda repo: policy,
        workspace=Workspace(tmp_path / "data", Identity("bot", "bot@example.com")),
        spec_for=lambda repo: RepositorySpec(repo, remote),
        token_for=lambda installation: None,
    ).register(harness.service)
    rig = Rig(harness, outages[0])
    rigs.append(rig)
    return rig


def make_due(harness: Harness) -> None:
    """Every queued job due now (the waits of backoffs and repetitions skipped)."""
    with harness.engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.state == JobState.QUEUED)
            .values(run_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def command_jobs(harness: Harness) -> list[tuple[str, str]]:
    """(job key's command name, state) of every command job."""
    with harness.engine.connect() as conn:
        rows = conn.execute(select(Job.key, Job.state).where(Job.kind == COMMAND_JOB)).all()
    return [(str(key), str(state)) for key, state in rows]


def escalation_comments(rig: Rig, issue: int) -> list[str]:
    return [c.body for c in rig.github.comments_on(REPO, issue) if NOTIFY in c.body]


def test_pipeline_escalation_reaches_github_after_an_outage_longer_than_the_attempts(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    harness = rig.harness

    def outage_begins() -> None:
        rig.outage.down = True

    rig.on_escalate = outage_begins
    issue = rig.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert item.state is WorkState.ESCALATED

    for _ in range(3):  # three times the attempts of one job, all refused
        make_due(harness)
        harness.drain()
    refused_escalations = rig.outage.refused.count("get_issue")  # the performer's first call
    assert refused_escalations == 4 * COMMAND_JOB_MAX_ATTEMPTS
    assert rig.outage.refused.count("add_labels") == 4 * COMMAND_JOB_MAX_ATTEMPTS
    assert not [job for job in command_jobs(harness) if job[1] == JobState.DEAD]
    assert escalation_comments(rig, issue) == []

    rig.outage.down = False  # the outage ends
    make_due(harness)
    harness.drain()

    (comment,) = escalation_comments(rig, issue)  # the mention, in one created comment
    assert "escalated (plan_review_escalated)" in comment
    assert "the plan is unsafe" in comment
    assert rig.github.get_issue(REPO, issue).labels == ("needs-human",)
    status = [c.body for c in rig.github.comments_on(REPO, issue) if "pipeline.status" in c.body]
    assert len(status) == 1
    assert "escalated" in status[0]
    assert {state for _, state in command_jobs(harness)} == {JobState.DONE}
    make_due(harness)
    assert harness.drain() == 0  # nothing is left to perform again
    assert len(rig.github.comments_on(REPO, issue)) == 2  # the status and the escalation


def test_pipeline_stale_commands_of_an_earlier_run_are_not_performed_after_an_outage(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    harness = rig.harness
    rig.plans_in_runs = {1}  # run 2 waits in planning

    def outage_begins() -> None:
        rig.outage.down = True

    rig.on_escalate = outage_begins
    issue = rig.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    make_due(harness)
    harness.drain()  # run 1's escalation: every attempt refused
    assert escalation_comments(rig, issue) == []

    # during the outage a maintainer labels the issue again (the webhook's permission read
    # gets through), and run 2 starts
    rig.outage.down = False
    harness.deliver("issues", labeled_payload(issue, MAINTAINER), delivery_id="again")
    rig.outage.down = True
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert (item.run, item.state) == (2, WorkState.PLANNING)

    rig.outage.down = False
    for _ in range(2):
        make_due(harness)
        harness.drain()

    # run 1's escalation comment, label and status were superseded by run 2: not performed
    assert escalation_comments(rig, issue) == []
    assert "needs-human" not in rig.github.get_issue(REPO, issue).labels
    assert rig.github.calls_of("add_labels") == []
    status = [c.body for c in rig.github.comments_on(REPO, issue) if "pipeline.status" in c.body]
    assert len(status) == 1
    assert "`planning`" in status[0]  # run 2's newest status
    assert "escalated" not in status[0]
    assert {state for _, state in command_jobs(harness)} <= {JobState.DONE, JobState.QUEUED}


def test_pipeline_each_escalation_creates_its_comment_and_a_retry_edits_it(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    harness = rig.harness
    issue = rig.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    assert len(escalation_comments(rig, issue)) == 1

    # run 2 escalates for the same reason at the same head (nothing was committed)
    harness.deliver("issues", labeled_payload(issue, MAINTAINER), delivery_id="again")
    harness.drain()
    item = harness.service.item(REPO, issue)
    assert item is not None
    assert (item.run, item.state) == (2, WorkState.ESCALATED)
    first, second = escalation_comments(rig, issue)  # a new comment: its mention notifies
    assert "run2.v" in second.splitlines()[0]

    # the same Escalate delivered again (a retried job) edits its comment
    with harness.engine.begin() as conn:
        key, payload = conn.execute(
            select(Job.key, Job.payload).where(Job.key.like("%:run2:%:escalate"))
        ).one()
    harness.jobs.enqueue(NewJob(kind=COMMAND_JOB, key=f"{key}:again", payload=dict(payload)))
    assert harness.drain() == 1
    assert escalation_comments(rig, issue) == [first, second]


def test_pipeline_escalation_comment_is_posted_while_git_fails(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    harness = rig.harness
    remote = tmp_path / "remote.git"
    remote.rename(tmp_path / "away.git")  # the remote cannot be reached
    issue = rig.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()

    # the remote cannot be read: the comment, its mention and the label are there anyway
    (comment,) = escalation_comments(rig, issue)
    assert "could not be pushed to `trunkline/issue-1-add-a-widget` yet (GitTransportError" in (
        comment
    )
    assert "needs-human" in rig.github.get_issue(REPO, issue).labels
    escalate = sorted(
        (key.split(":escalate")[1], state)
        for key, state in command_jobs(harness)
        if ":escalate" in key
    )
    # the fetch's failure is retryable: it is tried again, for as long as it lasts
    assert escalate == [("", JobState.DONE), (":poll1", JobState.QUEUED)]

    # git works again: the retry pushes (nothing here) and edits the comment's branch line
    (tmp_path / "away.git").rename(remote)
    make_due(harness)
    harness.drain()
    (comment,) = escalation_comments(rig, issue)
    assert "could not be pushed" not in comment
    assert "was not pushed" in comment  # nothing was committed: nothing to push


def test_pipeline_a_retryable_error_never_gives_up_a_fire_and_forget_command(
    tmp_path: Path,
) -> None:
    """The repetition is a new job with fresh attempts; an answered command still reports."""
    rig = make_rig(tmp_path)
    harness = rig.harness
    tries: list[int] = []

    def flaky_label(command: cmd.ApplyLabel, context: CommandContext) -> Performed:
        tries.append(context.attempt)
        if len(tries) <= 2 * COMMAND_JOB_MAX_ATTEMPTS:
            raise RetryableError("still down", retry_after=900.0)
        return Performed()

    harness.service.performers[cmd.ApplyLabel] = flaky_label
    issue = rig.github.add_issue(REPO, title="Add a widget").number
    harness.deliver("issues", labeled_payload(issue, MAINTAINER))
    harness.drain()
    for _ in range(COMMAND_JOB_MAX_ATTEMPTS):  # the server's retry-after: one try per round
        make_due(harness)
        harness.drain()
    with harness.engine.connect() as conn:
        again = conn.execute(
            select(Job.run_at, Job.created_at).where(Job.key.like("%:apply-label:poll1"))
        ).one()
    assert again.run_at - again.created_at >= timedelta(seconds=899)  # the server's hint
    for _ in range(2 * COMMAND_JOB_MAX_ATTEMPTS):
        make_due(harness)
        harness.drain()
    assert tries == [*range(1, 9), *range(1, 9), 1]
    labels = [state for key, state in command_jobs(harness) if ":apply-label" in key]
    assert labels == [JobState.DONE] * 3


def test_pipeline_a_failed_escalation_push_still_posts_the_comment(tmp_path: Path) -> None:
    github = FakeGitHub()
    github.add_repo(REPO)
    issue = github.add_issue(REPO, title="Add a widget").number
    workspace = Workspace(tmp_path / "data", Identity("bot", "bot@example.com"))
    spec = RepositorySpec(REPO, bare_remote(tmp_path).as_uri())
    tree = workspace.create_worktree(spec, issue, "add-a-widget", "main", None)
    (tree.path / "a.txt").write_text("work\n")
    head = workspace.commit_all(spec, tree, "work so far")
    report = EscalationReport(
        f"{REPO}#{issue}", OutcomeKind.ESCALATED, "budget_usd", "Out of money.", head, "run1.v4"
    )

    def unreachable(worktree: Worktree) -> str:
        raise GitTransportError("pushing failed: the remote hung up")

    with pytest.raises(GitTransportError):
        perform_escalation(
            report,
            github=github,
            workspace=workspace,
            spec=spec,
            worktree=tree,
            issue_number=issue,
            token=lambda: None,
            policy=EscalationPolicy(notify=("lead",)),
            push=unreachable,
        )
    (comment,) = github.comments_on(REPO, issue)  # posted although git failed: it retries
    assert "could not be pushed" in comment.body
    assert NOTIFY in comment.body
    assert github.get_issue(REPO, issue).labels == ("needs-human",)
