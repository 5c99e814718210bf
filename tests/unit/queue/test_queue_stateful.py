"""A Hypothesis state machine drives the merge-queue engine together with a tiny simulated world.

The world is a model git history (a commit's content is the set of (PR, head SHA) pairs it
contains; an integration SHA is a deterministic function of its base and the PRs at their
heads), PR heads that humans push, outsiders who push to the base, and a truthful CI (a tree
that contains a bad head fails; other runs may flake). Effects are performed in any order,
resulting events are delivered in any order, late, or twice, and time advances by `Tick`.
Invariants are checked after every step; at teardown the world is driven to quiescence and
every entry must have ended merged, ejected or dequeued with a reason (liveness).

Each run draws its throughput strategy (batch_size 1..4, parallel_checks 1..3, a batch wait
or none, flake retries, pretest with a speculation floor, a cleared batch size and direct
fast-forwards of isolation builds, or parallel bisection holding the stack or not, and
isolation slots of their own or none), so batches, bisection and speculative builds are
exercised with the same invariants, plus: at most parallel_checks active stacked builds and
isolation_slots isolation builds (a probe round is bounded by its failed build), builds form
one stack on the base, a probe is a prefix of its failed build on that build's base, a bad PR
is never merged, and a merged SHA contains exactly the PRs of the passed builds.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trunkline.queue import events as ev
from trunkline.queue.effects import (
    BuildIntegration,
    Effect,
    Eject,
    FastForwardBase,
    RequestChecks,
)
from trunkline.queue.engine import initial_state, step
from trunkline.queue.model import (
    ALL_GATES,
    BuildState,
    CheckConclusion,
    Gate,
    Outcome,
    OutcomeKind,
    Priority,
    QueueConfig,
    QueueState,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REQUIRED = ("ci", "lint")
PRS = st.integers(1, 6)
INDEX = st.integers(0, 10_000)
FLAKES = (CheckConclusion.FAILURE, CheckConclusion.CANCELLED, CheckConclusion.TIMED_OUT)

Content = frozenset[tuple[int, str]]


@dataclass
class World:
    """The outside world: a base branch, PR heads, a git object store and a CI."""

    base: str = "B0"
    commits: dict[str, Content] = field(default_factory=lambda: {"B0": frozenset()})
    heads: dict[int, str] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)
    conflicting: set[str] = field(default_factory=set)
    built: dict[str, tuple[str, tuple[tuple[int, str], ...]]] = field(default_factory=dict)
    requested: list[tuple[str, int]] = field(default_factory=list)  # (SHA, attempt)
    pushes: int = 0

    def push_head(self, pr: int, bad: bool, conflicting: bool) -> str:
        self.pushes += 1
        sha = f"h{pr}.{self.pushes}"
        self.heads[pr] = sha
        if bad:
            self.bad.add(sha)
        if conflicting:
            self.conflicting.add(sha)
        return sha

    def integrate(self, effect: BuildIntegration) -> ev.Event:
        clashes = [pr for pr, head in effect.prs if head in self.conflicting]
        if clashes:
            return ev.IntegrationConflict(effect.build_id, tuple(f"src/pr{p}.py" for p in clashes))
        digest = hashlib.sha256(repr((effect.base_sha, effect.prs)).encode()).hexdigest()[:10]
        sha = f"I{digest}"
        self.commits[sha] = self.commits[effect.base_sha] | set(effect.prs)
        self.built[sha] = (effect.base_sha, effect.prs)
        return ev.IntegrationBuilt(effect.build_id, sha)

    def truth(self, sha: str) -> CheckConclusion:
        healthy = not any(head in self.bad for _, head in self.commits[sha])
        return CheckConclusion.SUCCESS if healthy else CheckConclusion.FAILURE


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.now = T0
        self.state: QueueState | None = None
        self.outbox: list[Effect] = []
        self.performed: list[Effect] = []
        self.inbox: list[ev.Event] = []
        self.delivered: list[ev.Event] = []
        # What the engine has been told, to judge its decisions by.
        self.told_head: dict[int, str] = {}
        self.told_head_at: dict[int, datetime | None] = {}  # read time of the head in force
        self.reads = 0
        self.recheck_heads = False  # the runner re-reads PR heads before a fast-forward
        self.told_gates: dict[tuple[int, str], dict[str, bool]] = {}
        self.told_success: set[tuple[str, str]] = set()
        self.outcomes: list[Outcome] = []
        self.enqueued: set[int] = set()
        self.outsider_pushes = 0
        self.policy_edits = 0
        self.regress_next = False

    # ---- the engine, with invariants checked after every step ---------------------------

    @property
    def queue(self) -> QueueState:
        assert self.state is not None
        return self.state

    def deliver(self, event: ev.Event) -> None:
        before = self.queue
        self.note(event)
        after, effects = step(before, event, self.now)
        self.check_step(before, event, after, effects)
        self.state = after
        self.outbox.extend(effects)
        self.delivered.append(event)

    def note(self, event: ev.Event) -> None:
        match event:
            case ev.Enqueue() if self.queue.entry(event.pr) is None:
                if event.pr not in self.queue.merged_prs:
                    self.told_head[event.pr] = event.head_sha
                    self.told_head_at[event.pr] = event.read_at
                    self.enqueued.add(event.pr)
            case ev.PrHeadChanged() if self.queue.entry(event.pr) is not None:
                # The head in force is that of the newest reading (a later delivery of an
                # older reading is stale); a reading without a time is always taken.
                known = self.told_head_at.get(event.pr)
                if event.read_at is None or known is None or event.read_at >= known:
                    self.told_head[event.pr] = event.new_sha
                    self.told_head_at[event.pr] = event.read_at or known
            case ev.GatesUpdated():
                told = self.told_gates.setdefault((event.pr, event.head_sha), {})
                for report in event.reports:
                    told[report.gate] = report.ok
            case ev.CheckCompleted() if event.conclusion is CheckConclusion.SUCCESS:
                self.told_success.add((event.sha, event.name))
            case _:
                pass

    def check_step(
        self,
        before: QueueState,
        event: ev.Event,
        after: QueueState,
        effects: tuple[Effect, ...],
    ) -> None:
        if after is before:
            assert effects == ()
        for effect in effects:
            if isinstance(effect, FastForwardBase):
                self.check_fast_forward(after, effect)
            if isinstance(effect, BuildIntegration):
                self.check_build_order(after, effect)
            if isinstance(effect, Eject):
                assert effect.reason.strip(), "an ejection without a reason"
        left = {e.pr for e in before.entries} - {e.pr for e in after.entries}
        for pr in left:
            outcome = after.outcome(pr)
            assert outcome is not None, f"#{pr} left the queue without an outcome"
            assert outcome.at == self.now
            assert outcome.reason.strip(), f"#{pr} left without a reason"
            self.outcomes.append(outcome)
            if outcome.kind is OutcomeKind.MERGED:
                assert outcome.merged_sha is not None
                assert (pr, outcome.head_sha) in self.world.commits[outcome.merged_sha]
        merged = Counter(o.pr for o in self.outcomes if o.kind is OutcomeKind.MERGED)
        assert all(count == 1 for count in merged.values()), f"merged twice: {merged}"

    def check_fast_forward(self, after: QueueState, effect: FastForwardBase) -> None:
        """The base may only move to an exact SHA that passed, with exactly the gated PRs."""
        build = after.build(effect.build_id)
        assert build is not None
        assert build.state is BuildState.PASSED
        for name in after.config.required_checks:
            assert (effect.new_sha, name) in self.told_success, f"{name} not passed"
        base, prs = self.world.built[effect.new_sha]
        assert base == effect.expected_old_sha == build.base_sha
        assert prs == tuple(zip(build.prs, build.head_shas, strict=True))
        already = {pr for pr, _ in self.world.commits[base]}
        for pr, head in prs:
            assert pr not in already, f"#{pr} is already in {base}"
            assert self.told_head[pr] == head, f"#{pr} is not at its current head"
            told = self.told_gates.get((pr, head), {})
            assert all(told.get(g) for g in ALL_GATES), f"#{pr} merges with gates {told}"

    def check_build_order(self, after: QueueState, effect: BuildIntegration) -> None:
        build = after.build(effect.build_id)
        assert build is not None
        config = after.config
        assert len(build.prs) <= max(config.batch_size, config.cleared_batch_size)
        if not build.bisecting and config.pretest and config.speculation_floor == 0:
            assert all((pr, head) in after.cleared for pr, head in effect.prs)
        if build.bisecting:
            return  # a half of a failed batch: tested before the rest, by design
        first_pr = effect.prs[0][0]
        for entry in after.entries:
            if entry.pr == first_pr:
                return
            in_build = after.build_of(entry.pr) is not None
            eligible = entry.gates_pass and entry.leave_reason is None
            if after.config.pretest:  # only PRs that passed their isolation build stack
                eligible = eligible and (entry.pr, entry.head_sha) in after.cleared
            held = {pr for pair in after.pairs for pr in pair.second}
            held |= {pr for group in after.bisect_groups for pr in group}  # reserved halves
            eligible = eligible and entry.pr not in held  # waiting for a bisection verdict
            assert in_build or not eligible, f"#{entry.pr} was skipped for #{first_pr}"

    def read_time(self) -> datetime:
        """When a runner's reading of a PR head starts: each later than the one before."""
        self.reads += 1
        return T0 + timedelta(seconds=self.reads)

    @invariant()
    def heads_never_go_back(self) -> None:
        """Every entry is at the head of the newest reading the engine was told."""
        if self.state is None:
            return
        for entry in self.state.entries:
            assert entry.head_sha == self.told_head[entry.pr], f"#{entry.pr} at a stale head"

    @invariant()
    def structure_holds(self) -> None:
        if self.state is None:
            return
        s = self.state
        keys = [e.order_key for e in s.entries]
        assert keys == sorted(keys)
        assert len({e.pr for e in s.entries}) == len(s.entries)
        active = [b for b in s.builds if b.failure is None and not b.probe_of and not b.probed]
        if s.config.isolation_slots:  # isolation builds have slots of their own
            isolating = [b for b in active if b.bisecting]
            assert len(isolating) <= s.config.isolation_slots
            active = [b for b in active if not b.bisecting]
        assert len(active) <= s.config.parallel_checks
        # A probe round (parallel bisection) retests prefixes of its failed build: a PR may be
        # in that build and its probes, and nowhere else.
        in_builds = [pr for build in s.builds if build.probe_of is None for pr in build.prs]
        assert len(in_builds) == len(set(in_builds)), "a PR in two builds"
        for probe in s.builds:
            if probe.probe_of is not None:
                parent = s.build(probe.probe_of)
                assert parent is not None, "a probe without its round"
                assert parent.probed
                assert probe.bisecting
                assert probe.base_sha == parent.base_sha
                assert parent.prs[: len(probe.prs)] == probe.prs
                assert parent.head_shas[: len(probe.prs)] == probe.head_shas
                assert len(probe.prs) < len(parent.prs)
        for build in s.builds:
            for pr in build.prs:
                assert s.entry(pr) is not None
        self.check_stack(s)
        assert not {e.pr for e in s.entries} & s.merged_prs

    def check_stack(self, s: QueueState) -> None:
        """Builds form one stack on the base: each (but isolation builds, which are on a base
        the queue had) on the integration commit of the nearest build ahead that has not
        failed; only a passed front build (its fast-forward in flight) may be on an old base."""
        expected: str | None = s.base_sha
        live = {b.integration_sha for b in s.builds if not b.transparent} - {None}
        for index, build in enumerate(s.builds):
            if build.bisecting:
                # Isolation builds are on a base the queue had; a probe round of a stacked
                # build may be on the integration commit of a live build ahead.
                assert build.base_sha in (s.base_sha, *s.base_history) or (
                    (build.probed or build.probe_of is not None) and build.base_sha in live
                )
                continue
            if build.base_sha == expected:
                if not build.transparent:
                    expected = build.integration_sha
            else:
                assert index == 0, f"off the stack: {s}"
                assert build.state is BuildState.PASSED, f"off the stack: {s}"
                expected = None

    # ---- the world ----------------------------------------------------------------------

    @initialize(
        retry=st.integers(0, 1),
        flakes=st.integers(0, 1),
        batch=st.integers(1, 4),
        parallel=st.integers(1, 3),
        wait=st.sampled_from((0, 0, 20)),
        pretest=st.booleans(),
        floor=st.sampled_from((0.0, 0.0, 0.5, 0.85)),
        cleared=st.sampled_from((0, 5)),
        merge_isolated=st.booleans(),
        probes=st.sampled_from(("off", "off", "hold", "aside")),
        isolation_slots=st.sampled_from((0, 0, 1, 3)),
        recheck_heads=st.booleans(),
    )
    def start(
        self,
        retry: int,
        flakes: int,
        batch: int,
        parallel: int,
        wait: int,
        pretest: bool,
        floor: float,
        cleared: int,
        merge_isolated: bool,
        probes: str,
        isolation_slots: int,
        recheck_heads: bool,
    ) -> None:
        self.recheck_heads = recheck_heads
        parallel_bisection = probes != "off"
        config = QueueConfig(
            base="main",
            required_checks=REQUIRED,
            check_timeout=timedelta(minutes=60),
            check_start_timeout=timedelta(minutes=10),
            retry_on_timeout=retry,
            flake_retries=flakes,
            batch_size=batch,
            parallel_checks=parallel,
            batch_wait=timedelta(minutes=wait),
            pretest=pretest and not parallel_bisection,
            speculation_floor=floor,
            cleared_batch_size=cleared,
            merge_isolated=merge_isolated,
            parallel_bisection=parallel_bisection,
            bisection_holds_stack=probes == "hold",
            isolation_slots=isolation_slots if pretest and not parallel_bisection else 0,
        )
        self.state = initial_state("acme/app", config, "B0")

    @rule(pr=PRS, priority=st.sampled_from(Priority), bad=INDEX, clash=INDEX)
    def enqueue(self, pr: int, priority: Priority, bad: int, clash: int) -> None:
        if pr not in self.world.heads:
            self.world.push_head(pr, bad % 6 == 0, clash % 8 == 0)
        self.deliver(ev.Enqueue(pr, self.world.heads[pr], priority, read_at=self.read_time()))

    def pick(self, pr: int, who: int) -> int:
        """Mostly a queued PR (where things happen), sometimes any PR number."""
        entries = self.queue.entries
        return entries[who % len(entries)].pr if entries and who % 4 else pr

    @rule(pr=PRS, who=INDEX, bad=INDEX, clash=INDEX, timed=INDEX)
    def push_to_pr(self, pr: int, who: int, bad: int, clash: int, timed: int) -> None:
        """A push, and a reading of it (delivered in any order, so a reading of an earlier
        head may arrive after this one; rarely a report without a reading time)."""
        pr = self.pick(pr, who)
        sha = self.world.push_head(pr, bad % 6 == 0, clash % 8 == 0)
        read_at = self.read_time() if timed % 5 else None
        self.inbox.append(ev.PrHeadChanged(pr, sha, read_at=read_at))

    @rule(
        pr=PRS,
        who=INDEX,
        ok=st.booleans(),
        stale=st.booleans(),
        gates=st.sets(st.sampled_from(ALL_GATES), min_size=1),
    )
    def evaluate_gates(self, pr: int, who: int, ok: bool, stale: bool, gates: set[Gate]) -> None:
        """A verdict on the real head, or (stale) an approval for an earlier head."""
        pr = self.pick(pr, who)
        heads = self.told_gates_heads(pr)
        sha = heads[0] if stale and heads else self.world.heads.get(pr, f"h{pr}.none")
        reports = tuple(ev.GateReport(g, ok or stale, "") for g in sorted(gates))
        self.deliver(ev.GatesUpdated(pr, sha, reports))

    def told_gates_heads(self, pr: int) -> list[str]:
        return [sha for (p, sha) in self.told_gates if p == pr]

    def approve_everything(self) -> None:
        """The common case, so that merges happen often: every gate of every queued PR passes
        on the PR's real head (ignored by the engine until it hears of that head)."""
        for entry in self.queue.entries:
            reports = tuple(ev.GateReport(g, True, "ok") for g in ALL_GATES)
            self.deliver(ev.GatesUpdated(entry.pr, self.world.heads[entry.pr], reports))

    @rule(pr=PRS, priority=st.sampled_from(Priority))
    def change_priority(self, pr: int, priority: Priority) -> None:
        self.deliver(ev.PriorityChanged(pr, priority))

    @rule(pr=PRS, i=INDEX)
    def dequeue(self, pr: int, i: int) -> None:
        if i % 3 == 0:  # rarer than the rest, so that merges happen during the run too
            self.deliver(ev.Dequeue(pr, "alice", "changed my mind"))

    @precondition(lambda self: self.policy_edits < 2)
    @rule(retry=st.integers(0, 1), flakes=st.integers(0, 1), narrow=st.booleans())
    def policy_changes(self, retry: int, flakes: int, narrow: bool) -> None:
        self.policy_edits += 1
        checks = REQUIRED[:1] if narrow else REQUIRED
        config = replace(
            self.queue.config, required_checks=checks, retry_on_timeout=retry, flake_retries=flakes
        )
        self.deliver(ev.ConfigChanged(config))

    @precondition(lambda self: self.outsider_pushes < 3)
    @rule()
    def a_required_check_regresses(self) -> None:
        """The next fast-forward is refused by the runner's re-verification of the checks."""
        self.regress_next = True

    @rule()
    def outsider_pushes_to_base(self) -> None:
        self.outsider_pushes += 1
        sha = f"X{self.outsider_pushes}"
        self.world.commits[sha] = self.world.commits[self.world.base]
        self.world.base = sha
        self.inbox.append(ev.BaseMoved(sha))

    @precondition(lambda self: bool(self.outbox))
    @rule(i=INDEX)
    def perform_effect(self, i: int) -> None:
        effect = self.outbox.pop(i % len(self.outbox))
        self.perform(effect)
        self.performed.append(effect)

    @precondition(lambda self: bool(self.performed))
    @rule(i=INDEX)
    def perform_again(self, i: int) -> None:
        """A runner that crashed after performing an effect performs it again."""
        self.perform(self.performed[i % len(self.performed)])

    def perform(self, effect: Effect) -> None:
        w = self.world
        match effect:
            case BuildIntegration():
                self.inbox.append(w.integrate(effect))
            case RequestChecks():
                w.requested.append((effect.integration_sha, effect.attempt))
                for name in effect.check_names:  # the CI picks the runs up (reported later)
                    self.inbox.append(ev.CheckStarted(effect.integration_sha, name, effect.attempt))
            case FastForwardBase():
                if w.base == effect.expected_old_sha and self.regress_next:
                    # The runner's re-read just before the fast-forward finds a red rerun.
                    self.regress_next = False
                    reason = "required check ci failure: red when re-read"
                    self.inbox.append(ev.ChecksRegressed(effect.build_id, effect.new_sha, reason))
                    return
                moved = [(pr, w.heads[pr]) for pr, head in effect.prs if w.heads[pr] != head]
                if w.base == effect.expected_old_sha and self.recheck_heads and moved:
                    # The runner re-read the PR heads: it reports them instead of merging,
                    # in one feedback (the heads first, then the refusal, base unchanged).
                    for pr, head in moved:
                        self.deliver(ev.PrHeadChanged(pr, head, read_at=self.read_time()))
                    refused = ev.FastForwardRejected(effect.build_id, "a head moved", w.base)
                    self.deliver(refused)
                    return
                if w.base == effect.expected_old_sha:
                    content = w.commits[effect.new_sha]
                    old = {pr for pr, _ in w.commits[w.base]}
                    new = {pr for pr, _ in content} - old
                    assert new == {pr for pr, _ in w.built[effect.new_sha][1]}
                    assert w.truth(effect.new_sha) is CheckConclusion.SUCCESS, "bad PR merged"
                    w.base = effect.new_sha
                    self.inbox.append(ev.BaseMoved(w.base))  # the push webhook, any order
                if w.base == effect.new_sha:
                    self.inbox.append(ev.FastForwarded(effect.build_id, effect.new_sha))
                else:
                    self.inbox.append(
                        ev.FastForwardRejected(effect.build_id, "not a fast-forward", w.base)
                    )
            case _:
                pass  # check runs, comments, ejections, lock releases, branch deletion

    @precondition(lambda self: bool(self.inbox))
    @rule(i=INDEX)
    def deliver_event(self, i: int) -> None:
        self.deliver(self.inbox.pop(i % len(self.inbox)))

    @precondition(lambda self: bool(self.delivered))
    @rule(i=INDEX)
    def deliver_again(self, i: int) -> None:
        """A duplicate or late delivery of something already delivered."""
        self.deliver(self.delivered[i % len(self.delivered)])

    @precondition(lambda self: bool(self.world.requested))
    @rule(i=INDEX, name=st.sampled_from(REQUIRED))
    def ci_starts(self, i: int, name: str) -> None:
        sha, _ = self.world.requested[i % len(self.world.requested)]
        self.inbox.append(ev.CheckStarted(sha, name))

    @precondition(lambda self: bool(self.world.requested))
    @rule(i=INDEX, name=st.sampled_from(REQUIRED), flake=INDEX, tagged=st.booleans())
    def ci_completes(self, i: int, name: str, flake: int, tagged: bool) -> None:
        """A CI run reports (tagged with the attempt it ran for, or not)."""
        sha, attempt = self.world.requested[i % len(self.world.requested)]
        conclusion = self.world.truth(sha)
        if flake % 7 == 0:
            conclusion = FLAKES[flake % len(FLAKES)]
        summary = f"{name}: {conclusion}"
        self.inbox.append(
            ev.CheckCompleted(sha, name, conclusion, summary, attempt if tagged else None)
        )

    @rule(minutes=st.sampled_from((1, 4, 9, 11, 30, 59, 61, 90)))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)
        self.deliver(ev.Tick())

    @rule(approve=st.integers(0, 2), report=st.booleans())
    def world_catches_up(self, approve: int, report: bool) -> None:
        """A round of a well-behaved world, so that merges happen during the run too: deliver
        what is pending, perform every effect, deliver the results, maybe approve every head
        and report CI truthfully (either may be left out, to test without them)."""
        while self.inbox:
            self.deliver(self.inbox.pop(0))
        while self.outbox:
            self.perform(self.outbox.pop(0))
        while self.inbox:
            self.deliver(self.inbox.pop(0))
        if approve == 0:
            self.approve_everything()
        if report:
            self.report_ci()

    def report_ci(self) -> None:
        for build in self.queue.builds:
            if build.state is BuildState.TESTING and build.integration_sha is not None:
                for name in self.queue.config.required_checks:
                    result = build.check(name)
                    if result is None or result.conclusion is None:
                        truth = self.world.truth(build.integration_sha)
                        self.inbox.append(ev.CheckCompleted(build.integration_sha, name, truth))

    # ---- liveness -----------------------------------------------------------------------

    def teardown(self) -> None:
        """Drive the world to quiescence: people push nothing more and approve every head,
        CI reports truthfully, time passes; every entry must end with an outcome."""
        if self.state is None:
            return
        for _ in range(400):
            if not self.queue.entries and not self.inbox and not self.outbox:
                break
            self.settle()
        assert not self.queue.entries, f"stuck: {self.queue}"
        ended = {o.pr for o in self.outcomes}
        assert self.enqueued <= ended, f"never ended: {self.enqueued - ended}"

    def settle(self) -> None:
        while self.inbox:
            self.deliver(self.inbox.pop(0))
        while self.outbox:
            self.perform(self.outbox.pop(0))
        if self.inbox:
            return
        for entry in self.queue.entries:
            head = self.world.heads[entry.pr]
            if entry.head_sha != head:
                self.deliver(ev.PrHeadChanged(entry.pr, head, read_at=self.read_time()))
            elif not entry.gates_pass:
                reports = tuple(ev.GateReport(g, True, "ok") for g in ALL_GATES)
                self.deliver(ev.GatesUpdated(entry.pr, head, reports))
        if self.outbox:
            return
        self.report_ci()
        if not self.inbox:
            self.now += timedelta(minutes=61)
            self.deliver(ev.Tick())


QueueMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_queue_engine_state_machine = QueueMachine.TestCase
