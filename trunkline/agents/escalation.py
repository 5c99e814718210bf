"""Performs what an escalated (or taken-over) `WorkOutcome` asks of GitHub and git.

Performs I/O through the GitHub port and the workspace only; the decisions (what to push,
the comment's text, which label, whom to mention) are pure functions of the outcome and the
policy (`escalation_comment`, `comment_key`). The side effects, in order:

1. push the work so far (the worktree's HEAD) to the item's branch, without force, with a
   fresh installation token for that one git command — only when the branch has commits
   beyond its base. A push the remote refuses (someone pushed to the branch meanwhile) is
   reported in the comment instead of failing: nothing is lost, the commits stay in the
   worktree. A push that fails otherwise (the remote unreachable, a git error) does not hold
   back steps 2 and 3: they are done with the comment saying the push is tried again, then
   the error propagates (a retry pushes and edits the comment's branch line);
2. upsert the item's escalation comment (reason, spend against each cap, what was done,
   next steps, the branch, and a line mentioning the policy's notify list);
3. add the policy's escalation label (escalations only; a takeover needs no label).

Idempotent: the comment is a sticky comment whose key is derived from the outcome
(`agents.<kind>.<reason>.<occurrence>`: the report's `occurrence` when given — the pipeline
passes the run and version that decided the escalation —, else the head), so performing the
same escalation twice edits the same comment (one comment), pushing the same SHA again is a
no-op, and adding a label the issue has changes nothing. A *new* escalation (another reason
or occurrence; another head without one) gets a new comment, so its mentions notify (GitHub
notifies mentions only when a comment is created, not edited).
Retryable errors (`GitTransportError`, `RateLimitedError`, `GitHubUnavailableError`)
propagate to the job runner, which runs the whole thing again.

Callers other than the agents runtime (the dispatch pipeline, whose escalations are decided
by its state machine, not by a `WorkOutcome`) pass an `EscalationReport`: the same facts
(item, kind, reason code, the comment's markdown, the head, the occurrence) without the
agents' types; and
may pass their own `push` (e.g. a push that expects the branch's old SHA). Any push is
never forced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trunkline.agents.outcome import OutcomeKind, WorkOutcome
from trunkline.github.port import GitHubPort
from trunkline.policies.model import Escalation
from trunkline.workspace.errors import PushRejectedError
from trunkline.workspace.model import RepositorySpec, Worktree
from trunkline.workspace.workspace import Workspace

log = logging.getLogger(__name__)

TokenSource = Callable[[], str | None]


@dataclass(frozen=True)
class EscalationPolicy:
    """The policy's `escalation` section as the performer needs it."""

    label: str = "needs-human"
    notify: tuple[str, ...] = ()

    @classmethod
    def of(cls, section: Escalation) -> EscalationPolicy:
        return cls(section.label, tuple(section.notify))


@dataclass(frozen=True)
class PushReport:
    branch: str
    sha: str | None  # what the branch now points at (None: nothing to push)
    rejected: bool = False
    failed: str | None = None  # the push (or preparing it) failed: the error, tried again


@dataclass(frozen=True)
class EscalationResult:
    push: PushReport
    comment_id: int
    comment_key: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class EscalationReport:
    """What an escalation (or takeover) tells GitHub, independent of who decided it."""

    work_item: str
    kind: OutcomeKind
    reason: str  # a code such as `budget_usd`; "none" for a takeover
    comment: str  # markdown: reason, spend, what was done, next steps
    head_sha: str | None  # the worktree's HEAD (the work so far)
    #: What makes this escalation a new one (the pipeline: the run and version that decided
    #: it); None: the head. Part of the comment's key.
    occurrence: str | None = None

    @classmethod
    def of(cls, outcome: WorkOutcome) -> EscalationReport:
        reason = outcome.reason.value if outcome.reason is not None else "none"
        return cls(outcome.work_item, outcome.kind, reason, outcome.comment, outcome.head_sha)


class BranchPush(Protocol):
    """Pushes the worktree's HEAD to its branch, never forced; returns the pushed SHA and
    raises `PushRejectedError` when the remote refuses."""

    def __call__(self, worktree: Worktree) -> str: ...


def failure_note(error: BaseException) -> str:
    """A failed push's error as the comment says it: its type and first line, bounded."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200].rstrip()


def mention(principal: str) -> str:
    return principal if principal.startswith("@") else f"@{principal}"


def _report(outcome: WorkOutcome | EscalationReport) -> EscalationReport:
    return outcome if isinstance(outcome, EscalationReport) else EscalationReport.of(outcome)


def comment_key(outcome: WorkOutcome | EscalationReport) -> str:
    """The sticky key of this outcome's comment: same outcome, same comment. Keyed by the
    report's `occurrence` when it has one (then independent of git), else by the head."""
    report = _report(outcome)
    occurrence = report.occurrence or (report.head_sha or "nohead")[:12]
    return f"agents.{report.kind.value}.{report.reason}.{occurrence}"


