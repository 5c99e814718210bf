"""The merge queue's state: frozen dataclasses and `StrEnum` choices.

Pure; performs no I/O. One `QueueState` describes one queue (a repository and a base branch).
The state is shaped around *builds*: a build is one integration attempt, an ordered tuple of
PRs tested together on top of a base SHA. The serial queue runs one single-PR build at a
time; batching and speculative checks (issue 7) only add builds with more PRs, or more builds
at once, without changing the shape. Every field is immutable, so a state can be stored,
compared and replayed; `trunkline.queue.engine.step` is the only thing that makes a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from trunkline.errors import ConfigurationError

RECENT_OUTCOMES_LIMIT = 50
"""How many merged / ejected / dequeued outcomes a state remembers (newest last)."""

BASE_HISTORY_LIMIT = 32
"""How many earlier base SHAs a state remembers, to ignore late `BaseMoved` reports."""


class QueueConfigError(ConfigurationError):
    """A `QueueConfig` value the engine cannot run with."""


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Sort key: lower runs first."""
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


class MergeMethod(StrEnum):
    MERGE = "merge"
    REBASE = "rebase"
    SQUASH = "squash"


class Gate(StrEnum):
    """The per-PR gates evaluated on the PR's head SHA (required checks are per build)."""

    SCOPE = "scope"
    REVIEW = "review"
    APPROVAL = "approval"


ALL_GATES: tuple[Gate, ...] = (Gate.SCOPE, Gate.REVIEW, Gate.APPROVAL)


class CheckConclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    ACTION_REQUIRED = "action_required"
    STALE = "stale"
    STARTUP_FAILURE = "startup_failure"


INFRASTRUCTURE_CONCLUSIONS = frozenset(
    {CheckConclusion.CANCELLED, CheckConclusion.TIMED_OUT, CheckConclusion.STARTUP_FAILURE}
)
"""Conclusions that say the CI did not finish, not that the code is wrong: retried under
`retry_on_timeout` like the engine's own timeouts. Every other non-success conclusion is a
failure (retried under `flake_retries`). Only `success` passes: a required check that was
skipped or neutral has not shown that this exact tree works."""


class BuildState(StrEnum):
    BUILDING = "building"  # BuildIntegration requested, no integration commit yet
    TESTING = "testing"  # integration commit exists, required checks requested
    PASSED = "passed"  # every required check passed; FastForwardBase requested


class EntryState(StrEnum):
    """Where an entry is, derived from its gates and its build (see `QueueState.entry_state`)."""

    WAITING = "waiting"  # a gate is missing or failing for the current head SHA
    QUEUED = "queued"  # every gate passes; waiting for a build slot
    BUILDING = "building"
    TESTING = "testing"
    MERGING = "merging"  # fast-forward requested


class OutcomeKind(StrEnum):
    MERGED = "merged"
    EJECTED = "ejected"
    DEQUEUED = "dequeued"


