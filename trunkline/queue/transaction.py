"""The working copy of one engine step: bookkeeping shared by every queue rule.

Pure; performs no I/O. `StepTransaction` holds the state being rebuilt during one
`trunkline.queue.engine.step` and the effects emitted so far; it knows how to put and drop
entries and builds, move the base, and let an entry leave the queue (merged, ejected or
dequeued) with the effects that go with it. The rules build on it: `failures.FailureRules`
(what a failure means), `scheduling.Scheduler` (which builds run) and the event handlers in
`engine`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from trunkline.queue.effects import (
    QUEUE_CHECK_NAME,
    CheckRunConclusion,
    CheckRunStatus,
    ClosePull,
    Comment,
    DeleteIntegrationBranch,
    Effect,
    Eject,
    PostCheckRun,
    ReleaseLocks,
    integration_branch,
)
from trunkline.queue.explain import check_run_inputs, check_run_views, short
from trunkline.queue.model import (
    BASE_HISTORY_LIMIT,
    RECENT_OUTCOMES_LIMIT,
    Build,
    CheckConclusion,
    CheckResult,
    Entry,
    MergeMethod,
    Outcome,
    OutcomeKind,
    QueueConfig,
    QueueState,
)


def format_duration(duration: timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    return f"{minutes}m" if minutes else f"{int(duration.total_seconds())}s"


class StepTransaction:
    """The working copy of one `step`: a state being rebuilt and the effects so far, and the
    bookkeeping every rule shares (entries, builds, the base, leaving the queue).

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
        if current.probe_of is not None:  # a probe voided: its whole round is void
            parent = self.state.build(current.probe_of)
            if parent is not None:
                current = parent
        doomed = [current]
        shas = {current.integration_sha} - {None}
        rounds = {current.build_id} if current.probed else set()
        for other in self.state.builds:
            if other.build_id == current.build_id:
                continue
            if other.base_sha in shas or other.probe_of in rounds:
                doomed.append(other)
                if other.integration_sha is not None:
                    shas.add(other.integration_sha)
                if other.probed:
                    rounds.add(other.build_id)
        for index, void in enumerate(doomed):
            in_round = void.probed or void.probe_of is not None  # its PRs are simply free
            if void.bisecting and not in_round and (restore or index > 0):
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
        if kind is OutcomeKind.MERGED and s.config.merge_method is not MergeMethod.MERGE:
            # A squash commit does not contain the PR's head, so GitHub cannot see the PR as
            # merged: the comment above names the commit, and the PR is closed.
            self.emit(
                ClosePull(key=self.key("v", v, "close-pull", pr), pr=pr, merged_sha=merged_sha)
            )

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
            if self.state.config.merge_method is not MergeMethod.MERGE:
                others = ", ".join(f"#{other}" for other in build.prs if other != pr)
                notes.append(
                    f"Squashed into {sha}"
                    + (f" together with {others}" if others else "")
                    + f"; the PR is closed because its head is not part of {self.state.base}."
                )
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


def active_builds(state: QueueState) -> int:
    """Builds that hold a `parallel_checks` slot: every build except failed ones waiting to be
    judged, the builds of a probe round (bounded by the failed build's size instead) and, with
    `isolation_slots`, isolation builds (they have slots of their own)."""
    separate = state.config.isolation_slots > 0
    return sum(
        1
        for build in state.builds
        if build.failure is None
        and build.probe_of is None
        and not build.probed
        and not (separate and build.bisecting)
    )


def active_isolation_builds(state: QueueState) -> int:
    """Isolation builds that hold an `isolation_slots` slot (not failed, not a probe)."""
    return sum(1 for b in state.builds if b.bisecting and b.failure is None and b.probe_of is None)


def with_check(build: Build, result: CheckResult) -> Build:
    others = tuple(c for c in build.checks if c.name != result.name)
    return replace(build, checks=(*others, result))


def all_passed(config: QueueConfig, build: Build) -> bool:
    for name in config.required_checks:
        result = build.check(name)
        if result is None or result.conclusion is not CheckConclusion.SUCCESS:
            return False
    return True
