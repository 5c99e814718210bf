"""Human-readable descriptions of queue entries: for `/trunkline explain`, the dashboard and
the summary of the `trunkline/queue` check run.

Pure; performs no I/O. Everything here is a function of a `QueueState` alone (no clock), so the
same state always renders the same text and the engine can post a check run exactly when the
text changes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from trunkline.queue.effects import CheckRunStatus
from trunkline.queue.model import (
    ALL_GATES,
    Build,
    BuildState,
    CheckConclusion,
    Entry,
    EntryState,
    Gate,
    Priority,
    QueueState,
    derive_entry_state,
)


class LineStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True)
class StatusLine:
    """One gate or required check and its state, with a readable detail."""

    name: str
    status: LineStatus
    detail: str


@dataclass(frozen=True)
class Explanation:
    pr: int
    head_sha: str
    priority: Priority
    position: int  # 1-based
    queue_length: int
    state: EntryState
    why: str  # one line: what the entry is doing or waiting for
    gates: tuple[StatusLine, ...]
    checks: tuple[StatusLine, ...]  # required checks of its build (empty without a build)
    build_id: str | None
    base_sha: str
    integration_sha: str | None
    leave_reason: str | None


def short(sha: str | None) -> str:
    return "-" if sha is None else sha[:7]


def explain(state: QueueState, pr: int) -> Explanation | None:
    """Describe `pr`'s position, state and every gate; None when it is not queued."""
    entry = state.entry(pr)
    position = state.position(pr)
    if entry is None or position is None:
        return None
    return _explain(state, entry, position, state.build_of(pr))


def _explain(state: QueueState, entry: Entry, position: int, build: Build | None) -> Explanation:
    entry_state = derive_entry_state(entry, build)
    gates = tuple(_gate_line(entry, gate) for gate in ALL_GATES)
    checks = _check_lines(state, build) if build is not None else ()
    return Explanation(
        pr=entry.pr,
        head_sha=entry.head_sha,
        priority=entry.priority,
        position=position,
        queue_length=len(state.entries),
        state=entry_state,
        why=_why(state, entry.pr, entry_state, gates, checks, build),
        gates=gates,
        checks=checks,
        build_id=None if build is None else build.build_id,
        base_sha=state.base_sha if build is None else build.base_sha,
        integration_sha=None if build is None else build.integration_sha,
        leave_reason=entry.leave_reason,
    )


def _gate_line(entry: Entry, gate: Gate) -> StatusLine:
    verdict = entry.verdict(gate)
    if verdict is None:
        return StatusLine(gate, LineStatus.PENDING, f"no verdict yet for {short(entry.head_sha)}")
    status = LineStatus.PASSED if verdict.ok else LineStatus.FAILED
    return StatusLine(gate, status, verdict.detail or ("ok" if verdict.ok else "not satisfied"))


def _check_lines(state: QueueState, build: Build) -> tuple[StatusLine, ...]:
    lines = []
    for name in state.config.required_checks:
        result = build.check(name)
        if build.integration_sha is None:
            lines.append(StatusLine(name, LineStatus.PENDING, "integration commit not built yet"))
        elif result is None or result.conclusion is None:
            started = result is not None and result.started_at is not None
            detail = "running" if started else "requested, not started"
            lines.append(StatusLine(name, LineStatus.PENDING, detail))
        elif result.conclusion is CheckConclusion.SUCCESS:
            lines.append(StatusLine(name, LineStatus.PASSED, result.summary or "success"))
        else:
            detail = f"{result.conclusion}: {result.summary}" if result.summary else "failed"
            lines.append(StatusLine(name, LineStatus.FAILED, detail))
    return tuple(lines)