def escalation_comment(
    outcome: WorkOutcome | EscalationReport, push: PushReport, notify: Sequence[str] = ()
) -> str:
    """The comment's markdown: the outcome's own comment, then where the work is, then cc."""
    report = _report(outcome)
    lines = [report.comment.rstrip("\n"), ""]
    if push.failed is not None:
        lines.append(
            f"**Branch:** the work so far could not be pushed to `{push.branch}` yet "
            f"({push.failed}); it is tried again and this comment updated."
        )
    elif push.rejected:
        lines.append(
            f"**Branch:** the push to `{push.branch}` was refused (the branch moved); the "
            f"work so far is the worktree's `{(report.head_sha or '')[:12]}`."
        )
    elif push.sha is not None:
        lines.append(f"**Branch:** the work so far is on `{push.branch}` at `{push.sha[:12]}`.")
    else:
        lines.append(f"**Branch:** nothing was committed; `{push.branch}` was not pushed.")
    if notify:
        lines.extend(["", "cc " + " ".join(mention(p) for p in notify)])
    return "\n".join(lines) + "\n"


def push_work(
    workspace: Workspace,
    spec: RepositorySpec,
    worktree: Worktree,
    outcome: WorkOutcome | EscalationReport,
    token: TokenSource,
    push: BranchPush | None = None,
) -> PushReport:
    """Push HEAD to the item's branch when there is work beyond the base (never forced)."""
    report = _report(outcome)
    head = report.head_sha
    if head is None or head == worktree.base_sha:
        return PushReport(worktree.branch, None)
    try:
        sha = push(worktree) if push is not None else workspace.push_branch(spec, worktree, token())
    except PushRejectedError:
        log.warning(
            "escalation push refused",
            extra={"work_item": report.work_item, "branch": worktree.branch},
        )
        return PushReport(worktree.branch, None, rejected=True)
    return PushReport(worktree.branch, sha)


def perform_escalation(
    outcome: WorkOutcome | EscalationReport,
    *,
    github: GitHubPort,
    workspace: Workspace,
    spec: RepositorySpec,
    worktree: Worktree,
    issue_number: int,
    token: TokenSource,
    policy: EscalationPolicy,
    push: BranchPush | None = None,
) -> EscalationResult:
    """Push, comment, label (see the module docstring). Only for escalated or taken-over
    outcomes; a completed one goes to the pull request flow instead."""
    report = _report(outcome)
    if report.kind is OutcomeKind.COMPLETED:
        raise ValueError("a completed outcome is not escalated; open the pull request instead")
    try:
        pushed = push_work(workspace, spec, worktree, report, token, push)
    except Exception as error:  # git trouble never holds back the comment and its mentions
        failed = PushReport(worktree.branch, None, failed=failure_note(error))
        post_escalation(
            report,
            failed,
            github=github,
            repo=spec.full_name,
            issue_number=issue_number,
            policy=policy,
        )
        raise
    return post_escalation(
        report,
        pushed,
        github=github,
        repo=spec.full_name,
        issue_number=issue_number,
        policy=policy,
    )


def post_escalation(
    outcome: WorkOutcome | EscalationReport,
    pushed: PushReport,
    *,
    github: GitHubPort,
    repo: str,
    issue_number: int,
    policy: EscalationPolicy,
) -> EscalationResult:
    """The GitHub half of an escalation: upsert the comment (mentioning the notify list),
    add the label (escalations only). Idempotent: the comment is sticky (`comment_key`)."""
    report = _report(outcome)
    escalated = report.kind is OutcomeKind.ESCALATED
    notify = policy.notify if escalated else ()
    key = comment_key(report)
    comment = github.upsert_sticky_comment(
        repo, issue_number, key, escalation_comment(report, pushed, notify)
    )
    labels: tuple[str, ...] = ()
    if escalated:
        labels = github.add_labels(repo, issue_number, [policy.label])
    log.info(
        "work item escalation performed",
        extra={
            "work_item": report.work_item,
            "kind": report.kind.value,
            "reason": report.reason,
            "pushed": pushed.sha,
            "comment_id": comment.id,
        },
    )
    return EscalationResult(pushed, comment.id, key, labels)