@dataclass(frozen=True)
class QueueConfig:
    """How one queue runs. The policy file's `queue:` section is mapped onto this by an adapter.

    `retry_on_timeout` is how many times a build's checks are re-requested after a check timed
    out, never started, or was cancelled by the CI; `flake_retries` how many times a failed
    required check is re-run on the same SHA before the failure counts.

    Throughput (all off by default, which is the serial queue): `batch_size` is the most PRs
    tested together as one integration commit; a build of fewer PRs starts only once the oldest
    eligible entry has waited `batch_wait` (or at once when `batch_size` are eligible).
    `parallel_checks` is the speculation depth: how many builds run at once, each stacked on
    the integration commit of the build ahead of it. `pretest` first tests each new batch
    on the base, off the stack (an isolation build, bisected when it fails), and stacks only
    PRs that passed there: a failure then never voids the speculative builds behind it.

    With `pretest`: `speculation_floor` (0: off) lets new PRs skip the isolation build and be
    stacked directly while the chance that the new build and every unresolved build under it
    pass (each PR not yet cleared is bad at the rate this queue has ejected, prior 10%) stays
    >= the floor, so a short queue merges in one CI round; `cleared_batch_size` (0: the
    `batch_size`) is the largest stacked batch of cleared PRs (they rarely fail, so larger
    batches cost little); `merge_isolated` fast-forwards a passed isolation build made on the
    current base when the stack is empty, instead of testing its PRs again in the stack.

    `isolation_slots` (0: off; with `pretest`) gives isolation builds (`pretest` batches
    and halves of failed batches) their own slots: up to that many run at once beside the
    `parallel_checks` stacked builds, instead of taking the stack's slots. With more slots
    than CI runners the CI's own queue keeps every runner busy, and a shallow stack of
    cleared PRs collects them into large batches. In this mode, while a full batch of
    untested PRs waits, the untested second half of a bisected batch rejoins them (tested
    again in a full batch) instead of being tested on its own.

    `parallel_bisection` (not with `pretest`): a failed build of n PRs starts one *probe
    round* at once, on the base the failed build had: its n-1 proper prefixes (isolation
    builds) and a rerun of the whole build (the flake check). The rerun passing merges the
    build; otherwise the longest passing prefix is an exact tested SHA that merges, the PR
    after it (in two failed trees: the original and the next longer candidate) is ejected, and
    the PRs after that rejoin the queue at its front. Nothing new is stacked during a round.
    """

    base: str = "main"
    required_checks: tuple[str, ...] = ("ci",)
    # (check name, App slug): that required check counts only when reported by that App.
    check_apps: tuple[tuple[str, str], ...] = ()
    merge_method: MergeMethod = MergeMethod.MERGE
    check_timeout: timedelta = timedelta(minutes=60)
    check_start_timeout: timedelta = timedelta(minutes=10)
    retry_on_timeout: int = 0
    batch_size: int = 1
    parallel_checks: int = 1
    flake_retries: int = 0
    batch_wait: timedelta = timedelta(0)
    pretest: bool = False
    speculation_floor: float = 0.0
    cleared_batch_size: int = 0  # 0: batch_size
    merge_isolated: bool = False
    parallel_bisection: bool = False
    bisection_holds_stack: bool = True
    isolation_slots: int = 0  # 0: isolation builds take the stack's `parallel_checks` slots

    def app_for(self, check: str) -> str | None:
        """The App slug `check` is pinned to, or None when any App (but trunkline) counts."""
        for name, app in self.check_apps:
            if name == check:
                return app
        return None

    def __post_init__(self) -> None:
        if not self.base.strip():
            raise QueueConfigError("queue base branch must not be empty")
        if not self.required_checks:
            raise QueueConfigError(
                "queue.required_checks must name at least one check: the queue only "
                "fast-forwards to commits whose required checks passed"
            )
        if any(not name.strip() for name in self.required_checks):
            raise QueueConfigError("queue.required_checks must not contain empty names")
        if len(set(self.required_checks)) != len(self.required_checks):
            raise QueueConfigError("queue.required_checks must not repeat a name")
        for name, app in self.check_apps:
            if name not in self.required_checks or not app.strip():
                raise QueueConfigError(
                    f"queue.required_checks pins {name!r} to an App, but it is not a required "
                    "check or the App is empty"
                )
        if self.check_timeout <= timedelta(0) or self.check_start_timeout <= timedelta(0):
            raise QueueConfigError("queue check_timeout and check_start_timeout must be positive")
        if self.retry_on_timeout < 0 or self.flake_retries < 0:
            raise QueueConfigError("queue retry_on_timeout and flake_retries must be >= 0")
        for name, value in (
            ("batch_size", self.batch_size),
            ("parallel_checks", self.parallel_checks),
        ):
            if value < 1:
                raise QueueConfigError(f"queue.{name} must be >= 1, got {value}")
        if not 0.0 <= self.speculation_floor <= 1.0:
            raise QueueConfigError("queue.speculation_floor must be between 0 and 1")
        if self.cleared_batch_size < 0:
            raise QueueConfigError("queue.cleared_batch_size must be >= 0 (0: batch_size)")
        if self.parallel_bisection and self.pretest:
            raise QueueConfigError("queue.parallel_bisection cannot be combined with pretest")
        if self.isolation_slots and not self.pretest:
            raise QueueConfigError(
                "queue.isolation_slots needs pretest: it gives pretest's isolation builds "
                "slots of their own"
            )
        if self.isolation_slots < 0:
            raise QueueConfigError(
                "queue.isolation_slots must be >= 0 (0: isolation builds share parallel_checks)"
            )
        if self.batch_wait < timedelta(0):
            raise QueueConfigError("queue.batch_wait must not be negative")


