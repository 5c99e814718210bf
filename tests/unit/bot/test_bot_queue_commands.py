"""Gate refreshes, approvals, queue slash commands and the merge-group gate, on FakeGitHub.

The queue is a small in-memory double that runs the real pure engine (`step`), so the events
the handlers submit are applied with the engine's semantics; the real `QueueService` is used
by the integration tests on the forge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trunkline.bot.approval_store import MemoryApprovals
from trunkline.bot.approvals import apply_review
from trunkline.bot.check_reports import GROUP_CHECK_NAME
from trunkline.bot.events import PullRequestReviewEvent, parse_payload
from trunkline.bot.gate_runner import (
    BotReviewVerdicts,
    GateRunner,
    WorkItemRef,
    change_of,
    latest_change_requests,
    latest_review_approvals,
)
from trunkline.bot.merge_group import group_contents, group_members
from trunkline.bot.queue_commands import QueueCommands, register_queue_gates, reply_key
from trunkline.bot.router import RoutedEvent, Router
from trunkline.clock import FakeClock
from trunkline.github.fake import FakeGitHub
from trunkline.github.model import (
    Actor,
    CheckConclusion,
    Commit,
    Permission,
    PullFile,
    Review,
    ReviewEvent,
    ReviewState,
)
from trunkline.github.port import GitHubPort
from trunkline.github.sticky import sticky_body
from trunkline.queue.effects import Effect
from trunkline.queue.engine import initial_state, step
from trunkline.queue.events import (
    CheckCompleted,
    Dequeue,
    Enqueue,
    Event,
    FastForwarded,
    GatesUpdated,
    IntegrationBuilt,
    IntegrationConflict,
    PrHeadChanged,
    PriorityChanged,
)
from trunkline.queue.gates import ApprovalSource
from trunkline.queue.model import CheckConclusion as QueueConclusion
from trunkline.queue.model import Gate, OutcomeKind, Priority, QueueConfig, QueueState

REPO = "acme/app"
BOT = "trunkline[bot]"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HEAD = "1" * 40
NEW_HEAD = "2" * 40
POLICY = """\
version: 1
subsystems:
  api: {paths: ["api/**"], owners: [olivia, owen]}
approvals:
  low: {required: 1}
queue: {required_checks: [ci]}
"""


class MemoryQueue:
    """The queue service's contract in memory, stepping the real engine."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], QueueState] = {}
        self.events: list[Event] = []

    def submit(
        self,
        repo: str,
        base: str,
        event: Event,
        *,
        config: QueueConfig | None = None,
        base_sha: str | None = None,
    ) -> tuple[Effect, ...]:
        self.events.append(event)
        state = self.states.get((repo, base))
        if state is None:
            assert config is not None, "queue missing and no config given"
            assert base_sha is not None, "queue missing and no base SHA given"
            state = initial_state(repo, config, base_sha)
        state, effects = step(state, event, NOW)
        self.states[(repo, base)] = state
        return effects

    def state(self, repo: str, base: str) -> QueueState | None:
        return self.states.get((repo, base))

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


@dataclass
class Directory:
    items: dict[int, WorkItemRef] = field(default_factory=dict)

    def for_pr(self, repo: str, pr: int) -> WorkItemRef | None:
        return self.items.get(pr)


@dataclass
class Locks:
    held: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def held_subsystems(self, repo: str, holder: str) -> tuple[str, ...]:
        return self.held.get(holder, ())

    def live_holders(self, repo: str) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for holder, subsystems in self.held.items():
            for name in subsystems:
                found.setdefault(name, []).append(holder)
        return {name: tuple(sorted(holders)) for name, holders in found.items()}


@dataclass
class World:
    github: FakeGitHub
    queue: MemoryQueue
    approvals: MemoryApprovals
    runner: GateRunner
    router: Router
    commands: QueueCommands
    pr: int
    issue: int
    ticks: int = 0

    def tick(self) -> datetime:
        """GitHub's clock: a second later at every call."""
        self.ticks += 1
        return NOW + timedelta(seconds=self.ticks)

    def github_for(self, installation: int | None) -> GitHubPort:
        return self.github

    def dispatch(self, event: str, payload: dict[str, Any]) -> None:
        parsed = parse_payload(event, payload)
        assert parsed is not None
        self.router.dispatch(RoutedEvent("d", event, payload.get("action"), parsed, payload))

    def comment(
        self,
        login: str,
        body: str,
        *,
        account_type: str = "User",
        on_issue: bool = False,
        written_at: datetime | None = None,
    ) -> int:
        """A comment written at `written_at` (default: now), delivered and handled now."""
        number = self.issue if on_issue else self.pr
        written = written_at or self.tick()
        made = self.github.add_comment(REPO, number, author=login, body=body)
        pull_request = {} if on_issue else {"pull_request": {"url": "x"}}
        self.dispatch(
            "issue_comment",
            {
                "action": "created",
                "issue": {"number": number, "title": "t", **pull_request},
                "comment": {
                    "id": made.id,
                    "body": body,
                    "user": {"login": login, "id": 5, "type": account_type},
                    "created_at": written.isoformat(),
                },
                "repository": REPOSITORY,
                "installation": {"id": 1},
            },
        )
        return made.id

    def reply(self, comment_id: int, line: int = 1) -> str | None:
        key = reply_key(comment_id, line)
        for comment in self.github.comments_on(REPO, self.pr):
            if comment.author.login == BOT and comment.body.startswith(sticky_body(key, "")):
                return comment.body
        return None

    def runs(self, sha: str = HEAD) -> dict[str, Any]:
        return {run.name: run for run in self.github.list_check_runs(REPO, sha)}

    def pull_event(self, action: str = "opened") -> None:
        pull = self.github.get_pull(REPO, self.pr)
        base = pull.base_ref
        self.dispatch(
            "pull_request",
            {
                "action": action,
                "number": self.pr,
                "pull_request": {
                    "number": self.pr,
                    "state": "open",
                    "title": "t",
                    "head": {"ref": pull.head_ref, "sha": pull.head_sha},
                    "base": {"ref": base, "sha": pull.base_sha},
                    "updated_at": self.tick().isoformat(),
                },
                "repository": REPOSITORY,
                "installation": {"id": 1},
            },
        )


