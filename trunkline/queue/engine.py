"""The merge-queue engine: `step(state, event, now) -> (state, effects)`.

Pure; performs no I/O, reads no clock, draws no random numbers: the same state, event and
`now` always give the same result. The serial rules (one single-PR build at a time):

- Entries are ordered by priority, then enqueue order. The first entry (in that order) whose
  gates all pass for its current head SHA starts a build on the current base SHA. A running
  build is never pre-empted by a higher-priority entry.
- When the integration commit exists, its required checks are requested. When every required
  check succeeded on exactly that SHA, and each PR's head is unchanged and its gates still
  pass, the engine asks to fast-forward the base from the build's base SHA to that SHA.
- FastForwarded: the base advances, the PRs are merged (locks released, comment, check run).
- The base moved (BaseMoved, or FastForwardRejected with a new base): the build is void and
  the entry is rebuilt and retested on the new base.
- The PR head changed, or a gate stopped passing: the verdicts for the old SHA are void, the
  build (if any) is cancelled, and the entry waits for its gates again (it is not ejected).
  A head reading that started before the one in force (`read_at`) is stale and ignored: the
  queue never goes back to a head that was pushed over.
- A failed required check ejects with the check's summary (after `flake_retries` reruns); a
  timeout, a check that never started or a CI-side cancellation is retried `retry_on_timeout`
  times, then ejects. An integration conflict ejects with the conflicting paths.
- A fast-forward in flight cannot be recalled: head pushes, gate changes, base moves and
  dequeues wait for its outcome.

Throughput (config; all off by default, which is exactly the serial queue above):
- `batch_size` / `batch_wait`: a build takes up to `batch_size` eligible entries in order; a
  partial batch starts once the oldest has waited `batch_wait`.
- `parallel_checks`: builds are stacked, each on the integration commit of the nearest build
  ahead that has not failed; only the front build (on the queue's base) fast-forwards, so
  passed builds merge one after another in order. A failure behind builds that have not
  passed yet is set aside (builds behind it are rebuilt without it) and judged when they
  pass; a failure ahead voids everything stacked on it.
- A failed batch is bisected through isolation builds (halves tested on the base, off the
  stack): a half that passes rejoins the queue, a half that fails is split again, a single
  PR that fails is the culprit and is ejected with the check's summary.
- `pretest`: new PRs go through isolation builds first; only PRs that passed are stacked.

Events about unknown PRs or builds, stale SHAs, or already-applied results change nothing and
produce no effects, so duplicates and late deliveries are safe. See docs/merge-queue.md.

The rules live in one module each: `transaction` (the working copy of a step and its
bookkeeping), `failures` (retries, ejection, bisection), `scheduling` (the stack, batches,
the front's fast-forward); this module maps each event onto them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from trunkline.queue import events as ev
from trunkline.queue.effects import Comment, Effect, RequestChecks, integration_branch
from trunkline.queue.explain import short
from trunkline.queue.model import (
    INFRASTRUCTURE_CONCLUSIONS,
    Build,
    BuildState,
    CheckConclusion,
    CheckResult,
    Entry,
    GateVerdict,
    OutcomeKind,
    QueueConfig,
    QueueState,
)
from trunkline.queue.scheduling import Scheduler
from trunkline.queue.transaction import format_duration, with_check


def initial_state(repo: str, config: QueueConfig, base_sha: str) -> QueueState:
    """An empty queue for `repo`'s `config.base` branch, currently at `base_sha`."""
    if not repo or not base_sha:
        raise ValueError("a queue needs a repository name and the base branch's SHA")
    return QueueState(repo=repo, config=config, base_sha=base_sha)


def step(
    state: QueueState, event: ev.Event, now: datetime
) -> tuple[QueueState, tuple[Effect, ...]]:
    """Apply `event` at time `now`; return the next state and the effects to perform."""
    if now.tzinfo is None:
        raise ValueError("step needs a timezone-aware `now`")
    txn = _Step(state, now)
    txn.apply(event)
    txn.advance()
    return txn.finish()