@dataclass(frozen=True)
class GateVerdict:
    """A gate's verdict, valid only for the head SHA it was given for."""

    gate: Gate
    head_sha: str
    ok: bool
    detail: str
    read_at: datetime | None = None  # when the evaluation that gave it started reading


@dataclass(frozen=True)
class Entry:
    """One PR waiting in the queue (or being integrated)."""

    pr: int
    head_sha: str
    priority: Priority
    enqueued_at: datetime
    seq: int  # FIFO tie-break within a priority; unique per queue
    verdicts: tuple[GateVerdict, ...] = ()
    leave_reason: str | None = None  # dequeue asked while a fast-forward was in flight
    head_read_at: datetime | None = None  # when the reading that gave `head_sha` started

    @property
    def order_key(self) -> tuple[int, int]:
        return (self.priority.rank, self.seq)

    def verdict(self, gate: Gate) -> GateVerdict | None:
        """The verdict for `gate` on the current head SHA, or None when there is none."""
        for verdict in self.verdicts:
            if verdict.gate is gate and verdict.head_sha == self.head_sha:
                return verdict
        return None

    @property
    def gates_pass(self) -> bool:
        return all((v := self.verdict(gate)) is not None and v.ok for gate in ALL_GATES)


@dataclass(frozen=True)
class CheckResult:
    """What the engine knows about one required check on one build's integration SHA."""

    name: str
    started_at: datetime | None = None
    conclusion: CheckConclusion | None = None
    summary: str = ""
    completed_at: datetime | None = None


@dataclass(frozen=True)
class Build:
    """One integration attempt: `prs` (in order) at `head_shas` merged onto `base_sha`."""

    build_id: str
    prs: tuple[int, ...]
    head_shas: tuple[str, ...]
    base_sha: str
    state: BuildState
    requested_at: datetime  # when BuildIntegration was emitted
    integration_sha: str | None = None
    checks_requested_at: datetime | None = None  # start of the current attempt's clock
    checks: tuple[CheckResult, ...] = ()  # results of the current attempt, required checks only
    attempt: int = 1  # 1 + every retry of the checks on this integration SHA
    timeout_retries: int = 0
    flake_retries_used: int = 0
    # Speculation: a failure of a build that is not at the front (stacked on builds that have
    # not merged yet) may be caused by a build ahead, so it is recorded here and judged only
    # when the build reaches the front; builds ahead that fail void it first.
    failure: str | None = None
    failure_detail: str = ""
    # An isolation build (half of a failed batch, or a `pretest` batch): tested on the queue's
    # base, off the stack (nothing is stacked on it and it never merges itself). When it
    # passes, its PRs are cleared and stacked again; when it fails, it is bisected again, and
    # a single PR that fails is the culprit.
    bisecting: bool = False
    # Its checks failed and are being rerun (a flake retry): builds behind are stacked as if
    # it had failed, since a failure is usually real; it still merges if the rerun passes.
    suspect: bool = False
    # `parallel_bisection`: a prefix of the failed build `probe_of` (an isolation build on that
    # build's base), or (`probed`) the failed build itself, rerun while its probes run.
    # `first_failure` is the failure that started the round (the culprit's ejection reason).
    probe_of: str | None = None
    probed: bool = False
    first_failure: str = ""

    @property
    def transparent(self) -> bool:
        """Nothing is stacked on it: it failed, is being retried, or is an isolation build."""
        return self.failure is not None or self.suspect or self.bisecting

    def check(self, name: str) -> CheckResult | None:
        for result in self.checks:
            if result.name == name:
                return result
        return None

    def head_of(self, pr: int) -> str:
        return self.head_shas[self.prs.index(pr)]