REPOSITORY = {"id": 1, "name": "app", "full_name": REPO, "private": False}


@pytest.fixture
def world() -> World:
    github = FakeGitHub(BOT)
    github.add_repo(REPO, root_sha="0" * 40)
    github.set_file(REPO, "main", ".github/trunkline.yml", POLICY)
    issue = github.add_issue(REPO, title="Add an endpoint", author="rita").number
    pull = github.add_pull(
        REPO,
        head_ref=f"trunkline/issue-{issue}-endpoint",
        head_sha=HEAD,
        author=BOT,
        files=(PullFile("api/x.py", "modified", 3, 1),),
    )
    for login, permission in {
        "olivia": Permission.WRITE,
        "owen": Permission.MAINTAIN,
        "rita": Permission.WRITE,
        "carol": Permission.READ,
    }.items():
        github.set_permission(REPO, login, permission)
    queue = MemoryQueue()
    approvals = MemoryApprovals()
    runner = GateRunner(
        approvals=approvals,
        work_items=Directory({pull.number: WorkItemRef(issue, f"issue-{issue}")}),
        held_locks=Locks({f"issue-{issue}": ("api",)}),
        verdicts=BotReviewVerdicts(BOT),
        queue=queue,
        bot_login=BOT,
        clock=FakeClock(NOW),
    )
    router = Router()
    holder: list[World] = []
    commands = register_queue_gates(router, runner, queue, lambda _: holder[0].github)
    built = World(github, queue, approvals, runner, router, commands, pull.number, issue)
    holder.append(built)
    return built


def bot_review(world: World, sha: str = HEAD, event: ReviewEvent = ReviewEvent.APPROVE) -> None:
    world.github.create_review(REPO, world.pr, commit_sha=sha, event=event, body="looks right")


def human_review(
    world: World,
    login: str,
    sha: str = HEAD,
    state: ReviewState = ReviewState.APPROVED,
    *,
    submitted_at: datetime | None = None,
) -> dict[str, Any]:
    world.github.add_review(
        REPO, world.pr, author=login, state=state, commit_sha=sha, submitted_at=submitted_at
    )
    submitted = {} if submitted_at is None else {"submitted_at": submitted_at.isoformat()}
    payload = {
        "action": "submitted",
        "review": {
            "id": 9,
            "state": state.value.lower(),
            "commit_id": sha,
            "user": {"login": login, "id": 3, "type": "User"},
            **submitted,
        },
        "pull_request": {
            "number": world.pr,
            "state": "open",
            "title": "t",
            "head": {"ref": "x", "sha": sha},
            "base": {"ref": "main", "sha": "0" * 40},
        },
        "repository": REPOSITORY,
        "installation": {"id": 1},
    }
    world.dispatch("pull_request_review", payload)
    return payload


# -- gate check runs ---------------------------------------------------------------------------


def test_a_new_pr_gets_three_gate_check_runs_once(world: World) -> None:
    world.pull_event("opened")
    runs = world.runs()
    assert {name: run.conclusion for name, run in runs.items()} == {
        "trunkline/scope": CheckConclusion.SUCCESS,
        "trunkline/review": CheckConclusion.FAILURE,
        "trunkline/approval": CheckConclusion.FAILURE,
    }
    assert "within the held locks (api)" in (runs["trunkline/scope"].summary or "")
    assert "no reviewer verdict" in (runs["trunkline/review"].summary or "")
    world.pull_event("opened")  # a redelivery converges: nothing new, nothing edited
    assert len(world.github.calls_of("create_check_run")) == 3
    assert world.github.calls_of("update_check_run") == []


