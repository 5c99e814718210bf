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
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from trunkline.queue import events as ev
from trunkline.queue.effects import (
    QUEUE_CHECK_NAME,
    BuildIntegration,
    CheckRunConclusion,
    CheckRunStatus,
    Comment,
    DeleteIntegrationBranch,
    Effect,
    Eject,
    FastForwardBase,
    PostCheckRun,
    ReleaseLocks,
    RequestChecks,
    integration_branch,
)
from trunkline.queue.explain import check_run_inputs, check_run_views, short
from trunkline.queue.model import (
    BASE_HISTORY_LIMIT,
    INFRASTRUCTURE_CONCLUSIONS,
    RECENT_OUTCOMES_LIMIT,
    BisectionPair,
    Build,
    BuildState,
    CheckConclusion,
    CheckResult,
    Entry,
    GateVerdict,
    Outcome,
    OutcomeKind,
    QueueConfig,
    QueueState,
)


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


def _format_duration(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    return f"{minutes}m" if minutes else f"{int(duration.total_seconds())}s"


class _Step:
    """The working copy of one `step`: a state being rebuilt and the effects so far.

    Local mutation only; `step` is pure because nothing here outlives the call.
    """

    def __init__(self, state: QueueState, now: datetime) -> None:
        self.original = state
        self.state = state
        self.now = now
        self.effects: list[Effect] = []
        self.version = state.version + 1
        self.prefix = f"{state.repo}@{state.base}:"
        # Bisection groups freed in this step (halves of a failed batch, groups of void
        # bisecting builds), in queue order; `advance` puts them in front of the others.
        self.restored: list[tuple[int, ...]] = []

    # ---- bookkeeping -------------------------------------------------------------------

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)

    def finish(self) -> tuple[QueueState, tuple[Effect, ...]]:
        if self.state == self.original and not self.effects:
            return self.original, ()
        before = check_run_inputs(self.original)
        after = check_run_inputs(self.state)
        changed = {pr for pr, inputs in after.items() if before.get(pr) != inputs}
        old_views = check_run_views(self.original, changed)
        for pr, view in check_run_views(self.state, changed).items():
            if view != old_views.get(pr):
                self.emit(
                    PostCheckRun(
                        key=self.key("v", self.version, "check-run", pr),
                        pr=pr,
                        head_sha=view.head_sha,
                        name=QUEUE_CHECK_NAME,
                        status=view.status,
                        conclusion=None,
                        title=view.title,
                        summary=view.summary,
                    )
                )
        return replace(self.state, version=self.version), tuple(self.effects)

    def put_entry(self, entry: Entry) -> None:
        others = [e for e in self.state.entries if e.pr != entry.pr]
        entries = tuple(sorted([*others, entry], key=lambda e: e.order_key))
        self.state = replace(self.state, entries=entries)

    def put_build(self, build: Build) -> None:
        """Replace the build with the same id in place (builds keep their stacking order), or
        append a new one on top."""
        builds = self.state.builds
        for index, old in enumerate(builds):
            if old.build_id == build.build_id:
                builds = (*builds[:index], build, *builds[index + 1 :])
                break
        else:
            builds = (*builds, build)
        self.state = replace(self.state, builds=builds)

    def retire_build(self, build: Build) -> None:
        """The build is over: forget it and delete its integration branch."""
        builds = tuple(b for b in self.state.builds if b.build_id != build.build_id)
        self.state = replace(self.state, builds=builds)
        self.emit(
            DeleteIntegrationBranch(
                key=self.key("delete-branch", build.build_id),
                build_id=build.build_id,
                branch=integration_branch(self.state.base, build.build_id),
            )
        )

    def drop_build(self, build: Build, *, restore: bool = True) -> None:
        """The build is void or failed: forget it, and every build stacked on it (their trees
        contain it); each is rebuilt by `advance`. A bisecting build gives its group back
        (unless `restore` is false: its caller decides what becomes of its PRs)."""
        current = self.state.build(build.build_id)
        if current is None:
            return
        doomed = [current]
        shas = {current.integration_sha} - {None}
        for other in self.state.builds:
            if other.build_id != current.build_id and other.base_sha in shas:
                doomed.append(other)
                if other.integration_sha is not None:
                    shas.add(other.integration_sha)
        for index, void in enumerate(doomed):
            if void.bisecting and (restore or index > 0):
                self.restored.append(void.prs)
            self.retire_build(void)

    def set_base(self, sha: str) -> None:
        if sha == self.state.base_sha:
            return
        history = (*self.state.base_history, self.state.base_sha)[-BASE_HISTORY_LIMIT:]
        self.state = replace(self.state, base_sha=sha, base_history=history)

    def remember_base(self, sha: str) -> None:
        """`sha` was a base at some point but is not the newest one we know of."""
        if sha != self.state.base_sha and sha not in self.state.base_history:
            history = (*self.state.base_history, sha)[-BASE_HISTORY_LIMIT:]
            self.state = replace(self.state, base_history=history)

    # ---- leaving the queue -------------------------------------------------------------

    def leave(
        self,
        entry: Entry,
        kind: OutcomeKind,
        reason: str,
        detail: str = "",
        *,
        head_sha: str | None = None,
        merged_sha: str | None = None,
    ) -> None:
        reason = reason.strip() or f"{kind} without a stated reason"
        head = head_sha or entry.head_sha
        outcome = Outcome(entry.pr, head, kind, reason, self.now, merged_sha)
        s = self.state
        groups = tuple(
            kept for g in s.bisect_groups if (kept := tuple(p for p in g if p != entry.pr))
        )
        self.state = replace(
            s,
            bisect_groups=groups,
            cleared=frozenset(c for c in s.cleared if c[0] != entry.pr),
            pairs=tuple(
                replace(
                    pair,
                    first=tuple(p for p in pair.first if p != entry.pr),
                    second=second,
                )
                for pair in s.pairs
                if (second := tuple(p for p in pair.second if p != entry.pr))
            ),
            entries=tuple(e for e in s.entries if e.pr != entry.pr),
            recent=(*s.recent, outcome)[-RECENT_OUTCOMES_LIMIT:],
            merged_prs=s.merged_prs | {entry.pr} if kind is OutcomeKind.MERGED else s.merged_prs,
            merged_count=s.merged_count + (kind is OutcomeKind.MERGED),
            ejected_count=s.ejected_count + (kind is OutcomeKind.EJECTED),
            dequeued_count=s.dequeued_count + (kind is OutcomeKind.DEQUEUED),
        )
        pr, v = entry.pr, self.version
        if kind is OutcomeKind.MERGED:
            self.emit(ReleaseLocks(key=self.key("v", v, "release-locks", pr), pr=pr))
            conclusion, title = CheckRunConclusion.SUCCESS, f"Merged into {s.base}"
            body = f"Merged: {reason}"
        elif kind is OutcomeKind.EJECTED:
            self.emit(Eject(key=self.key("v", v, "eject", pr), pr=pr, reason=reason, detail=detail))
            conclusion, title = CheckRunConclusion.FAILURE, "Ejected from the merge queue"
            body = f"Ejected from the merge queue: {reason}"
        else:
            conclusion, title = CheckRunConclusion.NEUTRAL, "Removed from the merge queue"
            body = f"Removed from the merge queue: {reason}"
        full = f"{body}\n\n{detail}" if detail else body
        self.emit(Comment(key=self.key("v", v, "comment", pr), pr=pr, body=full))
        self.emit(
            PostCheckRun(
                key=self.key("v", v, "check-run", pr),
                pr=pr,
                head_sha=head,
                name=QUEUE_CHECK_NAME,
                status=CheckRunStatus.COMPLETED,
                conclusion=conclusion,
                title=title,
                summary=full,
            )
        )

    def fail(self, build: Build, reason: str, detail: str) -> None:
        """The build's content failed (a check, after retries; a timeout; a conflict).

        At the front (on the queue's base) that is the build's own fault: `build_failed`.
        Stacked on builds that have not merged, a build ahead may be the cause, so the failure
        is set aside and judged once every build ahead has passed (`advance`); if a build ahead
        fails first, this one is void and rebuilt without it.
        """
        if build.base_sha == self.state.base_sha:
            self.build_failed(build, reason, detail)
        else:
            self.put_build(replace(build, failure=reason, failure_detail=detail))

    def build_failed(self, build: Build, reason: str, detail: str, *, bisect: bool = True) -> None:
        """The build cannot merge because of its content.

        A single-PR build's PR is the culprit: it is ejected with the reason (the failing
        check's summary). A batch is bisected: its first half is tested in an isolation build
        (on the base, off the stack) and its second half waits for that verdict (see
        `BisectionPair`), until the culprit is isolated; the other PRs are stacked again and
        merge. `bisect=False` ejects every PR (a refusal that no split can fix).
        """
        self.release_pairs(set(build.prs))
        entries = [e for pr in build.prs if (e := self.state.entry(pr)) is not None]
        if bisect and len(entries) > 1 and all(e.leave_reason is None for e in entries):
            self.split(tuple(e.pr for e in entries), reason, detail)
            self.drop_build(build, restore=False)
            return
        self.drop_build(build, restore=False)
        for pr in build.prs:
            entry = self.state.entry(pr)
            if entry is None:
                continue
            if entry.leave_reason is not None:
                self.leave(entry, OutcomeKind.DEQUEUED, entry.leave_reason)
            else:
                self.leave(entry, OutcomeKind.EJECTED, reason, detail, head_sha=build.head_of(pr))

    def split(self, prs: tuple[int, ...], reason: str, detail: str) -> None:
        """Bisect `prs` (at least two), known to hold a culprit: test the first half."""
        middle = (len(prs) + 1) // 2
        self.restored.append(prs[:middle])
        pair = BisectionPair(prs[:middle], prs[middle:], reason, detail)
        self.state = replace(self.state, pairs=(*self.state.pairs, pair))

    def release_pairs(self, prs: set[int]) -> None:
        """The first halves holding any of `prs` failed or are gone: test their seconds."""
        keep = []
        for pair in self.state.pairs:
            if prs & set(pair.first):
                self.restored.append(pair.second)
            else:
                keep.append(pair)
        if len(keep) != len(self.state.pairs):
            self.state = replace(self.state, pairs=tuple(keep))

    def resolve_pairs(self) -> None:
        """A first half that passed convicts its second half; an untestable one frees it."""
        s = self.state
        waiting = {pr for group in (*s.bisect_groups, *self.restored) for pr in group}
        waiting |= {pr for b in s.builds if b.bisecting for pr in b.prs}
        for pair in s.pairs:
            live = [e for pr in pair.first if (e := self.state.entry(pr)) is not None]
            if live and all((e.pr, e.head_sha) in self.state.cleared for e in live):
                self.drop_pair(pair)
                self.convict(pair)
            elif not waiting & {e.pr for e in live}:
                self.drop_pair(pair)
                self.restored.append(pair.second)

    def drop_pair(self, pair: BisectionPair) -> None:
        self.state = replace(self.state, pairs=tuple(p for p in self.state.pairs if p != pair))

    def convict(self, pair: BisectionPair) -> None:
        """`pair.second` holds the culprit: split it untested, or eject its last PR."""
        live = tuple(pr for pr in pair.second if self.state.entry(pr) is not None)
        if len(live) > 1:
            self.split(live, pair.reason, pair.detail)
        elif live and self.state.config.flake_retries > 0:
            self.restored.append(live)  # tested alone, so its flake retries apply
        elif live:
            entry = self.state.entry(live[0])
            assert entry is not None
            detail = (
                f"{pair.detail} Bisection isolated #{entry.pr}: every other PR of the batch "
                "passed on its own."
            ).strip()
            self.leave(entry, OutcomeKind.EJECTED, pair.reason, detail)

    def merged(self, build: Build, sha: str) -> None:
        self.retire_build(build)
        if self.state.base_sha == build.base_sha:
            self.set_base(sha)
        else:  # the base was reported further along already; keep that newer knowledge
            self.remember_base(sha)
        for pr in build.prs:
            entry = self.state.entry(pr)
            if entry is None:  # pragma: no cover - entries of a passed build never leave
                continue
            built_head = build.head_of(pr)
            reason = (
                f"{self.state.base} fast-forwarded to {short(sha)} "
                f"with #{pr} at {short(built_head)}"
            )
            notes = []
            if entry.head_sha != built_head:
                notes.append(
                    f"Commits pushed after {short(built_head)} (head now {short(entry.head_sha)}) "
                    "arrived while the fast-forward was in flight and were not merged."
                )
            if entry.leave_reason is not None:
                notes.append(f"The dequeue request ({entry.leave_reason}) came too late.")
            self.leave(
                entry,
                OutcomeKind.MERGED,
                reason,
                " ".join(notes),
                head_sha=built_head,
                merged_sha=sha,
            )

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
        entry = Entry(event.pr, event.head_sha, event.priority, self.now, s.next_seq)
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
            verdicts[report.gate] = GateVerdict(
                report.gate, entry.head_sha, report.ok, report.detail
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
        if entry is None or not event.new_sha or event.new_sha == entry.head_sha:
            return
        self.put_entry(replace(entry, head_sha=event.new_sha, verdicts=()))
        build = self.state.build_of(entry.pr)
        if build is not None and build.state is not BuildState.PASSED:
            self.drop_build(build)

    def on_base_moved(self, event: ev.BaseMoved) -> None:
        sha = event.new_sha
        if not sha or sha == self.state.base_sha or sha in self.state.base_history:
            return  # no news, or a late report of an earlier base
        builds = self.state.builds
        for index, build in enumerate(builds):
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
        self.put_build(_with_check(build, CheckResult(event.name, started_at=self.now)))

    def on_check_completed(self, event: ev.CheckCompleted) -> None:
        build = self.testing_build(event.sha, event.name, event.attempt)
        if build is None:
            return
        result = build.check(event.name)
        if result is not None and result.conclusion is not None:
            return  # already have this attempt's result
        started = self.now if result is None or result.started_at is None else result.started_at
        done = CheckResult(event.name, started, event.conclusion, event.summary, self.now)
        build = _with_check(build, done)
        self.put_build(build)
        if event.conclusion is CheckConclusion.SUCCESS:
            return
        what = f"{event.summary}" if event.summary else f"concluded {event.conclusion}"
        reason = f"required check {event.name} {event.conclusion}: {what}"
        detail = (
            f"Check {event.name} on integration commit {short(event.sha)} (base "
            f"{short(build.base_sha)}) concluded {event.conclusion} on attempt {build.attempt}."
        )
        if build.base_sha != self.state.base_sha:
            # Speculative: a build ahead may be the cause. Judged (and maybe retried) when
            # every build ahead has passed; builds stacked on it are rebuilt without it.
            self.put_build(replace(build, failure=reason, failure_detail=detail))
            return
        if not self.retried(build, event.conclusion):
            self.build_failed(build, reason, detail)

    def retried(self, build: Build, conclusion: CheckConclusion) -> bool:
        """Retry a failed check on the same SHA if its kind of failure has retries left."""
        config = self.state.config
        build = replace(build, failure=None, failure_detail="")
        if conclusion in INFRASTRUCTURE_CONCLUSIONS:
            if build.timeout_retries < config.retry_on_timeout:
                self.retry(replace(build, timeout_retries=build.timeout_retries + 1))
                return True
        elif build.flake_retries_used < config.flake_retries and len(build.prs) == 1:
            # A failed batch is not rerun: bisection retests every one of its PRs anyway.
            used = build.flake_retries_used + 1
            self.retry(replace(build, flake_retries_used=used, suspect=True))
            return True
        return False

    def judge(self, build: Build) -> None:
        """A failed build whose builds ahead all passed: the failure is its own."""
        assert build.failure is not None
        for check in build.checks:
            if check.conclusion not in (None, CheckConclusion.SUCCESS):
                assert check.conclusion is not None
                if self.retried(build, check.conclusion):
                    return
                break
        self.build_failed(build, build.failure, build.failure_detail)

    def retry(self, build: Build) -> None:
        """Re-request every required check of `build` that has not succeeded (same SHA)."""
        assert build.integration_sha is not None
        passed = tuple(c for c in build.checks if c.conclusion is CheckConclusion.SUCCESS)
        names = tuple(
            n for n in self.state.config.required_checks if n not in {c.name for c in passed}
        )
        attempt = build.attempt + 1
        self.put_build(replace(build, checks=passed, attempt=attempt, checks_requested_at=self.now))
        self.emit(
            RequestChecks(
                key=self.key("request-checks", build.build_id, attempt),
                build_id=build.build_id,
                integration_sha=build.integration_sha,
                check_names=names,
                attempt=attempt,
                branch=integration_branch(self.state.base, build.build_id),
            )
        )

    def on_fast_forward_rejected(self, event: ev.FastForwardRejected) -> None:
        build = self.state.build(event.build_id)
        if build is None or build.state is not BuildState.PASSED:
            return
        current = event.current_base_sha
        if current and current == build.integration_sha:
            self.merged(build, current)  # it did move (an earlier attempt's response was lost)
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
        for pr in build.prs:
            entry = self.state.entry(pr)
            if entry is not None and entry.leave_reason is not None:
                self.leave(entry, OutcomeKind.DEQUEUED, entry.leave_reason)
        for other in self.state.builds:
            if other.state is not BuildState.PASSED and other.base_sha != current:
                self.drop_build(other)

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
                    window = _format_duration(config.check_start_timeout)
                    problems.append(f"required check {name} never started within {window}")
                elif elapsed >= config.check_timeout:
                    window = _format_duration(config.check_timeout)
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

    # ---- scheduling --------------------------------------------------------------------

    def advance(self) -> None:
        """Judge failed builds whose builds ahead all passed, fast-forward the front build when
        it passed, then start builds while a slot is free, each stacked on the nearest build
        ahead that has not failed (speculation)."""
        self.normalize_chain()
        while (culprit := self.judged_failure()) is not None:
            self.judge(culprit)
            self.normalize_chain()
        config = self.state.config
        for build in self.state.builds:
            if build.bisecting and build.failure is None and _all_passed(config, build):
                self.drop_build(build, restore=False)  # cleared: its PRs rejoin the queue
                passed = frozenset(zip(build.prs, build.head_shas, strict=True))
                self.state = replace(self.state, cleared=self.state.cleared | passed)
        if self.state.pairs:
            self.resolve_pairs()
        front = self.front()
        if (
            front is not None
            and front.state is BuildState.TESTING
            and _all_passed(self.state.config, front)
        ):
            self.request_fast_forward(front)
        if self.restored:
            groups = (*self.restored, *self.state.bisect_groups)
            self.state = replace(self.state, bisect_groups=groups)
            self.restored.clear()
        while _active(self.state) < self.state.config.parallel_checks:
            stack_on = self.stack_base()
            group = self.next_group(stack=stack_on is not None)
            if group is None:
                return
            entries, bisecting = group
            # Isolation builds are tested on the queue's base: their verdict then depends on
            # nothing but their own PRs, and no failure ahead can void it.
            base_sha = self.state.base_sha if bisecting else stack_on
            self.start_build(entries, base_sha, bisecting=bisecting)

    def front(self) -> Build | None:
        """The first build that can merge: on the queue's base, not failed, not isolating."""
        for build in self.state.builds:
            if build.failure is None and not build.bisecting:
                return build if build.base_sha == self.state.base_sha else None
        return None

    def judged_failure(self) -> Build | None:
        """The first failed build whose failure is its own: every build its tree stacks on
        passed (or it is on the queue's base), so no PR ahead of it can be the cause."""
        config = self.state.config
        for build in self.state.builds:
            if build.failure is not None and build.bisecting:
                return build  # on a base that passed: nothing else is in its tree
        for build in self.state.builds:
            if build.failure is not None:
                return build
            if build.transparent:
                continue  # builds behind do not contain it
            if build.state is not BuildState.PASSED and not _all_passed(config, build):
                return None
        return None

    def normalize_chain(self) -> None:
        """Builds form one stack: the first on the queue's base (or a passed build whose
        fast-forward is in flight), each next one on the integration commit of the nearest
        build before it that has not failed (a failed build waits aside to be judged). A build
        whose foundation is gone is void, with everything stacked on it (rebuilt by
        `advance`)."""
        expected: str | None = self.state.base_sha
        for index, build in enumerate(self.state.builds):
            if self.state.build(build.build_id) is None or build.bisecting:
                continue  # dropped with a build it was stacked on; off the stack
            if build.base_sha == expected:
                if not build.transparent:
                    expected = build.integration_sha
            elif index == 0 and build.state is BuildState.PASSED:
                expected = None  # wait for the fast-forward's outcome before stacking on it
            else:
                self.drop_build(build)

    def stack_base(self) -> str | None:
        """The SHA a new build is made on, or None when nothing can be stacked right now."""
        builds = self.state.builds
        if not builds:
            return self.state.base_sha
        if builds[0].base_sha != self.state.base_sha:
            return None
        live = [b for b in builds if not b.transparent]
        if not live:
            return self.state.base_sha
        return live[-1].integration_sha  # None while its commit is being made

    def request_fast_forward(self, build: Build) -> None:
        assert build.integration_sha is not None
        for pr, head in zip(build.prs, build.head_shas, strict=True):
            entry = self.state.entry(pr)
            if entry is None or entry.head_sha != head or not entry.gates_pass:
                self.drop_build(build)  # pragma: no cover - such builds are dropped earlier
                return
        if build.base_sha != self.state.base_sha:
            self.drop_build(build)  # pragma: no cover - base moves drop builds earlier
            return
        self.put_build(replace(build, state=BuildState.PASSED))
        self.emit(
            FastForwardBase(
                key=self.key("fast-forward", build.build_id),
                build_id=build.build_id,
                base=self.state.base,
                expected_old_sha=build.base_sha,
                new_sha=build.integration_sha,
            )
        )

    def eligible(self, entry: Entry, building: set[int]) -> bool:
        """Ready for a build: gates pass, not leaving, in no build (`building` holds the PRs of
        every build and of every second half waiting for a bisection verdict)."""
        return entry.pr not in building and entry.gates_pass and entry.leave_reason is None

    def next_group(self, *, stack: bool = True) -> tuple[tuple[Entry, ...], bool] | None:
        """The next build's entries and whether it is a bisection half: the halves of failed
        batches first (members that are no longer eligible drop out of them), then up to
        `batch_size` eligible entries in queue order, once the batch is full or the oldest of
        them has waited `batch_wait`."""
        s = self.state
        building = {pr for b in s.builds for pr in b.prs}
        building |= {pr for pair in s.pairs for pr in pair.second}
        groups = list(s.bisect_groups)
        while groups:
            group = groups.pop(0)
            self.state = replace(self.state, bisect_groups=tuple(groups))
            members = tuple(
                e for pr in group if (e := s.entry(pr)) is not None and self.eligible(e, building)
            )
            if members:
                return members, True
        config = s.config
        ready = [e for e in s.entries if self.eligible(e, building)]
        if config.pretest:
            cleared = [e for e in ready if (e.pr, e.head_sha) in s.cleared]
            if cleared and stack:
                return tuple(cleared[: config.batch_size]), False
            fresh = [e for e in ready if (e.pr, e.head_sha) not in s.cleared]
            batch = self.fill(fresh)
            return None if batch is None else (batch, True)
        if not stack:
            return None
        batch = self.fill(ready)
        return None if batch is None else (batch, False)

    def fill(self, ready: list[Entry]) -> tuple[Entry, ...] | None:
        """Up to `batch_size` of `ready`, once that many are ready, the oldest of them has
        waited `batch_wait`, or one of them passed an isolation build."""
        config = self.state.config
        batch = ready[: config.batch_size]
        if not batch:
            return None
        cleared = self.state.cleared
        if len(batch) < config.batch_size and not any(
            (e.pr, e.head_sha) in cleared for e in batch
        ):  # PRs that passed an isolation build have waited enough
            oldest = min(e.enqueued_at for e in batch)
            if self.now - oldest < config.batch_wait:
                return None
        return tuple(batch)

    def start_build(
        self, entries: tuple[Entry, ...], base_sha: str | None = None, *, bisecting: bool = False
    ) -> None:
        s = self.state
        build = Build(
            build_id=f"b{s.next_build}",
            prs=tuple(e.pr for e in entries),
            head_shas=tuple(e.head_sha for e in entries),
            base_sha=s.base_sha if base_sha is None else base_sha,
            state=BuildState.BUILDING,
            requested_at=self.now,
            bisecting=bisecting,
        )
        self.state = replace(s, next_build=s.next_build + 1)
        self.put_build(build)
        self.emit(
            BuildIntegration(
                key=self.key("build", build.build_id),
                build_id=build.build_id,
                base_sha=build.base_sha,
                prs=tuple(zip(build.prs, build.head_shas, strict=True)),
                merge_method=s.config.merge_method,
                branch=integration_branch(s.base, build.build_id),
            )
        )


def _active(state: QueueState) -> int:
    """Builds that hold a slot: every build except failed ones waiting to be judged."""
    return sum(1 for build in state.builds if build.failure is None)


def _with_check(build: Build, result: CheckResult) -> Build:
    others = tuple(c for c in build.checks if c.name != result.name)
    return replace(build, checks=(*others, result))


def _all_passed(config: QueueConfig, build: Build) -> bool:
    for name in config.required_checks:
        result = build.check(name)
        if result is None or result.conclusion is not CheckConclusion.SUCCESS:
            return False
    return True