class _Step(Scheduler):
    """One step: `apply` the event, then `advance` (scheduling), then `finish`."""

    # ---- events ------------------------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.Enqueue():
                self.on_enqueue(event)
            case ev.Dequeue():
                self.on_dequeue(event)
            case ev.PriorityChanged():
                entry = self.state.entry(event.pr)
                if entry is not None and entry.priority is not event.priority:
                    self.put_entry(replace(entry, priority=event.priority))
            case ev.GatesUpdated():
                self.on_gates(event)
            case ev.PrHeadChanged():
                self.on_head_changed(event)
            case ev.BaseMoved():
                self.on_base_moved(event)
            case ev.IntegrationBuilt():
                self.on_integration_built(event)
            case ev.IntegrationConflict():
                build = self.state.build(event.build_id)
                if (
                    build is not None
                    and build.state is BuildState.BUILDING
                    and build.failure is None
                ):
                    paths = ", ".join(event.paths) or "(paths not reported)"
                    self.fail(
                        build,
                        f"merge conflict with {self.state.base} at {short(build.base_sha)} "
                        f"in: {paths}",
                        "Rebase or merge the base branch into the PR, resolve the conflict, "
                        "push, and queue it again.",
                    )
            case ev.CheckStarted():
                self.on_check_started(event)
            case ev.CheckCompleted():
                self.on_check_completed(event)
            case ev.FastForwarded():
                build = self.state.build(event.build_id)
                if (
                    build is not None
                    and build.state is BuildState.PASSED
                    and build.integration_sha == event.sha
                ):
                    self.merged(build, event.sha)
            case ev.FastForwardRejected():
                self.on_fast_forward_rejected(event)
            case ev.ChecksRegressed():
                build = self.state.build(event.build_id)
                if (
                    build is not None
                    and build.state is BuildState.PASSED
                    and build.integration_sha == event.sha
                ):
                    self.build_failed(
                        build,
                        event.reason or "a required check is no longer green",
                        f"Re-read on {short(event.sha)} just before the fast-forward of "
                        f"{self.state.base}; the base did not move.",
                    )
            case ev.Tick():
                self.on_tick()
            case ev.ConfigChanged():
                # A state is one base branch's queue: a config for another base is not ours.
                if event.config != self.state.config and event.config.base == self.state.base:
                    self.state = replace(self.state, config=event.config)
                    for build in self.state.builds:
                        if build.state is not BuildState.PASSED:
                            self.drop_build(build)

    def on_enqueue(self, event: ev.Enqueue) -> None:
        s = self.state
        if event.pr in s.merged_prs or s.entry(event.pr) is not None or not event.head_sha:
            return
        entry = Entry(
            event.pr,
            event.head_sha,
            event.priority,
            self.now,
            s.next_seq,
            head_read_at=event.read_at,
        )
        self.state = replace(s, next_seq=s.next_seq + 1)
        self.put_entry(entry)

    def on_dequeue(self, event: ev.Dequeue) -> None:
        entry = self.state.entry(event.pr)
        if entry is None:
            return
        why = event.reason.strip() or "dequeued"
        reason = f"{why} (by {event.by})" if event.by else why
        build = self.state.build_of(event.pr)
        if build is not None and build.state is BuildState.PASSED:
            if entry.leave_reason is None:
                self.put_entry(replace(entry, leave_reason=reason))
                self.emit(
                    Comment(
                        key=self.key("v", self.version, "comment", entry.pr),
                        pr=entry.pr,
                        body=(
                            f"#{entry.pr} is being fast-forwarded into {self.state.base} right "
                            "now; the dequeue applies only if that fails."
                        ),
                    )
                )
            return
        if build is not None:
            self.drop_build(build)
        self.leave(entry, OutcomeKind.DEQUEUED, reason)

    def on_gates(self, event: ev.GatesUpdated) -> None:
        entry = self.state.entry(event.pr)
        if entry is None or event.head_sha != entry.head_sha or not event.reports:
            return
        verdicts = {v.gate: v for v in entry.verdicts if v.head_sha == entry.head_sha}
        for report in event.reports:
            known = verdicts.get(report.gate)
            if _read_before(event.read_at, known.read_at if known is not None else None):
                continue  # an evaluation that read before the one in force: stale
            verdicts[report.gate] = GateVerdict(
                report.gate, entry.head_sha, report.ok, report.detail, event.read_at
            )
        updated = replace(entry, verdicts=tuple(verdicts[g] for g in sorted(verdicts)))
        if updated == entry:
            return
        self.put_entry(updated)
        build = self.state.build_of(entry.pr)
        if build is not None and build.state is not BuildState.PASSED and not updated.gates_pass:
            self.drop_build(build)  # waits for its gates again; not ejected

    def on_head_changed(self, event: ev.PrHeadChanged) -> None:
        entry = self.state.entry(event.pr)
        if entry is None or not event.new_sha:
            return
        if _read_before(event.read_at, entry.head_read_at):
            return  # read before the head in force was: stale, never go back to it
        if event.new_sha == entry.head_sha:
            if event.read_at is not None and event.read_at != entry.head_read_at:
                self.put_entry(replace(entry, head_read_at=event.read_at))  # seen again later
            return
        read_at = entry.head_read_at if event.read_at is None else event.read_at
        self.put_entry(replace(entry, head_sha=event.new_sha, verdicts=(), head_read_at=read_at))
        build = self.state.build_of(entry.pr)
        if build is not None and build.state is not BuildState.PASSED:
            self.drop_build(build)

    def on_base_moved(self, event: ev.BaseMoved) -> None:
        sha = event.new_sha
        if not sha or sha == self.state.base_sha or sha in self.state.base_history:
            return  # no news, or a late report of an earlier base
        builds = self.state.builds
        for index, build in enumerate(builds):
            if build.bisecting and build.integration_sha == sha:
                if build.base_sha == self.state.base_sha:
                    self.merged(build, sha)  # an isolation build is exactly its PRs on its base
                    return
                continue  # made on an older base: the base lost commits; treat it as foreign
            if build.integration_sha == sha:
                # Our own fast-forward seen before its report, or someone moved the base to our
                # integration commit by hand: either way exactly these PRs are in the base now,
                # with those of the builds it is stacked on.
                for below in builds[:index]:
                    assert below.integration_sha is not None  # something is stacked on it
                    self.merged(below, below.integration_sha)
                self.merged(build, sha)
                return
        self.set_base(sha)
        for build in self.state.builds:
            if build.state is not BuildState.PASSED and build.base_sha != sha:
                self.drop_build(build)  # void: rebuilt on the new base by advance()

    def on_integration_built(self, event: ev.IntegrationBuilt) -> None:
        build = self.state.build(event.build_id)
        if build is None or build.state is not BuildState.BUILDING or not event.sha:
            return
        names = self.state.config.required_checks
        self.put_build(
            replace(
                build,
                state=BuildState.TESTING,
                integration_sha=event.sha,
                checks_requested_at=self.now,
                checks=(),
            )
        )
        self.emit(
            RequestChecks(
                key=self.key("request-checks", build.build_id, build.attempt),
                build_id=build.build_id,
                integration_sha=event.sha,
                check_names=names,
                attempt=build.attempt,
                branch=integration_branch(self.state.base, build.build_id),
            )
        )

    def testing_build(self, sha: str, name: str, attempt: int | None) -> Build | None:
        if name not in self.state.config.required_checks:
            return None
        for build in self.state.builds:
            if build.state is BuildState.TESTING and build.integration_sha == sha:
                if build.failure is not None:
                    return None  # its failure is decided; later reports change nothing
                return build if attempt is None or attempt == build.attempt else None
        return None

    def on_check_started(self, event: ev.CheckStarted) -> None:
        build = self.testing_build(event.sha, event.name, event.attempt)
        if build is None:
            return
        result = build.check(event.name)
        if result is not None and (result.started_at is not None or result.conclusion):
            return
        self.put_build(with_check(build, CheckResult(event.name, started_at=self.now)))

    def on_check_completed(self, event: ev.CheckCompleted) -> None:
        build = self.testing_build(event.sha, event.name, event.attempt)
        if build is None:
            return
        result = build.check(event.name)
        if result is not None and result.conclusion is not None:
            return  # already have this attempt's result
        started = self.now if result is None or result.started_at is None else result.started_at
        done = CheckResult(event.name, started, event.conclusion, event.summary, self.now)
        build = with_check(build, done)
        self.put_build(build)
        if event.conclusion is CheckConclusion.SUCCESS:
            return
        what = f"{event.summary}" if event.summary else f"concluded {event.conclusion}"
        reason = f"required check {event.name} {event.conclusion}: {what}"
        detail = (
            f"Check {event.name} on integration commit {short(event.sha)} (base "
            f"{short(build.base_sha)}) concluded {event.conclusion} on attempt {build.attempt}."
        )
        if self.state.config.parallel_bisection:
            infrastructure = event.conclusion in INFRASTRUCTURE_CONCLUSIONS
            if not (infrastructure and self.retried(build, event.conclusion)):
                self.probe_failed(build, reason, detail)
            return
        if build.base_sha != self.state.base_sha:
            # Speculative: a build ahead may be the cause. Judged (and maybe retried) when
            # every build ahead has passed; builds stacked on it are rebuilt without it.
            self.put_build(replace(build, failure=reason, failure_detail=detail))
            return
        if not self.retried(build, event.conclusion):
            self.build_failed(build, reason, detail)

    def on_fast_forward_rejected(self, event: ev.FastForwardRejected) -> None:
        build = self.state.build(event.build_id)
        if build is None or build.state is not BuildState.PASSED:
            return
        current = event.current_base_sha
        if current and current == build.integration_sha:
            self.merged(build, current)  # it did move (an earlier attempt's response was lost)
            return
        if (not current or current == build.base_sha) and self.heads_moved(build):
            # The runner re-read the PR heads before moving the base and one had moved (its
            # PrHeadChanged came first): the build is void, not failed; the entry waits for
            # its gates on the new head, the other PRs are rebuilt.
            self.drop_build(build)
            self.leave_if_asked(build)
            return
        if not current or current == build.base_sha:
            self.build_failed(
                build,
                f"fast-forward of {self.state.base} to {short(build.integration_sha)} was "
                f"refused: {event.reason or 'no reason given'}",
                "The base did not move, so retrying cannot help; check the branch protection "
                "and the app's permissions, then queue the PR again.",
                bisect=False,
            )
            return
        self.drop_build(build)
        self.set_base(current)  # a fresh read after the refusal: trust it
        self.leave_if_asked(build)
        for other in self.state.builds:
            if other.state is not BuildState.PASSED and other.base_sha != current:
                self.drop_build(other)

    def heads_moved(self, build: Build) -> bool:
        """Whether a PR of `build` is queued at another head than the one built."""
        for pr, head in zip(build.prs, build.head_shas, strict=True):
            entry = self.state.entry(pr)
            if entry is not None and entry.head_sha != head:
                return True
        return False

    def leave_if_asked(self, build: Build) -> None:
        """The dequeues that waited for `build`'s fast-forward apply now that it did not
        happen."""
        for pr in build.prs:
            entry = self.state.entry(pr)
            if entry is not None and entry.leave_reason is not None:
                self.leave(entry, OutcomeKind.DEQUEUED, entry.leave_reason)

    def on_tick(self) -> None:
        config = self.state.config
        for build in self.state.builds:
            if (
                build.state is not BuildState.TESTING
                or build.checks_requested_at is None
                or build.failure is not None
            ):
                continue
            elapsed = self.now - build.checks_requested_at
            problems = []
            for name in config.required_checks:
                result = build.check(name)
                if result is not None and result.conclusion is not None:
                    continue
                if (result is None or result.started_at is None) and (
                    elapsed >= config.check_start_timeout
                ):
                    window = format_duration(config.check_start_timeout)
                    problems.append(f"required check {name} never started within {window}")
                elif elapsed >= config.check_timeout:
                    window = format_duration(config.check_timeout)
                    problems.append(f"required check {name} did not complete within {window}")
            if not problems:
                continue
            if build.timeout_retries < config.retry_on_timeout:
                self.retry(replace(build, timeout_retries=build.timeout_retries + 1))
                continue
            retries = f" after {build.timeout_retries} retries" if build.timeout_retries else ""
            self.fail(
                build,
                "; ".join(problems) + f" on {short(build.integration_sha)}{retries}",
                "The CI did not report in time. Fix the CI (or raise the timeout) and queue the "
                "PR again.",
            )


def _read_before(read_at: datetime | None, known: datetime | None) -> bool:
    """Whether a report read at `read_at` is older than the verdict read at `known`."""
    return read_at is not None and known is not None and read_at < known