def test_human_approval_on_head_passes_and_a_push_voids_it(world: World) -> None:
    bot_review(world)
    human_review(world, "olivia")
    runs = world.runs()
    assert runs["trunkline/review"].conclusion is CheckConclusion.SUCCESS
    assert runs["trunkline/approval"].conclusion is CheckConclusion.SUCCESS
    assert "approved by olivia" in (runs["trunkline/approval"].summary or "")

    world.github.push_to_pull(REPO, world.pr, NEW_HEAD)
    world.pull_event("synchronize")
    fresh = world.runs(NEW_HEAD)
    assert fresh["trunkline/approval"].conclusion is CheckConclusion.FAILURE
    assert "earlier commit do not count: olivia" in (fresh["trunkline/approval"].summary or "")
    assert fresh["trunkline/review"].conclusion is CheckConclusion.FAILURE
    # The old head's runs are left as they were: they describe that commit.
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.SUCCESS


def test_requester_and_bot_approvals_do_not_count(world: World) -> None:
    bot_review(world)  # the bot's APPROVED review is the reviewer verdict, never a human one
    human_review(world, "rita")  # rita asked for the work (the issue's author)
    human_review(world, "dependabot[bot]")
    summary = world.runs()["trunkline/approval"].summary or ""
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.FAILURE
    assert "rita (the requester)" in summary
    assert "dependabot[bot] (a bot)" in summary
    assert "trunkline[bot] (a bot)" in summary


def test_dismissed_review_removes_the_approval(world: World) -> None:
    payload = human_review(world, "olivia")
    assert [a.user for a in world.approvals.approvals(REPO, world.pr)] == ["olivia"]
    dismissed = {**payload, "action": "dismissed"}
    parsed = PullRequestReviewEvent.model_validate(dismissed)
    assert apply_review(world.approvals, parsed) == "removed"
    assert world.approvals.approvals(REPO, world.pr) == ()


# -- slash commands ----------------------------------------------------------------------------


def test_approve_by_read_only_user_is_refused_politely(world: World) -> None:
    comment = world.comment("carol", "/trunkline approve")
    reply = world.reply(comment)
    assert reply is not None
    assert "Sorry @carol" in reply
    assert "needs write access" in reply
    assert world.approvals.approvals(REPO, world.pr) == ()


def test_approve_by_an_owner_counts(world: World) -> None:
    world.pull_event("opened")
    comment = world.comment("owen", "/trunkline approve")
    reply = world.reply(comment) or ""
    assert f"Recorded @owen's approval of `{HEAD[:7]}`; it counts" in reply
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.SUCCESS


def test_approve_by_the_requester_is_recorded_but_does_not_count(world: World) -> None:
    world.pull_event("opened")
    comment = world.comment("rita", "/trunkline approve")
    assert "it does not count: rita (the requester)" in (world.reply(comment) or "")


def test_approve_binds_to_the_head_when_the_comment_was_written(world: World) -> None:
    """olivia approves while HEAD is the head; a push lands before her comment's job runs.
    Her approval must not count for the new head she never saw."""
    world.pull_event("opened")  # HEAD observed as the head
    written = world.tick()
    world.github.push_to_pull(REPO, world.pr, NEW_HEAD)
    world.pull_event("synchronize")  # NEW_HEAD observed, after the comment was written
    comment = world.comment("olivia", "/trunkline approve", written_at=written)
    reply = world.reply(comment) or ""
    assert f"Sorry @olivia, I cannot be sure that `{NEW_HEAD}` was already the head" in reply
    assert f"`/trunkline approve {NEW_HEAD}`" in reply
    assert world.approvals.approvals(REPO, world.pr) == ()
    assert world.runs(NEW_HEAD)["trunkline/approval"].conclusion is CheckConclusion.FAILURE

    # Naming the SHA approves exactly that commit.
    comment = world.comment("olivia", "/trunkline approve 2222222")
    assert "Recorded @olivia's approval of `2222222`; it counts" in (world.reply(comment) or "")
    assert world.runs(NEW_HEAD)["trunkline/approval"].conclusion is CheckConclusion.SUCCESS


def test_approve_of_an_unobserved_head_is_refused_then_counts_after_it_was_seen(
    world: World,
) -> None:
    # The push's webhook has not been handled yet: the bot never saw NEW_HEAD as the head.
    world.pull_event("opened")
    world.github.push_to_pull(REPO, world.pr, NEW_HEAD)
    comment = world.comment("owen", "/trunkline approve")
    assert "I cannot be sure" in (world.reply(comment) or "")
    world.pull_event("synchronize")
    comment = world.comment("owen", "/trunkline approve")  # written after it was seen
    assert "it counts" in (world.reply(comment) or "")
    assert [(a.user, a.sha) for a in world.approvals.approvals(REPO, world.pr)] == [
        ("owen", NEW_HEAD)
    ]


def test_approve_by_a_short_prefix_needs_the_head_seen_before_the_comment(world: World) -> None:
    """A 7-character prefix could name a look-alike commit pushed after the comment: it binds
    only to a head the bot saw before the comment was written; the full SHA always binds."""
    world.pull_event("opened")
    world.github.push_to_pull(REPO, world.pr, NEW_HEAD)  # not seen by the bot yet
    comment = world.comment("owen", f"/trunkline approve {NEW_HEAD[:7]}")
    reply = world.reply(comment) or ""
    assert "cannot be sure that head was there" in reply
    assert f"`/trunkline approve {NEW_HEAD}`" in reply
    assert world.approvals.approvals(REPO, world.pr) == ()
    comment = world.comment("owen", f"/trunkline approve {NEW_HEAD}")
    assert "it counts" in (world.reply(comment) or "")
    assert [(a.user, a.sha) for a in world.approvals.approvals(REPO, world.pr)] == [
        ("owen", NEW_HEAD)
    ]