@dataclass(frozen=True)
class BisectionPair:
    """The two halves of a failed batch: `first` is tested; `second` waits for its verdict.

    If `first` passes, `second` holds the culprit (unless the failure was a flake), so it is
    split without being tested as a whole, and a single PR left is ejected with the batch's
    failure (`reason`, `detail`). If `first` fails or cannot be tested, `second` is tested.
    """

    first: tuple[int, ...]
    second: tuple[int, ...]
    reason: str
    detail: str


@dataclass(frozen=True)
class Outcome:
    """How an entry left the queue. `reason` is never empty."""

    pr: int
    head_sha: str
    kind: OutcomeKind
    reason: str
    at: datetime
    merged_sha: str | None = None  # the base SHA that contains the PR, for MERGED


@dataclass(frozen=True)
class QueueState:
    """The whole state of one queue; `entries` are kept sorted by (priority, seq)."""

    repo: str
    config: QueueConfig
    base_sha: str
    entries: tuple[Entry, ...] = ()
    builds: tuple[Build, ...] = ()
    base_history: tuple[str, ...] = ()  # earlier base SHAs, newest last
    merged_prs: frozenset[int] = field(default_factory=frozenset)
    recent: tuple[Outcome, ...] = ()
    next_seq: int = 1
    next_build: int = 1
    version: int = 0  # bumped by every step that changes the state; part of effect keys
    merged_count: int = 0
    ejected_count: int = 0
    dequeued_count: int = 0
    # Halves of failed batches waiting to be built (in this order, before any new batch).
    bisect_groups: tuple[tuple[int, ...], ...] = ()
    # (PR, head SHA) pairs whose isolation build passed (`QueueConfig.pretest`).
    cleared: frozenset[tuple[int, str]] = field(default_factory=frozenset)
    pairs: tuple[BisectionPair, ...] = ()  # bisections waiting for a first half's verdict

    @property
    def base(self) -> str:
        return self.config.base

    def entry(self, pr: int) -> Entry | None:
        for entry in self.entries:
            if entry.pr == pr:
                return entry
        return None

    def build(self, build_id: str) -> Build | None:
        for build in self.builds:
            if build.build_id == build_id:
                return build
        return None

    def build_of(self, pr: int) -> Build | None:
        for build in self.builds:
            if pr in build.prs:
                return build
        return None

    def position(self, pr: int) -> int | None:
        """1-based position in the queue's order, or None when not queued."""
        for index, entry in enumerate(self.entries, start=1):
            if entry.pr == pr:
                return index
        return None

    def entry_state(self, pr: int) -> EntryState | None:
        entry = self.entry(pr)
        if entry is None:
            return None
        return derive_entry_state(entry, self.build_of(pr))

    def outcome(self, pr: int) -> Outcome | None:
        """The newest remembered outcome for `pr`."""
        for outcome in reversed(self.recent):
            if outcome.pr == pr:
                return outcome
        return None


def derive_entry_state(entry: Entry, build: Build | None) -> EntryState:
    """An entry's state from its gates and its build (None when it has no build)."""
    if build is None:
        return EntryState.QUEUED if entry.gates_pass else EntryState.WAITING
    return _ENTRY_STATE_OF_BUILD[build.state]


_ENTRY_STATE_OF_BUILD = {
    BuildState.BUILDING: EntryState.BUILDING,
    BuildState.TESTING: EntryState.TESTING,
    BuildState.PASSED: EntryState.MERGING,
}
