"""Which reports count for a queue's required checks on one commit.

Pure; performs no I/O. A required check is satisfied by a check run **or** a commit status
(matched by its context) with that name on the exact SHA. A check pinned to an App
(`QueueConfig.check_apps`, policy `{name, app}`) counts only when that App reported it;
check runs posted by trunkline's own App never count (trunkline must not vouch for the
commits it merges). For each name the newest report wins: the check run with the highest id,
else the newest status of that context (GitHub lists statuses newest first). Statuses have
no App, so a pinned check ignores them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trunkline.github.model import CheckRun, CheckStatus, CommitStatus
from trunkline.queue.model import CheckConclusion, QueueConfig

STATUS_CONCLUSIONS = {
    "success": CheckConclusion.SUCCESS,
    "failure": CheckConclusion.FAILURE,
    "error": CheckConclusion.FAILURE,
}


@dataclass(frozen=True)
class CheckReport:
    """The newest countable report of one required check: `conclusion` None = still running."""

    name: str
    conclusion: CheckConclusion | None
    summary: str
    started: bool


def counts(config: QueueConfig, name: str, app_slug: str | None, own_app: str | None) -> bool:
    """Whether a check run `name` from `app_slug` may count for `config`'s required checks."""
    if name not in config.required_checks:
        return False
    if own_app is not None and app_slug == own_app:
        return False
    pinned = config.app_for(name)
    return pinned is None or pinned == app_slug


def status_counts(config: QueueConfig, context: str) -> bool:
    """Whether a commit status `context` may count (a check pinned to an App ignores them)."""
    return context in config.required_checks and config.app_for(context) is None


def conclusion_of(value: str | None) -> CheckConclusion:
    """A GitHub check conclusion as the engine's; anything unknown counts as a failure."""
    try:
        return CheckConclusion(value or "failure")
    except ValueError:
        return CheckConclusion.FAILURE


def status_report(context: str, state: str, description: str | None) -> CheckReport:
    """A commit status as a check report (`pending` is a started, unfinished check)."""
    if state == "pending":
        return CheckReport(context, None, description or "", True)
    return CheckReport(
        context, STATUS_CONCLUSIONS.get(state, CheckConclusion.FAILURE), description or "", True
    )


def required_reports(
    config: QueueConfig,
    runs: Iterable[CheckRun],
    statuses: Iterable[CommitStatus],
    *,
    sha: str,
    own_app: str | None,
) -> dict[str, CheckReport]:
    """The newest countable report of each required check on `sha` (missing names: none)."""
    found: dict[str, CheckReport] = {}
    newest: dict[str, int] = {}
    for run in runs:
        if run.head_sha != sha or not counts(config, run.name, run.app_slug, own_app):
            continue
        if run.id < newest.get(run.name, -1):
            continue
        newest[run.name] = run.id
        done = run.status is CheckStatus.COMPLETED and run.conclusion is not None
        found[run.name] = CheckReport(
            run.name,
            conclusion_of(run.conclusion.value) if done and run.conclusion else None,
            run.summary or run.title or "",
            run.status is not CheckStatus.QUEUED,
        )
    for status in statuses:  # newest first: the first of each context wins
        if status.context in found or not status_counts(config, status.context):
            continue
        found[status.context] = status_report(status.context, status.state, status.description)
    return found


def not_green(config: QueueConfig, reports: dict[str, CheckReport]) -> str | None:
    """Why the required checks are not all green on the commit, or None when they are."""
    problems = []
    for name in config.required_checks:
        report = reports.get(name)
        if report is None:
            problems.append(f"required check {name} has no report")
        elif report.conclusion is None:
            problems.append(f"required check {name} is still running")
        elif report.conclusion is not CheckConclusion.SUCCESS:
            what = f": {report.summary}" if report.summary else ""
            problems.append(f"required check {name} {report.conclusion}{what}")
    return "; ".join(problems) if problems else None