def test_a_change_request_withdraws_the_reviewers_command_approval(world: World) -> None:
    world.pull_event("opened")
    comment = world.comment("olivia", "/trunkline approve")
    assert "it counts" in (world.reply(comment) or "")
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.SUCCESS
    human_review(world, "olivia", state=ReviewState.CHANGES_REQUESTED)
    assert world.approvals.approvals(REPO, world.pr) == ()
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.FAILURE


def test_a_change_request_withdraws_an_earlier_written_approval_whose_job_ran_later(
    world: World,
) -> None:
    """owen writes `/trunkline approve`, then changes his mind and requests changes; the
    review is handled first, the comment's job runs after it (a backlog, a retry)."""
    world.pull_event("opened")
    written = world.tick()  # the comment, on GitHub's clock
    human_review(world, "owen", state=ReviewState.CHANGES_REQUESTED, submitted_at=world.tick())
    world.approvals.clock = world.tick  # the comment's job records later still
    world.comment("owen", "/trunkline approve", written_at=written)
    assert world.approvals.approvals(REPO, world.pr) == ()
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.FAILURE
    # A later decision counts: written after the change request.
    comment = world.comment("owen", "/trunkline approve")
    assert "it counts" in (world.reply(comment) or "")


def test_approve_naming_another_sha_records_nothing(world: World) -> None:
    world.pull_event("opened")
    comment = world.comment("owen", "/trunkline approve 2222222")
    reply = world.reply(comment) or ""
    assert "`2222222` is not the head" in reply
    assert f"`/trunkline approve {HEAD}`" in reply
    assert world.approvals.approvals(REPO, world.pr) == ()
    comment = world.comment("owen", "/trunkline approve zz")
    assert "takes nothing or a commit SHA" in (world.reply(comment) or "")


def test_commit_authors_and_the_takeover_human_are_not_independent(world: World) -> None:
    world.pull_event("opened")
    world.github.add_commit(REPO, HEAD, BASE, message="fix", author="olivia", committer="olivia")
    comment = world.comment("olivia", "/trunkline approve")
    assert (
        "it does not count: olivia (authored commits in this pull request: not an "
        "independent approver)" in (world.reply(comment) or "")
    )
    # owen takes the work item over: his leases, and he is no longer independent either.
    directory = world.runner.work_items
    assert isinstance(directory, Directory)
    directory.items[world.pr] = WorkItemRef(world.issue, "human:owen")
    locks = world.runner.held_locks
    assert isinstance(locks, Locks)
    locks.held = {"human:owen": ("api",)}
    comment = world.comment("owen", "/trunkline approve")
    assert "owen (took over the work item: not an independent approver)" in (
        world.reply(comment) or ""
    )
    assert world.runs()["trunkline/approval"].conclusion is CheckConclusion.FAILURE
    assert world.runs()["trunkline/scope"].conclusion is CheckConclusion.SUCCESS


def test_a_persons_pr_passes_scope_unless_a_holder_has_the_subsystem(world: World) -> None:
    person = world.github.add_pull(
        REPO,
        head_ref="hank/fix",
        head_sha="7" * 40,
        author="hank",
        files=(PullFile("api/z.py", "modified", 1, 0),),
    ).number
    reading = world.runner.refresh(world.github, REPO, person)
    scope = reading.reports[0]
    assert not scope.ok
    assert "api is held by work item #1 (issue-1)" in scope.detail
    assert "Wait until the holder merges or releases it" in scope.detail
    run = world.runs("7" * 40)["trunkline/scope"]
    assert run.conclusion is CheckConclusion.FAILURE
    assert "held by work item #1" in (run.summary or "")
    locks = world.runner.held_locks
    assert isinstance(locks, Locks)
    locks.held = {}  # the work item merged and released api
    reading = world.runner.refresh(world.github, REPO, person)
    assert reading.reports[0].ok, reading.reports[0].detail
    assert "has no work item" in reading.reports[0].detail
    # hank is the requester of his own PR: his approval does not count.
    world.approvals.record(REPO, person, "7" * 40, "hank", ApprovalSource.COMMAND)
    approval = world.runner.refresh(world.github, REPO, person).reports[2]
    assert not approval.ok
    assert "hank (the requester)" in approval.detail


WRITE_COMMANDS = (
    "/trunkline queue",
    "/trunkline dequeue",
    "/trunkline approve",
    "/trunkline retry",
    "/trunkline priority high",
    "/trunkline priority low",
)


