"""Parallel bisection (`QueueConfig.parallel_bisection`): one CI round per failed build.

Pure; performs no I/O. `ProbeRules` extends the failure rules. When a required check of a
testing build of n PRs fails (not a CI-side cancellation or timeout with retries left), a
*probe round* starts at once, on the base the failed build had (the queue's base, or the
integration commit of the build ahead when it is stacked):

- the failed build is rerun on the same SHA (`probed`, `suspect`: nothing is stacked on it);
- its n-1 proper prefixes are built as isolation builds (`probe_of` the failed build) on the
  same base SHA; every probe is an exact tree, PRs in the failed build's order;
- nothing new is stacked while a round is unresolved (builds behind the failed one are void).

When the rerun passes, the failure was a flake: the probes are cancelled and the build merges
as it is. Otherwise, once every probe has a verdict and the failed build is at the front (the
builds ahead merged, so no PR ahead can be the cause): the longest passing prefix is exactly
its PRs on the current base and fast-forwards; the PR right after it failed in two tested
trees (the next longer candidate and the original) and is ejected with the original failure;
the PRs after it rejoin the queue (in their queue order, so at its front). A probe or the
failed build voided on the way (a head push, a dequeue, a base move) voids the whole round.
"""

from __future__ import annotations

from dataclasses import replace

from trunkline.queue.effects import BuildIntegration, integration_branch
from trunkline.queue.explain import short
from trunkline.queue.failures import FailureRules
from trunkline.queue.model import Build, BuildState, OutcomeKind
from trunkline.queue.transaction import all_passed


class ProbeRules(FailureRules):
    def probing(self) -> bool:
        """A probe round that holds the stack is unresolved: nothing new may be stacked."""
        return any(build.probed and not build.bisecting for build in self.state.builds)

    def round_valid(self, parent: Build) -> bool:
        """An off-stack round stays meaningful while its base is the queue's base, an earlier
        base, or the integration commit of a build that may still merge."""
        base = parent.base_sha
        if base == self.state.base_sha or base in self.state.base_history:
            return True
        return any(b.integration_sha == base and not b.transparent for b in self.state.builds)

    def probe_failed(self, build: Build, reason: str, detail: str) -> None:
        """A check of `build` failed under `parallel_bisection`: record it in a round, or start
        one (a build without an integration commit takes the serial failure rules)."""
        if build.probe_of is not None or build.probed:
            self.put_build(replace(build, failure=reason, failure_detail=detail))
            return
        if build.integration_sha is None or build.state is not BuildState.TESTING:
            self.fail(build, reason, detail)
            return
        hold = self.state.config.bisection_holds_stack
        parent = replace(build, probed=True, suspect=True, bisecting=not hold, first_failure=reason)
        self.put_build(replace(parent, failure_detail=detail))
        self.retry(parent)
        s = self.state
        for size in range(1, len(build.prs)):
            probe = Build(
                build_id=f"b{s.next_build}",
                prs=build.prs[:size],
                head_shas=build.head_shas[:size],
                base_sha=build.base_sha,
                state=BuildState.BUILDING,
                requested_at=self.now,
                bisecting=True,
                probe_of=build.build_id,
            )
            s = replace(s, next_build=s.next_build + 1)
            self.state = s
            self.put_build(probe)
            s = self.state
            self.emit(
                BuildIntegration(
                    key=self.key("build", probe.build_id),
                    build_id=probe.build_id,
                    base_sha=probe.base_sha,
                    prs=tuple(zip(probe.prs, probe.head_shas, strict=True)),
                    merge_method=s.config.merge_method,
                    branch=integration_branch(s.base, probe.build_id),
                )
            )

    def resolve_probes(self) -> None:
        """Settle every probe round whose verdict is known (see the module docstring)."""
        for parent in [b for b in self.state.builds if b.probed]:
            if self.state.build(parent.build_id) is None:
                continue
            probes = [b for b in self.state.builds if b.probe_of == parent.build_id]
            if not self.round_valid(parent):
                self.drop_build(parent)  # a build under it failed: its PRs rejoin the queue
                continue
            if parent.failure is None:
                if parent.state is BuildState.TESTING and all_passed(self.state.config, parent):
                    for probe in probes:  # a flake: the whole build passed on its rerun
                        self.retire_build(probe)
                    self.promote(replace(parent, probed=False, suspect=False))
                continue
            config = self.state.config
            if any(p.failure is None and not all_passed(config, p) for p in probes):
                continue  # a verdict is still missing
            if parent.base_sha != self.state.base_sha and parent.base_sha not in (
                self.state.base_history
            ):
                continue  # builds ahead have not merged: one of them may be the cause
            self.settle(parent, [p for p in probes if p.failure is None])

    def promote(self, build: Build) -> None:
        """A passed candidate of a round: it fast-forwards from the front when it is on the
        queue's base and nothing else is on the stack (or it never left the stack); otherwise
        its PRs rejoin the queue (at its front, in queue order) and are stacked again."""
        if not build.bisecting:
            self.put_build(build)
            return
        stack = [b for b in self.state.builds if not b.bisecting and b.build_id != build.build_id]
        if build.base_sha == self.state.base_sha and not stack:
            others = tuple(b for b in self.state.builds if b.build_id != build.build_id)
            front = replace(build, bisecting=False, probe_of=None)
            self.state = replace(self.state, builds=(front, *others))
        else:
            self.retire_build(build)

    def settle(self, parent: Build, passed: list[Build]) -> None:
        """Merge the longest passing prefix, eject the PR after it, free the rest."""
        winner = max(passed, key=lambda b: len(b.prs), default=None)
        size = 0 if winner is None else len(winner.prs)
        culprit = parent.prs[size]
        for build in self.state.builds:
            if build.probe_of == parent.build_id and build is not winner:
                self.retire_build(build)
        self.retire_build(parent)
        if winner is not None:
            self.promote(replace(winner, bisecting=True, probe_of=None))
        entry = self.state.entry(culprit)
        if entry is None:  # pragma: no cover - a PR that left voids its round
            return
        if entry.leave_reason is not None:  # pragma: no cover - no fast-forward was in flight
            self.leave(entry, OutcomeKind.DEQUEUED, entry.leave_reason)
            return
        kept = f"#{parent.prs[0]}..#{parent.prs[size - 1]}" if size else "no PR before it"
        detail = (
            f"{parent.failure_detail} Parallel bisection on {short(parent.base_sha)}: the "
            f"longest passing prefix holds {kept}; the tree that adds #{culprit} failed, and so "
            f"did the rerun of the whole batch ({parent.failure})."
        ).strip()
        self.leave(
            entry,
            OutcomeKind.EJECTED,
            parent.first_failure or parent.failure or "failed",
            detail,
            head_sha=parent.head_of(culprit),
        )
