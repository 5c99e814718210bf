"""What a failure means: retries, ejection, and bisection of failed batches.

Pure; performs no I/O. `FailureRules` extends the step transaction with the rules for a
build whose content failed (a required check after its retries, a timeout, a conflict):

- a failure behind builds that have not passed is set aside until they pass (a PR ahead may
  be the cause) and judged then;
- a judged single-PR build ejects its PR with the failing check's summary (after
  `flake_retries` reruns of the same SHA; `retry_on_timeout` for timeouts and cancellations);
- a judged batch is bisected: its first half is tested in an isolation build (on the base,
  off the stack) while the second waits for that verdict (`BisectionPair`); a first half
  that passes convicts the second (split again untested, its last PR ejected with the
  batch's failure), one that fails is split again and the second half is tested after all.
"""

from __future__ import annotations

from dataclasses import replace

from trunkline.queue.effects import RequestChecks, integration_branch
from trunkline.queue.model import (
    INFRASTRUCTURE_CONCLUSIONS,
    BisectionPair,
    Build,
    BuildState,
    CheckConclusion,
    OutcomeKind,
)
from trunkline.queue.transaction import StepTransaction, all_passed


class FailureRules(StepTransaction):
    def fail(self, build: Build, reason: str, detail: str) -> None:
        """The build's content failed (a check, after retries; a timeout; a conflict).

        At the front (on the queue's base) that is the build's own fault: `build_failed`.
        Stacked on builds that have not merged, a build ahead may be the cause, so the failure
        is set aside and judged once every build ahead has passed (`advance`); if a build ahead
        fails first, this one is void and rebuilt without it.
        """
        if build.probe_of is not None or build.probed:
            # Part of a probe round (`parallel_bisection`): a verdict the round settles.
            self.put_build(replace(build, failure=reason, failure_detail=detail))
        elif build.base_sha == self.state.base_sha:
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

    def backlogged(self) -> bool:
        """At least a full batch of PRs waits that no isolation build has passed and that are
        in no build or bisection: an untested second half then rejoins them instead of being
        tested on its own (a full batch clears more PRs per CI run than a half)."""
        s = self.state
        busy = {pr for b in s.builds for pr in b.prs}
        busy |= {pr for pair in s.pairs for pr in pair.second}
        busy |= {pr for group in (*s.bisect_groups, *self.restored) for pr in group}
        fresh = sum(
            1 for e in s.entries if e.pr not in busy and (e.pr, e.head_sha) not in s.cleared
        )
        return fresh >= s.config.batch_size

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
                if self.state.config.isolation_slots and self.backlogged():
                    continue  # untested again: its PRs rejoin the fresh ones in full batches
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

    def judged_failure(self) -> Build | None:
        """The first failed build whose failure is its own: every build its tree stacks on
        passed (or it is on the queue's base), so no PR ahead of it can be the cause."""
        config = self.state.config
        for build in self.state.builds:
            in_round = build.probed or build.probe_of is not None
            if build.failure is not None and build.bisecting and not in_round:
                return build  # on a base that passed: nothing else is in its tree
        for build in self.state.builds:
            if build.failure is not None and not build.probed and build.probe_of is None:
                return build
            if build.transparent:
                continue  # builds behind do not contain it
            if build.state is not BuildState.PASSED and not all_passed(config, build):
                return None
        return None