@pytest.mark.parametrize("body", WRITE_COMMANDS)
def test_every_write_command_refuses_read_only_users(world: World, body: str) -> None:
    world.pull_event("opened")
    before = len(world.queue.events)
    comment = world.comment("carol", body)
    reply = world.reply(comment) or ""
    name = body.split()[1]
    assert f"Sorry @carol, `/trunkline {name}` needs write access" in reply
    assert len(world.queue.events) == before
    assert world.approvals.approvals(REPO, world.pr) == ()


def test_explain_needs_read_access(world: World) -> None:
    comment = world.comment("stranger", "/trunkline explain")
    assert "Sorry @stranger, `/trunkline explain` needs read access" in (world.reply(comment) or "")
    assert "Gates of" in (world.reply(world.comment("carol", "/trunkline explain")) or "")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("/trunkline", "needs a command"),
        ("/trunkline priority urgent", "takes one of `high`, `normal`, `low`"),
        ("/trunkline queue now", "takes no arguments"),
        ("/trunkline approve abc", "takes nothing or a commit SHA"),
    ],
)
def test_malformed_commands_get_the_short_help(world: World, body: str, problem: str) -> None:
    reply = world.reply(world.comment("stranger", body)) or ""
    assert problem in reply
    assert "trunkline understands:" in reply
    assert world.queue.events == []


def test_unknown_command_gets_help_and_agent_commands_are_left_alone(world: World) -> None:
    comment = world.comment("olivia", "/trunkline frobnicate\n/trunkline takeover")
    assert "is not a trunkline command" in (world.reply(comment, 1) or "")
    assert "/trunkline queue" in (world.reply(comment, 1) or "")
    assert world.reply(comment, 2) is None


def test_comments_by_bots_and_on_issues_are_left_alone(world: World) -> None:
    comment = world.comment("helper[bot]", "/trunkline queue", account_type="Bot")
    assert world.reply(comment) is None
    world.comment("owen", "/trunkline queue\n/trunkline nonsense", on_issue=True)
    assert world.queue.events == []
    assert [c.author.login for c in world.github.comments_on(REPO, world.issue)] == ["owen"]


def test_queue_by_maintainer_enqueues_with_config_and_gates(world: World) -> None:
    comment = world.comment("owen", "/trunkline queue")
    assert world.queue.of(Enqueue) == [Enqueue(world.pr, HEAD, Priority.NORMAL, read_at=NOW)]
    state = world.queue.state(REPO, "main")
    assert state is not None
    assert state.config.required_checks == ("ci",)
    assert state.base_sha == "0" * 40
    updates = world.queue.of(GatesUpdated)
    assert updates
    assert updates[-1].head_sha == HEAD
    assert [r.gate for r in updates[-1].reports] == [Gate.SCOPE, Gate.REVIEW, Gate.APPROVAL]
    assert "Queued #" in (world.reply(comment) or "")
    assert "number 1 of 1 in the queue" in (world.reply(comment) or "")


def test_dequeue_priority_and_explain(world: World) -> None:
    world.comment("owen", "/trunkline queue")
    comment = world.comment("owen", "/trunkline priority high")
    assert world.queue.of(PriorityChanged) == [PriorityChanged(world.pr, Priority.HIGH)]
    assert "now high" in (world.reply(comment) or "")

    explained = world.reply(world.comment("carol", "/trunkline explain")) or ""
    for text in ("scope", "review", "approval", "risk: low", "api (owners: olivia, owen)"):
        assert text in explained
    assert "is number 1 in the queue" in explained

    comment = world.comment("owen", "/trunkline dequeue")
    assert world.queue.of(Dequeue) == [Dequeue(world.pr, "owen", "dequeued by @owen")]
    state = world.queue.state(REPO, "main")
    assert state is not None
    assert state.entry(world.pr) is None
    assert "not queued" in (world.reply(world.comment("carol", "/trunkline explain")) or "")


def test_retry_requeues_only_an_ejected_pr(world: World) -> None:
    comment = world.comment("owen", "/trunkline retry")
    assert "was not ejected" in (world.reply(comment) or "")
    bot_review(world)
    human_review(world, "olivia")
    world.comment("owen", "/trunkline queue")
    state = world.queue.state(REPO, "main")
    assert state is not None
    assert state.builds, "all gates pass: a build starts"
    world.queue.submit(REPO, "main", IntegrationConflict(state.builds[0].build_id, ("api/x.py",)))
    state = world.queue.state(REPO, "main")
    assert state is not None
    outcome = state.outcome(world.pr)
    assert outcome is not None
    assert outcome.kind is OutcomeKind.EJECTED
    comment = world.comment("owen", "/trunkline retry")
    assert "Re-queued" in (world.reply(comment) or "")
    assert len(world.queue.of(Enqueue)) == 2


def test_queueing_a_merged_pr_again_says_it_left(world: World) -> None:
    bot_review(world)
    human_review(world, "olivia")
    world.comment("owen", "/trunkline queue")
    state = world.queue.state(REPO, "main")
    assert state is not None
    build = state.builds[0]
    world.queue.submit(REPO, "main", IntegrationBuilt(build.build_id, "7" * 40))
    world.queue.submit(REPO, "main", CheckCompleted("7" * 40, "ci", QueueConclusion.SUCCESS))
    world.queue.submit(REPO, "main", FastForwarded(build.build_id, "7" * 40))
    merged = world.queue.state(REPO, "main")
    assert merged is not None
    assert world.pr in merged.merged_prs
    comment = world.comment("owen", "/trunkline queue")
    assert "it already left it (merged" in (world.reply(comment) or "")