def _why(
    state: QueueState,
    pr: int,
    entry_state: EntryState,
    gates: tuple[StatusLine, ...],
    checks: tuple[StatusLine, ...],
    build: Build | None,
) -> str:
    if entry_state is EntryState.WAITING:
        missing = [f"{g.name} {g.status}" for g in gates if g.status is not LineStatus.PASSED]
        return "waiting for gates: " + ", ".join(missing)
    if entry_state is EntryState.QUEUED:
        ahead = [b for b in state.builds if pr not in b.prs]
        if ahead:
            busy = ", ".join(f"{b.build_id} ({_prs(b)})" for b in ahead)
            return f"ready; waiting for the build slot held by {busy}"
        return "ready; a build starts next"
    assert build is not None
    if build.failure is not None:
        return (
            f"build {build.build_id} failed ({build.failure}); judged once the builds ahead "
            "of it pass (one of them may be the cause)"
        )
    if build.bisecting:
        return (
            f"isolation build {build.build_id} ({_prs(build)}) on {short(build.base_sha)}, off "
            "the stack: when it passes these PRs are stacked again, when it fails it is split"
        )
    if build.state is BuildState.BUILDING:
        return f"building integration commit {build.build_id} on {short(build.base_sha)}"
    if build.state is BuildState.TESTING:
        pending = [c.name for c in checks if c.status is not LineStatus.PASSED]
        retry = f" (attempt {build.attempt})" if build.attempt > 1 else ""
        return f"testing {short(build.integration_sha)}{retry}; waiting for: " + ", ".join(pending)
    return (
        f"required checks passed on {short(build.integration_sha)}; "
        f"fast-forwarding {state.base} to it"
    )


def _prs(build: Build) -> str:
    return ", ".join(f"#{pr}" for pr in build.prs)


_MARK = {LineStatus.PASSED: "✅", LineStatus.FAILED: "❌", LineStatus.PENDING: "⏳"}


def render_markdown(explanation: Explanation) -> str:
    """The reply to `/trunkline explain` and the body of the queue check run."""
    e = explanation
    lines = [
        f"**Merge queue: #{e.pr}** is number {e.position} in the queue "
        f"(priority {e.priority}), state **{e.state}**.",
        "",
        e.why,
        "",
        f"Gates on head `{short(e.head_sha)}`:",
    ]
    lines += [f"- {_MARK[g.status]} {g.name}: {g.detail}" for g in e.gates]
    if e.build_id is not None:
        lines += [
            "",
            f"Build {e.build_id} on base `{short(e.base_sha)}`, "
            f"integration `{short(e.integration_sha)}`:",
        ]
        lines += [f"- {_MARK[c.status]} {c.name}: {c.detail}" for c in e.checks]
    if e.leave_reason is not None:
        lines += ["", f"Dequeue requested ({e.leave_reason}); applies if the fast-forward fails."]
    return "\n".join(lines)


@dataclass(frozen=True)
class CheckRunView:
    """What the `trunkline/queue` check run on the entry's head SHA should say."""

    head_sha: str
    status: CheckRunStatus
    title: str
    summary: str


def check_run_views(state: QueueState, prs: Collection[int]) -> dict[int, CheckRunView]:
    """The check runs of the queued PRs among `prs`, in O(entries + builds) plus rendering."""
    own = {pr: build for build in state.builds for pr in build.prs}
    views = {}
    for position, entry in enumerate(state.entries, start=1):
        if entry.pr in prs:
            views[entry.pr] = _view(_explain(state, entry, position, own.get(entry.pr)))
    return views


def check_run_view(state: QueueState, pr: int) -> CheckRunView | None:
    explanation = explain(state, pr)
    return None if explanation is None else _view(explanation)


def _view(explanation: Explanation) -> CheckRunView:
    waiting = explanation.state in (EntryState.WAITING, EntryState.QUEUED)
    status = CheckRunStatus.QUEUED if waiting else CheckRunStatus.IN_PROGRESS
    title = f"#{explanation.position} in the queue: {explanation.state}"
    return CheckRunView(explanation.head_sha, status, title, render_markdown(explanation))


def check_run_inputs(state: QueueState) -> dict[int, object]:
    """Per queued PR, everything its check run text depends on, in O(entries + builds).

    Equal inputs mean an equal check run, so the engine renders only the check runs whose
    inputs changed (and posts those whose text did change). The queue's length is not an
    input on purpose: a PR joining the back of the queue changes no one else's check run.
    """
    own = {pr: build for build in state.builds for pr in build.prs}
    slots = tuple((b.build_id, b.prs) for b in state.builds)
    checks = state.config.required_checks
    return {
        entry.pr: (entry, position, own.get(entry.pr) or slots, checks)
        for position, entry in enumerate(state.entries, start=1)
    }


def describe_queue(state: QueueState) -> tuple[Explanation, ...]:
    """Every entry in queue order (the dashboard's queue table)."""
    own = {pr: build for build in state.builds for pr in build.prs}
    return tuple(
        _explain(state, entry, position, own.get(entry.pr))
        for position, entry in enumerate(state.entries, start=1)
    )
