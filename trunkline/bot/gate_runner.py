"""Read everything the merge-queue gates of a PR depend on, evaluate them, report them.

Performs I/O (GitHub through the `GitHubPort`, the store). `GateRunner.read` gathers, for one
PR head SHA: the policy and CODEOWNERS **of the base branch** (a PR cannot loosen the rules
it is judged by), the PR's real diff (`list_pull_files`) evaluated by the policy, the lock
subsystems its work item holds (for a PR without a work item: the live holders of the
touched subsystems), the reviewer agent's verdicts, the recorded approvals and the people
who are not independent of the head (the authors and committers of `list_pull_commits`, a
human who took the work item over), and evaluates the pure gates (`trunkline.queue.gates`).
`GateRunner.refresh` also brings the GitHub-review approvals in the store up to date
(level-triggered), posts the `trunkline/scope|review|approval` check runs on the head SHA
and, when the PR is queued, submits `GatesUpdated` (preceded by `PrHeadChanged` if the
queue has another head; both carry the time the reading started, so the queue ignores them
when a reading that started later is already in force: a slow refresh never moves the queue
back to a head that was pushed over).
`synced_read` and `refresh` also remember the head they saw with the PR's `updated_at`
(`observe`), which `/trunkline approve` uses to bind an approval to the head of its comment.
Every step converges, so running it twice is harmless.

Sources are ports so tests can give small fakes: `WorkItemDirectory` (which work item, and so
which lock holder and requester, is behind a PR), `HeldLocks`, `ReviewVerdictSource` and
`QueuePort` (the queue runner's `QueueService`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, select

from trunkline.agents.takeover import TAKEOVER
from trunkline.bot.approval_store import ApprovalRecords
from trunkline.bot.check_reports import post_gate_checks
from trunkline.clock import Clock, SystemClock
from trunkline.github.model import Commit, PullFile, PullRequest, Review, ReviewState
from trunkline.github.policy_file import read_policy
from trunkline.github.port import GitHubPort
from trunkline.locks.holders import human_holder, legacy_human_holder, parse_holder
from trunkline.locks.leases import LockManager
from trunkline.policies.codeowners import CodeOwners, parse_codeowners
from trunkline.policies.evaluation import Change, CompiledPolicy, Evaluation
from trunkline.policies.loader import DEFAULT_POLICY_PATH
from trunkline.policies.model import Policy
from trunkline.queue.effects import Effect
from trunkline.queue.events import Dequeue, Event, GateReport, GatesUpdated, PrHeadChanged
from trunkline.queue.gates import (
    AgentVerdict,
    ApprovalSource,
    GateInputs,
    ReviewerVerdict,
    SubsystemHolders,
    evaluate_gates,
)
from trunkline.queue.holders import work_item_holder
from trunkline.queue.model import ALL_GATES, QueueConfig, QueueState
from trunkline.store.tables import WorkItem

log = logging.getLogger(__name__)

PULL_FILES_LIMIT = 3000
"""GitHub lists at most this many files of a pull request."""

CODEOWNERS_PATHS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
"""Where GitHub looks for CODEOWNERS, in its order: the first one found is used."""


# -- ports -------------------------------------------------------------------------------------

GitHubFor = Callable[[int | None], GitHubPort]
"""The GitHub client of an installation id (the composition root's `InstallationClients`)."""


class QueuePort(Protocol):
    """What the gates and commands need from the queue runner (`QueueService`)."""

    def submit(
        self,
        repo: str,
        base: str,
        event: Event,
        *,
        config: QueueConfig | None = None,
        base_sha: str | None = None,
    ) -> tuple[Effect, ...]:
        """Step the queue durably; `config` and `base_sha` create it when it is missing."""
        ...

    def state(self, repo: str, base: str) -> QueueState | None: ...


@dataclass(frozen=True)
class WorkItemRef:
    issue: int
    holder: str  # the lock holder name of the work item


class WorkItemDirectory(Protocol):
    def for_pr(self, repo: str, pr: int) -> WorkItemRef | None: ...


class HeldLocks(Protocol):
    def held_subsystems(self, repo: str, holder: str) -> tuple[str, ...]: ...

    def live_holders(self, repo: str) -> Mapping[str, tuple[str, ...]]:
        """Subsystem -> the holders of its live leases (for PRs without a work item)."""
        ...


class ReviewVerdictSource(Protocol):
    def verdicts(
        self, github: GitHubPort, repo: str, pr: int, reviews: tuple[Review, ...]
    ) -> tuple[AgentVerdict, ...]: ...


# -- adapters ----------------------------------------------------------------------------------


class StoreWorkItems:
    """Work items from the store's `work_items` table. The lock holder is `issue-<n>`, or
    `human:<login>:issue-<n>` while a human has taken the item over (`data["takeover"]`, written by
    `trunkline.agents.takeover`, which moves the leases to that holder)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def for_pr(self, repo: str, pr: int) -> WorkItemRef | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(WorkItem.issue_number, WorkItem.data)
                .where(WorkItem.repo_full_name == repo, WorkItem.pr_number == pr)
                .order_by(WorkItem.id)
                .limit(1)
            ).first()
        if row is None:
            return None
        data = row.data if isinstance(row.data, dict) else {}
        takeover = data.get(TAKEOVER)
        if isinstance(takeover, dict) and takeover.get("active") and takeover.get("by"):
            return WorkItemRef(
                row.issue_number, human_holder(str(takeover["by"]), row.issue_number)
            )
        return WorkItemRef(row.issue_number, work_item_holder(row.issue_number))


class LeaseHeldLocks:
    """Live leases from the `LockManager` (database clock)."""

    def __init__(self, locks: LockManager) -> None:
        self.locks = locks

    def held_subsystems(self, repo: str, holder: str) -> tuple[str, ...]:
        """`holder`'s live subsystems. For an item taken over before human holders named
        the item (its leases are under the person's shared `human:<login>`), what that
        shared holder has: all the person took over, as before."""
        held = {lease.subsystem for lease in self.locks.held(repo, holder)}
        parsed = parse_holder(holder)
        if not held and parsed.login is not None and parsed.issue is not None:
            shared = legacy_human_holder(parsed.login)
            held = {lease.subsystem for lease in self.locks.held(repo, shared)}
        return tuple(sorted(held))

    def live_holders(self, repo: str) -> Mapping[str, tuple[str, ...]]:
        snapshot = self.locks.snapshot(repo)
        found: dict[str, set[str]] = {}
        for _repo, row in snapshot.leases:
            if row.holder is not None and row.live(snapshot.now):
                found.setdefault(row.subsystem, set()).add(row.holder)
        return {name: tuple(sorted(holders)) for name, holders in found.items()}


VERDICT_MARKER = "trunkline:verdict="
"""`trunkline:verdict=approve|request_changes|escalate`: the last line of a bot review's body."""
_VERDICT = re.compile(r"(?:<sub>)?" + re.escape(VERDICT_MARKER) + r"([a-z_]+)(?:</sub>)?")
_VERDICT_LINE = re.compile(r"(?:<sub>)?" + re.escape(VERDICT_MARKER) + r"[a-z_]*(?:</sub>)?")
_MARKER_LIKE = re.compile(r"trunkline\s*:\s*verdict\s*=", re.IGNORECASE)
_NEUTRAL_MARKER = "trunkline:verdict&#61;"
"""What marker-like text in a summary becomes: it reads the same rendered, never parses."""


class BotReviewVerdicts:
    """The reviewer agent publishes its verdict as a GitHub review by the bot on the exact
    commit. GitHub refuses APPROVE and REQUEST_CHANGES on one's own pull request, and the bot
    opens the agents' PRs, so the verdict is written in the review body as
    `trunkline:verdict=<approve|request_changes|escalate>` (usually a COMMENT review) on the
    body's last line; without the marker an APPROVED review is `approve` and
    CHANGES_REQUESTED is `request_changes`."""

    def __init__(self, bot_login: str | None) -> None:
        self.bot_login = bot_login

    def verdicts(
        self, github: GitHubPort, repo: str, pr: int, reviews: tuple[Review, ...]
    ) -> tuple[AgentVerdict, ...]:
        if self.bot_login is None:
            return ()
        found = []
        for review in reviews:
            if review.author.login.lower() != self.bot_login.lower() or not review.commit_sha:
                continue
            verdict = verdict_of(review)
            if verdict is not None:
                found.append(AgentVerdict(review.commit_sha, verdict, verdict_summary(review.body)))
        return tuple(found)


def verdict_of(review: Review) -> ReviewerVerdict | None:
    """The reviewer verdict a bot review carries (see `BotReviewVerdicts`), or None.

    Only the body's last non-empty line counts, and only when it is the marker alone: that is
    where `verdict_body` writes it, after the summary (the reviewer agent's text about an
    untrusted diff, which could quote a marker of its own)."""
    lines = [line.strip() for line in review.body.splitlines() if line.strip()]
    marked = _VERDICT.fullmatch(lines[-1]) if lines else None
    if marked is not None:
        try:
            return ReviewerVerdict(marked.group(1))
        except ValueError:
            return None
    if review.state is ReviewState.APPROVED:
        return ReviewerVerdict.APPROVE
    if review.state is ReviewState.CHANGES_REQUESTED:
        return ReviewerVerdict.REQUEST_CHANGES
    return None


def verdict_body(verdict: ReviewerVerdict, summary: str) -> str:
    """The body of a bot review that carries `verdict` (for the reviewer agent's runner): the
    summary, with any marker-like text in it neutralised, then the marker on the last line."""
    return f"{neutralise_markers(summary)}\n\n<sub>{VERDICT_MARKER}{verdict.value}</sub>"


def neutralise_markers(text: str) -> str:
    """`text` with everything that looks like a verdict marker made inert."""
    return _MARKER_LIKE.sub(_NEUTRAL_MARKER, text)


def verdict_summary(body: str) -> str:
    return _first_line(_VERDICT_LINE.sub("", body))


def _first_line(text: str, limit: int = 200) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- reading -----------------------------------------------------------------------------------


def read_codeowners(github: GitHubPort, repo: str, ref: str) -> CodeOwners | None:
    for path in CODEOWNERS_PATHS:
        content = github.get_file(repo, path, ref)
        if content is not None:
            return parse_codeowners(content.text)
    return None


def change_of(files: tuple[PullFile, ...]) -> Change:
    """The policy's view of a PR's files (dependency detection is not done here)."""
    added, modified, deleted, renamed = [], [], [], []
    for item in files:
        if item.status == "added" or item.status == "copied":
            added.append(item.path)
        elif item.status == "removed":
            deleted.append(item.path)
        elif item.status == "renamed" and item.previous_path:
            renamed.append((item.previous_path, item.path))
        else:
            modified.append(item.path)
    return Change(
        added=tuple(added),
        modified=tuple(modified),
        deleted=tuple(deleted),
        renamed=tuple(renamed),
        lines_changed=sum(item.additions + item.deletions for item in files),
    )


WEB_FLOW = "web-flow"
"""GitHub's committer of commits made in its web UI: not a person."""


def contributors_of(commits: tuple[Commit, ...], holder: str | None) -> tuple[tuple[str, str], ...]:
    """(login, why) of everyone who is not independent of these commits: their authors and
    committers (as GitHub links them to accounts) and a human who took the work item over."""
    found: dict[str, str] = {}
    login = None if holder is None else parse_holder(holder).login
    if login is not None:
        found[login] = "took over the work item"
    for commit in commits:
        for account, why in (
            (commit.author, "authored commits in this pull request"),
            (commit.committer, "committed to this pull request"),
        ):
            if account is not None and account.login != WEB_FLOW:
                found.setdefault(account.login, why)
    return tuple(sorted(found.items()))


def lock_holders_of(
    policy: Policy, evaluation: Evaluation, live: Mapping[str, tuple[str, ...]]
) -> tuple[SubsystemHolders, ...]:
    """The live holders and capacity of every subsystem the evaluation touches."""
    default = policy.default_subsystem
    capacity = {name: sub.max_active for name, sub in policy.subsystems.items()}
    capacity[default.name] = default.max_active
    return tuple(
        SubsystemHolders(name, live.get(name, ()), capacity.get(name, 1))
        for name in evaluation.subsystem_names
    )


def latest_review_approvals(reviews: tuple[Review, ...]) -> set[tuple[str, str]]:
    """(sha, user) of each user whose latest deciding review is APPROVED (GitHub's rule:
    COMMENTED does not change a user's state; CHANGES_REQUESTED and DISMISSED clear it)."""
    state: dict[str, tuple[str, str] | None] = {}
    for review in reviews:
        login = review.author.login
        if review.state is ReviewState.APPROVED and review.commit_sha:
            state[login] = (review.commit_sha, login)
        elif review.state in (ReviewState.CHANGES_REQUESTED, ReviewState.DISMISSED):
            state[login] = None
    return {value for value in state.values() if value is not None}


def latest_change_requests(reviews: tuple[Review, ...]) -> tuple[Review, ...]:
    """Each user's latest deciding review, where that is CHANGES_REQUESTED on a commit."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.state in (
            ReviewState.APPROVED,
            ReviewState.CHANGES_REQUESTED,
            ReviewState.DISMISSED,
        ):
            latest[review.author.login] = review
    return tuple(
        review
        for review in latest.values()
        if review.state is ReviewState.CHANGES_REQUESTED and review.commit_sha
    )


@dataclass(frozen=True)
class GateReading:
    """The gates of one PR at one SHA, with what they were computed from."""

    repo: str
    pr: int
    head_sha: str
    pull: PullRequest
    policy: Policy | None
    policy_errors: tuple[str, ...]
    evaluation: Evaluation | None
    inputs: GateInputs | None
    reports: tuple[GateReport, ...]

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports)


def _unavailable(detail: str) -> tuple[GateReport, ...]:
    return tuple(GateReport(gate, False, detail) for gate in ALL_GATES)


@dataclass
class GateRunner:
    approvals: ApprovalRecords
    work_items: WorkItemDirectory
    held_locks: HeldLocks
    verdicts: ReviewVerdictSource
    queue: QueuePort | None
    bot_login: str | None
    team_members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)

    def read(
        self,
        github: GitHubPort,
        repo: str,
        pr: int,
        sha: str | None = None,
        *,
        reviews: tuple[Review, ...] | None = None,
    ) -> GateReading:
        """The gates of `pr` at `sha` (default: its current head). Reads only (`reviews`:
        the PR's reviews if the caller has just read them)."""
        pull = github.get_pull(repo, pr)
        head = sha or pull.head_sha
        loaded = read_policy(github, repo, pull.base_ref)
        if not isinstance(loaded, Policy):
            detail = (
                f"the policy {DEFAULT_POLICY_PATH} on {pull.base_ref} is invalid "
                f"({len(loaded)} error(s)); first: {loaded[0]}"
            )
            return GateReading(repo, pr, head, pull, None, loaded, None, None, _unavailable(detail))
        if head != pull.head_sha:
            detail = (
                f"#{pr}'s head is {pull.head_sha[:7]}, not {head[:7]}: gates are evaluated "
                "on the current head only"
            )
            return GateReading(repo, pr, head, pull, loaded, (), None, None, _unavailable(detail))
        files = github.list_pull_files(repo, pr)
        if github.get_pull(repo, pr).head_sha != head:
            detail = f"#{pr}'s head moved while its diff was read; the gates are read again"
            return GateReading(repo, pr, head, pull, loaded, (), None, None, _unavailable(detail))
        evaluation = CompiledPolicy(loaded).evaluate(
            change_of(files), read_codeowners(github, repo, pull.base_ref)
        )
        if reviews is None:
            reviews = github.list_reviews(repo, pr)
        work_item = self.work_items.for_pr(repo, pr)
        holders: tuple[SubsystemHolders, ...] = ()
        if work_item is None:
            held = None
            requester = pull.author.login
            holders = lock_holders_of(loaded, evaluation, self.held_locks.live_holders(repo))
        else:
            held = self.held_locks.held_subsystems(repo, work_item.holder)
            requester = github.get_issue(repo, work_item.issue).author.login
        commits = github.list_pull_commits(repo, pr)
        inputs = GateInputs(
            pr=pr,
            head_sha=head,
            evaluation=evaluation,
            held_subsystems=held,
            requester=requester,
            bot_login=self.bot_login,
            verdicts=self.verdicts.verdicts(github, repo, pr, reviews),
            approvals=self.approvals.approvals(repo, pr),
            team_members=self.team_members,
            diff_truncated=len(files) >= PULL_FILES_LIMIT,
            contributors=contributors_of(commits, None if work_item is None else work_item.holder),
            lock_holders=holders,
        )
        return GateReading(
            repo, pr, head, pull, loaded, (), evaluation, inputs, evaluate_gates(inputs)
        )

    def sync_review_approvals(self, github: GitHubPort, repo: str, pr: int) -> tuple[Review, ...]:
        """Bring the PR's GitHub-review approvals in the store up to GitHub's current view;
        returns the reviews read."""
        reviews = github.list_reviews(repo, pr)
        self.approvals.replace_reviews(repo, pr, latest_review_approvals(reviews))
        for review in latest_change_requests(reviews):
            # a dropped `changes_requested` webhook must not leave a `/trunkline approve` of
            # that SHA, written before the review, counting
            self.approvals.remove(
                repo,
                pr,
                review.commit_sha or "",
                review.author.login,
                ApprovalSource.COMMAND,
                before=review.submitted_at,
            )
        return reviews

    def synced_read(
        self, github: GitHubPort, repo: str, pr: int, sha: str | None = None
    ) -> GateReading:
        """`read` after syncing the review approvals (reads the reviews once)."""
        reviews = self.sync_review_approvals(github, repo, pr)
        reading = self.read(github, repo, pr, sha, reviews=reviews)
        self.observe(repo, reading.pull)
        return reading

    def observe(self, repo: str, pull: PullRequest) -> None:
        """Remember that `pull.head_sha` was the head at `pull.updated_at` (GitHub's clock),
        so that `/trunkline approve` can tell which head a comment was written for."""
        if pull.updated_at is not None:
            self.approvals.observe_head(repo, pull.number, pull.head_sha, pull.updated_at)

    def refresh(self, github: GitHubPort, repo: str, pr: int) -> GateReading:
        """Sync approvals, evaluate the gates on the PR head, tell the queue (if the PR is
        queued) and post the check runs. The queue keeps the verdicts of the evaluation that
        started reading last, so a slower, older evaluation racing this one cannot win; for
        a queued PR the check runs show those verdicts, not this reading's (an older
        reading that finishes last would otherwise leave a stale check run on the head)."""
        read_at = self.clock.now()
        reading = self.synced_read(github, repo, pr)
        in_force = self.submit(reading, read_at=read_at)
        if reading.pull.state == "open":
            post_gate_checks(
                github, repo, reading.head_sha, in_force or reading.reports, self.bot_login
            )
        log.info(
            "gates evaluated",
            extra={
                "repo": repo,
                "pr": pr,
                "sha": reading.head_sha,
                "gates": {str(r.gate): r.ok for r in reading.reports},
            },
        )
        return reading

    def submit(
        self, reading: GateReading, *, read_at: datetime | None = None
    ) -> tuple[GateReport, ...] | None:
        """Tell the queue (if the PR is queued); with an invalid policy, the queue of the
        PR's base branch learns that every gate fails. Returns the verdicts the queue holds
        for the reading's head afterwards (None: the PR is not queued, or on another head)."""
        if self.queue is None:
            return None
        base = reading.pull.base_ref if reading.policy is None else reading.policy.queue.base
        state = self.queue.state(reading.repo, base)
        entry = None if state is None else state.entry(reading.pr)
        if entry is None:
            return None
        if reading.pull.base_ref != base:
            # Retargeted: these verdicts come from another branch's policy and must not count
            # in this queue. The PR leaves it; `/trunkline queue` puts it in its new base's.
            self.queue.submit(
                reading.repo,
                base,
                Dequeue(
                    reading.pr,
                    by="trunkline",
                    reason=f"the PR's base branch changed to {reading.pull.base_ref}",
                ),
            )
            return None
        if entry.head_sha != reading.head_sha and reading.head_sha == reading.pull.head_sha:
            # `read_at` lets the queue refuse this head if a reading that started later (a
            # push's refresh that finished first) already set a newer one
            self.queue.submit(
                reading.repo, base, PrHeadChanged(reading.pr, reading.head_sha, read_at=read_at)
            )
        self.queue.submit(
            reading.repo,
            base,
            GatesUpdated(reading.pr, reading.head_sha, reading.reports, read_at=read_at),
        )
        return self._in_force(reading, base)

    def _in_force(self, reading: GateReading, base: str) -> tuple[GateReport, ...] | None:
        assert self.queue is not None
        state = self.queue.state(reading.repo, base)
        entry = None if state is None else state.entry(reading.pr)
        if entry is None or entry.head_sha != reading.head_sha:
            return None
        reports: list[GateReport] = []
        for report in reading.reports:
            verdict = entry.verdict(report.gate)
            reports.append(
                report if verdict is None else GateReport(verdict.gate, verdict.ok, verdict.detail)
            )
        return tuple(reports)