def test_a_push_to_a_queued_pr_reports_the_new_head_first(world: World) -> None:
    world.comment("owen", "/trunkline queue")
    world.github.push_to_pull(REPO, world.pr, NEW_HEAD)
    world.pull_event("synchronize")
    assert world.queue.of(PrHeadChanged) == [PrHeadChanged(world.pr, NEW_HEAD, read_at=NOW)]
    assert world.queue.of(GatesUpdated)[-1].head_sha == NEW_HEAD


def test_a_slow_refresh_that_read_before_a_push_cannot_put_the_old_head_back(
    world: World,
) -> None:
    bot_review(world)
    human_review(world, "olivia")
    world.comment("owen", "/trunkline queue")
    clock = world.runner.clock
    assert isinstance(clock, FakeClock)
    # R1 (a review, a comment or /trunkline explain) reads HEAD: every gate passes ...
    clock.advance(1)
    slow_read_at = clock.now()
    slow = world.runner.synced_read(world.github, REPO, world.pr)
    assert slow.head_sha == HEAD
    assert slow.ok
    # ... a push lands, and its refresh (R2, started later) finishes first
    world.github.push_to_pull(REPO, world.pr, NEW_HEAD)
    clock.advance(1)
    world.pull_event("synchronize")
    pushed = world.queue.state(REPO, "main")
    assert pushed is not None
    entry = pushed.entry(world.pr)
    assert entry is not None
    assert entry.head_sha == NEW_HEAD
    assert not entry.gates_pass
    # R1 submits what it read before the push: stale, ignored
    world.runner.submit(slow, read_at=slow_read_at)
    state = world.queue.state(REPO, "main")
    assert state is not None
    entry = state.entry(world.pr)
    assert entry is not None
    assert entry.head_sha == NEW_HEAD
    assert not entry.gates_pass
    assert state.builds == ()


def test_a_slow_refresh_finishing_last_leaves_the_check_runs_the_queue_holds(
    world: World,
) -> None:
    """A refresh that read before the bot's review landed finishes after the review's own
    refresh: the queue keeps the newer verdicts, and so must the check runs on the head."""
    human_review(world, "olivia")
    world.comment("owen", "/trunkline queue")
    assert world.runs()["trunkline/review"].conclusion is CheckConclusion.FAILURE
    runner = world.runner
    clock = runner.clock
    assert isinstance(clock, FakeClock)
    read = runner.synced_read

    def read_then_race(github: GitHubPort, repo: str, pr: int, sha: str | None = None) -> Any:
        reading = read(github, repo, pr, sha)  # no review by the bot yet
        runner.synced_read = read  # type: ignore[method-assign]
        bot_review(world)
        clock.advance(1)
        runner.refresh(github, repo, pr)  # the review's refresh starts later, ends first
        return reading

    runner.synced_read = read_then_race  # type: ignore[method-assign]
    clock.advance(1)
    runner.refresh(world.github, REPO, world.pr)

    state = world.queue.state(REPO, "main")
    assert state is not None
    entry = state.entry(world.pr)
    assert entry is not None
    assert entry.gates_pass
    assert world.runs()["trunkline/review"].conclusion is CheckConclusion.SUCCESS


def test_invalid_policy_fails_every_gate_with_the_error(world: World) -> None:
    world.github.set_file(REPO, "main", ".github/trunkline.yml", "version: 2\n")
    world.pull_event("opened")
    runs = world.runs()
    assert all(run.conclusion is CheckConclusion.FAILURE for run in runs.values())
    assert "is invalid" in (runs["trunkline/scope"].summary or "")
    comment = world.comment("owen", "/trunkline queue")
    assert "invalid" in (world.reply(comment) or "")
    assert world.queue.events == []


# -- merge groups ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "members"),
    [
        (f"refs/heads/gh-readonly-queue/main/pr-104-{HEAD}", ((104, HEAD),)),
        (f"gh-readonly-queue/release/1.x/pr-7-{HEAD}", ((7, HEAD),)),
        (
            f"refs/heads/gh-readonly-queue/main/pr-1-{HEAD}/pr-2-{NEW_HEAD}",
            ((1, HEAD), (2, NEW_HEAD)),
        ),
        (f"refs/heads/feature/pr-104-{HEAD}", ()),
        ("refs/heads/gh-readonly-queue/main/pr-104-abc", ()),
    ],
)
def test_group_members_from_the_head_ref(ref: str, members: tuple[tuple[int, str], ...]) -> None:
    assert group_members(ref) == members


GROUP = "9" * 40
BASE = "0" * 40


