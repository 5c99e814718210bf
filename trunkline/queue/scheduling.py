"""Which builds run: the stack of speculative builds, batches, and the front's fast-forward.

Pure; performs no I/O. `Scheduler` extends the failure rules with `advance`, run at the end
of every step:

1. failures whose builds ahead all passed are judged (`FailureRules.judge`);
2. isolation builds that passed clear their PRs (stacked again without waiting), and
   bisections whose first half passed convict their second half;
3. the front build (on the queue's base, not failed, not an isolation build) is
   fast-forwarded when every required check passed on its exact integration SHA;
4. while a slot is free: halves of failed batches first (as isolation builds on the base),
   then a new batch stacked on the integration commit of the nearest build ahead that has not
   failed (`pretest`: new PRs first go through isolation batches; only cleared PRs are
   stacked). Every build takes one of the `parallel_checks` slots, unless `isolation_slots`
   gives isolation builds their own.

A batch takes up to `batch_size` eligible entries in queue order, once it is full, its oldest
entry has waited `batch_wait`, or one of its PRs already passed an isolation build.
"""

from __future__ import annotations

from dataclasses import replace

from trunkline.queue.effects import BuildIntegration, FastForwardBase, integration_branch
from trunkline.queue.model import Build, BuildState, Entry
from trunkline.queue.probes import ProbeRules
from trunkline.queue.transaction import active_builds, active_isolation_builds, all_passed


class Scheduler(ProbeRules):
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
            if (
                build.bisecting
                and build.probe_of is None
                and build.state is BuildState.TESTING
                and build.failure is None
                and all_passed(config, build)
            ):
                if self.may_merge_isolated(build):
                    self.request_fast_forward(build)
                    continue
                self.drop_build(build, restore=False)  # cleared: its PRs rejoin the queue
                passed = frozenset(zip(build.prs, build.head_shas, strict=True))
                self.state = replace(self.state, cleared=self.state.cleared | passed)
        if self.state.pairs:
            self.resolve_pairs()
        self.resolve_probes()
        front = self.front()
        if (
            front is not None
            and front.state is BuildState.TESTING
            and all_passed(self.state.config, front)
        ):
            self.request_fast_forward(front)
        if self.restored:
            groups = (*self.restored, *self.state.bisect_groups)
            self.state = replace(self.state, bisect_groups=groups)
            self.restored.clear()
        while True:
            stack_free = active_builds(self.state) < config.parallel_checks
            isolation_free = (
                active_isolation_builds(self.state) < config.isolation_slots
                if config.isolation_slots > 0
                else stack_free
            )
            if not (stack_free or isolation_free):
                return
            stack_on = self.stack_base() if stack_free else None
            group = self.next_group(stack=stack_on is not None, isolation=isolation_free)
            if group is None:
                return
            entries, bisecting = group
            # Isolation builds are tested on the queue's base: their verdict then depends on
            # nothing but their own PRs, and no failure ahead can void it.
            base_sha = self.state.base_sha if bisecting else stack_on
            self.start_build(entries, base_sha, bisecting=bisecting)

    @property
    def cleared_batch_size(self) -> int:
        config = self.state.config
        return config.cleared_batch_size or config.batch_size

    def speculation_room(self) -> int:
        """How many PRs that have not passed an isolation build a new build on the top of the
        stack may hold: the most for which the chance that it and every unresolved build under
        it pass stays >= `speculation_floor` (each uncleared PR is bad with the rate estimated
        from this queue's outcomes, prior 10%); 0 when the floor is 0 (off)."""
        config = self.state.config
        floor = config.speculation_floor
        if floor <= 0:
            return 0
        s = self.state
        good = 1 - (s.ejected_count + 1) / (s.ejected_count + s.merged_count + 10)
        chance = 1.0
        for build in s.builds:
            if build.transparent or build.state is BuildState.PASSED:
                continue
            if all_passed(config, build):
                continue
            pairs = zip(build.prs, build.head_shas, strict=True)
            chance *= good ** sum(1 for pair in pairs if pair not in s.cleared)
        room = 0
        while room < config.batch_size and chance * good ** (room + 1) >= floor:
            room += 1
        return room

    def may_merge_isolated(self, build: Build) -> bool:
        """A passed isolation build made on the current base is exactly its PRs on that base:
        with `merge_isolated` it is fast-forwarded to itself instead of being stacked again,
        when no fast-forward is in flight and the stack is empty (nothing is voided)."""
        if not self.state.config.merge_isolated or build.base_sha != self.state.base_sha:
            return False
        if any(b.state is BuildState.PASSED for b in self.state.builds):
            return False  # a fast-forward is in flight
        chain = [b for b in self.state.builds if not b.bisecting and b.failure is None]
        return not chain

    def front(self) -> Build | None:
        """The first build that can merge: on the queue's base, not failed, not isolating."""
        for build in self.state.builds:
            if build.failure is None and not build.bisecting:
                return build if build.base_sha == self.state.base_sha else None
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
        if self.probing():
            return None  # a probe round decides what the next build stacks on
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
                prs=tuple(zip(build.prs, build.head_shas, strict=True)),
            )
        )

    def eligible(self, entry: Entry, building: set[int]) -> bool:
        """Ready for a build: gates pass, not leaving, in no build (`building` holds the PRs of
        every build and of every second half waiting for a bisection verdict)."""
        return entry.pr not in building and entry.gates_pass and entry.leave_reason is None

    def next_group(
        self, *, stack: bool = True, isolation: bool = True
    ) -> tuple[tuple[Entry, ...], bool] | None:
        """The next build's entries and whether it is a bisection half: the halves of failed
        batches first (members that are no longer eligible drop out of them), then up to
        `batch_size` eligible entries in queue order, once the batch is full or the oldest of
        them has waited `batch_wait`."""
        s = self.state
        building = {pr for b in s.builds for pr in b.prs}
        building |= {pr for pair in s.pairs for pr in pair.second}
        groups = list(s.bisect_groups) if isolation else []
        while groups:
            group = groups.pop(0)
            self.state = replace(self.state, bisect_groups=tuple(groups))
            members = tuple(
                e for pr in group if (e := s.entry(pr)) is not None and self.eligible(e, building)
            )
            if members:
                return members, True
        # Halves still waiting for an isolation slot are reserved for their isolation build.
        building |= {pr for group in self.state.bisect_groups for pr in group}
        config = s.config
        ready = [e for e in s.entries if self.eligible(e, building)]
        if config.pretest:
            cleared = [e for e in ready if (e.pr, e.head_sha) in s.cleared]
            if cleared and stack:
                return tuple(cleared[: self.cleared_batch_size]), False
            fresh = [e for e in ready if (e.pr, e.head_sha) not in s.cleared]
            room = self.speculation_room() if stack else 0
            if room > 0 and fresh:
                return tuple(fresh[:room]), False
            batch = self.fill(fresh) if isolation else None
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
