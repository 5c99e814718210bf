"""Gate check runs on a commit: `trunkline/scope`, `trunkline/review`, `trunkline/approval`
on a PR head, and `trunkline/gate` on a merge group's head.

`render_gate_check` and `render_group_check` are pure (text in, text out); `post_check` and
`post_gate_checks` perform GitHub I/O through the `GitHubPort`. Posting is idempotent by
(name, SHA): the bot's existing run of that name on that SHA is updated only when its
conclusion, title or summary differ, otherwise a completed run is created, so at-least-once
delivery never piles up duplicate runs. The `trunkline/queue` check run is the queue
runner's (engine effect `PostCheckRun`), not posted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trunkline.github.model import (
    CheckConclusion,
    CheckRun,
    CheckRunOutput,
    CheckRunRequest,
    CheckRunUpdate,
    CheckStatus,
)
from trunkline.github.port import GitHubPort
from trunkline.queue.events import GateReport
from trunkline.queue.model import Gate

GATE_CHECK_NAMES: dict[Gate, str] = {
    Gate.SCOPE: "trunkline/scope",
    Gate.REVIEW: "trunkline/review",
    Gate.APPROVAL: "trunkline/approval",
}
GROUP_CHECK_NAME = "trunkline/gate"
SUMMARY_LIMIT = 60_000  # GitHub caps output.summary at 65,535 characters

_TITLES_OK = {
    Gate.SCOPE: "Touched subsystems are in scope",
    Gate.REVIEW: "Reviewer approved this commit",
    Gate.APPROVAL: "Approvals satisfied",
}
_TITLES_FAILED = {
    Gate.SCOPE: "Touches subsystems out of scope",
    Gate.REVIEW: "No approving review of this commit",
    Gate.APPROVAL: "Approvals missing",
}


@dataclass(frozen=True)
class CheckContent:
    name: str
    conclusion: CheckConclusion
    title: str
    summary: str


def render_gate_check(report: GateReport, head_sha: str) -> CheckContent:
    """The check run of one gate on `head_sha`: success or failure, and why."""
    titles = _TITLES_OK if report.ok else _TITLES_FAILED
    mark = "✅" if report.ok else "❌"
    summary = (
        f"{mark} **{report.gate}** on `{head_sha[:7]}`: {report.detail or 'no detail'}\n\n"
        "Gates are evaluated on this exact commit; a push needs them again."
    )
    return CheckContent(
        GATE_CHECK_NAMES[report.gate],
        CheckConclusion.SUCCESS if report.ok else CheckConclusion.FAILURE,
        titles[report.gate],
        _clip(summary),
    )


@dataclass(frozen=True)
class GroupMember:
    """One PR of a merge group and its gates at the SHA the group contains."""

    pr: int
    sha: str
    reports: tuple[GateReport, ...]

    @property
    def ok(self) -> bool:
        return bool(self.reports) and all(report.ok for report in self.reports)


def render_group_check(members: Sequence[GroupMember], problem: str | None = None) -> CheckContent:
    """`trunkline/gate` for a merge group: success only if every PR passes every gate."""
    ok = problem is None and bool(members) and all(m.ok for m in members)
    failing = [m for m in members if not m.ok]
    if problem is not None:
        title = "Cannot check this merge group"
    elif ok:
        title = f"All {len(members)} pull request(s) pass scope, review and approval"
    else:
        title = f"{len(failing)} of {len(members)} pull request(s) fail a gate"
    lines = [problem, ""] if problem is not None else []
    for member in members:
        lines.append(f"### #{member.pr} at `{member.sha[:7]}` {'✅' if member.ok else '❌'}")
        lines += [f"- {'✅' if r.ok else '❌'} {r.gate}: {r.detail}" for r in member.reports]
        lines.append("")
    return CheckContent(
        GROUP_CHECK_NAME,
        CheckConclusion.SUCCESS if ok else CheckConclusion.FAILURE,
        title,
        _clip("\n".join(lines).strip() or title),
    )


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _is_ours(run: CheckRun, bot_login: str | None) -> bool:
    if run.app_slug is None or bot_login is None:
        return True
    return run.app_slug == bot_login.removesuffix("[bot]")


def post_check(
    github: GitHubPort, repo: str, sha: str, content: CheckContent, bot_login: str | None
) -> CheckRun:
    """Create or update the bot's completed run `content.name` on `sha` (idempotent)."""
    output = CheckRunOutput(content.title, content.summary)
    existing = [
        run
        for run in github.list_check_runs(repo, sha)
        if run.name == content.name and _is_ours(run, bot_login)
    ]
    if existing:
        run = max(existing, key=lambda r: r.id)
        same = (
            run.status is CheckStatus.COMPLETED
            and run.conclusion is content.conclusion
            and run.title == github.as_written(content.title)
            and run.summary == github.as_written(content.summary)
        )
        if same:
            return run
        return github.update_check_run(
            repo,
            run.id,
            CheckRunUpdate(
                status=CheckStatus.COMPLETED, conclusion=content.conclusion, output=output
            ),
        )
    return github.create_check_run(
        repo,
        CheckRunRequest(
            name=content.name,
            head_sha=sha,
            status=CheckStatus.COMPLETED,
            conclusion=content.conclusion,
            output=output,
        ),
    )


def post_gate_checks(
    github: GitHubPort,
    repo: str,
    head_sha: str,
    reports: Sequence[GateReport],
    bot_login: str | None,
) -> tuple[CheckRun, ...]:
    return tuple(
        post_check(github, repo, head_sha, render_gate_check(report, head_sha), bot_login)
        for report in reports
    )