def merge_group(world: World, head_ref: str, head_sha: str = GROUP) -> None:
    world.dispatch(
        "merge_group",
        {
            "action": "checks_requested",
            "merge_group": {
                "head_sha": head_sha,
                "head_ref": head_ref,
                "base_sha": BASE,
                "base_ref": "refs/heads/main",
            },
            "repository": REPOSITORY,
            "installation": {"id": 1},
        },
    )


def merge_commit(world: World, sha: str, parent: str, pr: int, pr_head: str) -> str:
    """GitHub's merge-queue merge commit of `pr` (at `pr_head`) on `parent`."""
    world.github.add_commit(REPO, pr_head, BASE)
    return world.github.add_commit(
        REPO, sha, parent, pr_head, message=f"Merge pull request #{pr} from acme/branch\n\nt"
    )


def test_merge_group_gate_passes_only_when_every_gate_passes(world: World) -> None:
    ref = f"refs/heads/gh-readonly-queue/main/pr-{world.pr}-{HEAD}"
    merge_commit(world, GROUP, BASE, world.pr, HEAD)
    merge_group(world, ref)
    gate = world.runs(GROUP)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert f"#{world.pr} at `{HEAD[:7]}`" in (gate.summary or "")
    bot_review(world)
    human_review(world, "olivia")
    merge_group(world, ref)
    gate = world.runs(GROUP)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.SUCCESS
    assert len(world.github.calls_of("update_check_run")) >= 1  # the same run, updated


def test_merge_group_checks_every_pr_ahead_in_the_group(world: World) -> None:
    """The group of #pr also contains #ahead (queued before it): its failing gates fail the
    group even though the ref names only #pr."""
    ahead_head = "3" * 40
    ahead = world.github.add_pull(
        REPO,
        head_ref="someone/ahead",
        head_sha=ahead_head,
        author="hank",
        files=(PullFile("README.md", "modified", 1, 1),),  # the default subsystem: unheld
    ).number
    first = merge_commit(world, "8" * 40, BASE, ahead, ahead_head)
    merge_commit(world, GROUP, first, world.pr, HEAD)
    bot_review(world)
    human_review(world, "olivia")
    merge_group(world, f"refs/heads/gh-readonly-queue/main/pr-{world.pr}-{HEAD}")
    gate = world.runs(GROUP)[GROUP_CHECK_NAME]
    summary = gate.summary or ""
    assert gate.conclusion is CheckConclusion.FAILURE
    assert f"### #{ahead} at `{ahead_head[:7]}` ❌" in summary
    assert f"### #{world.pr} at `{HEAD[:7]}` ✅" in summary
    assert "1 of 2 pull request(s) fail a gate" in (gate.title or "")
    # Once #ahead passes too, the group passes (owen owns the default subsystem).
    world.github.set_file(REPO, "main", ".github/CODEOWNERS", "* @owen\n")
    world.github.create_review(
        REPO, ahead, commit_sha=ahead_head, event=ReviewEvent.APPROVE, body="ok"
    )
    world.github.add_review(
        REPO, ahead, author="owen", state=ReviewState.APPROVED, commit_sha=ahead_head
    )
    merge_group(world, f"refs/heads/gh-readonly-queue/main/pr-{world.pr}-{HEAD}")
    gate = world.runs(GROUP)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.SUCCESS, gate.summary


def test_merge_group_with_a_commit_of_no_known_pr_fails(world: World) -> None:
    bot_review(world)
    human_review(world, "olivia")
    stray = world.github.add_commit(REPO, "5" * 40, BASE, message="a commit from nowhere")
    world.github.add_commit(REPO, GROUP, stray, HEAD, message=f"Merge pull request #{world.pr}")
    merge_group(world, f"refs/heads/gh-readonly-queue/main/pr-{world.pr}-{HEAD}")
    gate = world.runs(GROUP)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert f"commit(s) {stray[:7]} of the merge group belong to no pull request" in (
        gate.summary or ""
    )


def test_merge_group_of_a_moved_head_or_unknown_pr_fails(world: World) -> None:
    bot_review(world)
    human_review(world, "olivia")
    merge_commit(world, GROUP, BASE, world.pr, NEW_HEAD)
    merge_group(world, f"refs/heads/gh-readonly-queue/main/pr-{world.pr}-{NEW_HEAD}")
    gate = world.runs(GROUP)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert "gates are evaluated on the current head only" in (gate.summary or "")
    unknown = merge_commit(world, "6" * 40, BASE, 999, HEAD)
    merge_group(world, f"refs/heads/gh-readonly-queue/main/pr-999-{HEAD}", unknown)
    gate = world.runs(unknown)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert "pull request #999 not found" in (gate.summary or "")
    merge_group(world, "refs/heads/gh-readonly-queue/main/nothing", BASE)
    gate = world.runs(BASE)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert "names no pull request" in (gate.summary or "")
    merge_group(world, f"refs/heads/gh-readonly-queue/main/pr-{world.pr}-{HEAD}", "4" * 40)
    gate = world.runs("4" * 40)[GROUP_CHECK_NAME]
    assert gate.conclusion is CheckConclusion.FAILURE
    assert "cannot be listed" in (gate.summary or "")


@pytest.mark.parametrize(
    ("messages", "ref_pr", "members", "unattributed"),
    [
        # merge commits name their PR; the second parent is its head
        ((("m1", ("b", "h1"), "Merge pull request #1 from a/x"),), None, ((1, "h1"),), ()),
        # a squash commit: the PR is known, its SHA is not
        ((("s2", ("b",), "Add a thing (#2)"),), None, ((2, None),), ()),
        # the ref's PR and the commits reachable from its head
        ((("c3", ("b",), "change"),), (3, "c3"), ((3, "c3"),), ()),
        ((("x", ("b",), "stray"),), None, (), ("x",)),
        # the PR's own commits under its merge commit belong to it
        (
            (("c1", ("b",), "work"), ("m1", ("b", "c1"), "Merge pull request #1 from a/x")),
            None,
            ((1, "c1"),),
            (),
        ),
    ],
)
def test_group_contents(
    messages: tuple[tuple[str, tuple[str, ...], str], ...],
    ref_pr: tuple[int, str] | None,
    members: tuple[tuple[int, str | None], ...],
    unattributed: tuple[str, ...],
) -> None:
    commits = tuple(Commit(sha, parents, message) for sha, parents, message in messages)
    ref = "refs/heads/main" if ref_pr is None else f"gh-readonly-queue/main/pr-{ref_pr[0]}-"
    contents = group_contents(ref, commits)
    if ref_pr is not None:  # group_members needs a 40-hex SHA: checked in its own test
        contents = group_contents(ref + "f" * 40, commits)
        assert contents.members[-1] == (ref_pr[0], "f" * 40)
        return
    assert contents.members == members
    assert contents.unattributed == unattributed


# -- pure pieces of the runner -----------------------------------------------------------------


def test_latest_review_per_user_decides() -> None:
    def review(login: str, state: ReviewState, sha: str = HEAD) -> Review:
        return Review(1, Actor(login), state, sha)

    reviews = (
        review("a", ReviewState.APPROVED),
        review("a", ReviewState.COMMENTED),  # a comment keeps the approval
        review("b", ReviewState.APPROVED),
        review("b", ReviewState.CHANGES_REQUESTED),
        review("c", ReviewState.APPROVED, NEW_HEAD),
        review("d", ReviewState.APPROVED),
        review("d", ReviewState.DISMISSED),
    )
    assert latest_review_approvals(reviews) == {(HEAD, "a"), (NEW_HEAD, "c")}
    assert [(r.author.login, r.state) for r in latest_change_requests(reviews)] == [
        ("b", ReviewState.CHANGES_REQUESTED)
    ]


def test_change_of_pull_files() -> None:
    change = change_of(
        (
            PullFile("a.py", "added", 3, 0),
            PullFile("b.py", "modified", 1, 1),
            PullFile("c.py", "removed", 0, 9),
            PullFile("new.py", "renamed", 0, 0, previous_path="old.py"),
        )
    )
    assert (change.added, change.modified, change.deleted, change.renamed) == (
        ("a.py",),
        ("b.py",),
        ("c.py",),
        (("old.py", "new.py"),),
    )
    assert change.lines_changed == 14


def test_a_push_while_the_diff_is_read_evaluates_nothing(world: World) -> None:
    class PushingGitHub(FakeGitHub):
        def list_pull_files(self, repo: str, number: int) -> tuple[PullFile, ...]:
            files = super().list_pull_files(repo, number)
            if self.get_pull(repo, number).head_sha == HEAD:
                self.push_to_pull(repo, number, NEW_HEAD)
            return files

    racing = PushingGitHub(BOT)
    racing.repos = world.github.repos
    reading = world.runner.read(racing, REPO, world.pr)
    assert reading.head_sha == HEAD
    assert reading.inputs is None
    assert not reading.ok
    assert "moved while its diff was read" in reading.reports[0].detail


def test_a_queued_pr_retargeted_to_another_base_leaves_the_queue(world: World) -> None:
    world.comment("owen", "/trunkline queue")
    assert world.queue.of(Enqueue) == [Enqueue(world.pr, HEAD, Priority.NORMAL, read_at=NOW)]
    # An old branch whose policy names `main` as its queue's base but asks for less.
    world.github.set_ref(REPO, "heads/release", "0" * 40)
    world.github.set_file(
        REPO, "release", ".github/trunkline.yml", "version: 1\nqueue: {required_checks: [ci]}\n"
    )
    world.github.retarget_pull(REPO, world.pr, "release")
    world.pull_event("edited")
    world.comment("carl", "/trunkline explain")  # any re-read of the gates
    dequeued = world.queue.of(Dequeue)
    assert dequeued
    assert all("base branch changed to release" in event.reason for event in dequeued)
    state = world.queue.state(REPO, "main")
    assert state is not None
    assert state.entry(world.pr) is None
    assert not [
        e
        for e in world.queue.events[len(world.queue.of(Enqueue)) :]
        if isinstance(e, GatesUpdated)
        and world.queue.events.index(e) > world.queue.events.index(dequeued[0])
    ]
