"""The three per-PR gates of the merge queue, evaluated on one PR head SHA.

Pure; performs no I/O. `evaluate_gates(inputs)` turns what a runner read (the policy
evaluation of the PR's real diff, the subsystems whose locks the PR's work item holds, the
reviewer agent's verdicts and the recorded human approvals) into the `GateReport`s of a
`GatesUpdated` event, each with a detail a human can act on:

- **scope**: every subsystem the diff touches is among the held lock subsystems; the detail
  lists what is outside. A file list that was cut off fails (unknown paths are unknown scope).
- **review**: the reviewer agent's verdict for exactly this SHA is `approve`; a verdict for
  another SHA does not count, `request_changes` / `escalate` / none fail with why.
- **approval**: the humans the risk level requires approved exactly this SHA. Approvals for
  other SHAs, the bot itself, any bot account (`[bot]` login or a Bot-typed account) and,
  unless `allow_requester`, the requester never count. `from: owners` means the owners of the
  touched subsystems; a listed team `@org/team` counts an approver when `team_members` lists
  them as a member of it (team membership is not looked up; see docs/queue-gates.md).
  `required` distinct eligible approvers are needed.

Logins are compared case-insensitively, as GitHub does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from trunkline.policies.evaluation import Evaluation
from trunkline.queue.events import GateReport, GatesUpdated
from trunkline.queue.model import Gate


class ReviewerVerdict(StrEnum):
    """The reviewer agent's verdict (the values of `trunkline.agents.contracts.Verdict`)."""

    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    ESCALATE = "escalate"


class ApprovalSource(StrEnum):
    GITHUB_REVIEW = "github_review"  # a GitHub review APPROVED with commit_id == sha
    COMMAND = "command"  # `/trunkline approve` recorded for the head SHA it was given at


@dataclass(frozen=True)
class AgentVerdict:
    """A reviewer-agent verdict on exactly one commit SHA."""

    sha: str
    verdict: ReviewerVerdict
    summary: str = ""


@dataclass(frozen=True)
class RecordedApproval:
    """A human's approval of one SHA, as recorded in the store's `approvals` table."""

    user: str
    sha: str
    source: ApprovalSource
    is_bot: bool = False  # the account is a Bot (when the recorder knew its type)


@dataclass(frozen=True)
class GateInputs:
    """Everything the gates of one PR head SHA depend on."""

    pr: int
    head_sha: str
    evaluation: Evaluation  # the policy evaluation of the PR's diff at head_sha
    held_subsystems: tuple[str, ...] | None  # None: no work item holds locks for this PR
    requester: str | None  # who asked for the work (the author); None: unknown
    bot_login: str | None  # trunkline's own login, e.g. "trunkline[bot]"
    verdicts: tuple[AgentVerdict, ...] = ()
    approvals: tuple[RecordedApproval, ...] = ()
    team_members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    diff_truncated: bool = False  # the file list was cut off (GitHub lists at most 3000)


def is_bot_account(login: str, bot_login: str | None, *, is_bot: bool = False) -> bool:
    """The bot itself or any bot account: never a human approver."""
    lowered = login.lower()
    if bot_login is not None and lowered == bot_login.lower():
        return True
    return is_bot or lowered.endswith("[bot]")


def _short(sha: str) -> str:
    return sha[:7]


def _names(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(items) if items else "none"


# -- scope -------------------------------------------------------------------------------------


def scope_gate(inputs: GateInputs) -> GateReport:
    touched = inputs.evaluation.subsystem_names
    if inputs.diff_truncated:
        return GateReport(
            Gate.SCOPE,
            False,
            f"the diff at {_short(inputs.head_sha)} has more files than GitHub lists, so its "
            "subsystems cannot all be known; split the pull request",
        )
    if inputs.held_subsystems is None:
        return GateReport(
            Gate.SCOPE,
            False,
            f"no ownership locks are held for #{inputs.pr}; the diff at "
            f"{_short(inputs.head_sha)} touches {_names(touched)}",
        )
    held = set(inputs.held_subsystems)
    outside = tuple(name for name in touched if name not in held)
    if outside:
        return GateReport(
            Gate.SCOPE,
            False,
            f"the diff at {_short(inputs.head_sha)} touches subsystems outside the held locks: "
            f"{_names(outside)} (held: {_names(sorted(held))}); "
            f"paths: {_paths_of(inputs.evaluation, outside)}",
        )
    return GateReport(
        Gate.SCOPE,
        True,
        f"the diff at {_short(inputs.head_sha)} touches {_names(touched)}, "
        f"all within the held locks ({_names(sorted(held))})",
    )


def _paths_of(evaluation: Evaluation, subsystems: tuple[str, ...], limit: int = 10) -> str:
    wanted = set(subsystems)
    paths = [route.path for route in evaluation.paths if wanted.intersection(route.subsystems)]
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


# -- review ------------------------------------------------------------------------------------


def review_gate(inputs: GateInputs) -> GateReport:
    sha = inputs.head_sha
    mine = [v for v in inputs.verdicts if v.sha == sha]
    if not mine:
        others = sorted({_short(v.sha) for v in inputs.verdicts})
        stale = f" (verdicts exist for {', '.join(others)} only)" if others else ""
        return GateReport(Gate.REVIEW, False, f"no reviewer verdict for {_short(sha)} yet{stale}")
    latest = mine[-1]  # verdicts are given oldest first: the newest for this SHA decides
    summary = f": {latest.summary}" if latest.summary else ""
    if latest.verdict is ReviewerVerdict.APPROVE:
        return GateReport(Gate.REVIEW, True, f"reviewer approved {_short(sha)}{summary}")
    if latest.verdict is ReviewerVerdict.ESCALATE:
        return GateReport(
            Gate.REVIEW, False, f"reviewer escalated {_short(sha)} to a human{summary}"
        )
    return GateReport(Gate.REVIEW, False, f"reviewer requested changes on {_short(sha)}{summary}")


# -- approval ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalTally:
    """Who approved this SHA, sorted into those who count and those who do not (and why)."""

    counted: tuple[str, ...]
    ignored: tuple[tuple[str, str], ...]  # (login, reason)
    stale: tuple[str, ...]  # logins that approved another SHA only


def tally_approvals(inputs: GateInputs) -> ApprovalTally:
    requirement = inputs.evaluation.approvals
    eligible = _eligible(requirement.approvers, inputs.team_members)
    requester = inputs.requester.lower() if inputs.requester else None
    counted: dict[str, str] = {}
    ignored: dict[str, str] = {}
    current_users: set[str] = set()
    for approval in inputs.approvals:
        if approval.sha != inputs.head_sha:
            continue
        login = approval.user
        key = login.lower()
        current_users.add(key)
        if key in counted or key in ignored:
            continue
        if is_bot_account(login, inputs.bot_login, is_bot=approval.is_bot):
            ignored[key] = f"{login} (a bot)"
        elif key == requester and not requirement.allow_requester:
            ignored[key] = f"{login} (the requester)"
        elif not eligible(key):
            who = "an owner of the touched subsystems" if requirement.from_owners else "listed"
            ignored[key] = f"{login} (not {who})"
        else:
            counted[key] = login
    stale = sorted(
        {a.user for a in inputs.approvals if a.sha != inputs.head_sha}
        - {a.user for a in inputs.approvals if a.user.lower() in current_users}
    )
    return ApprovalTally(
        counted=tuple(sorted(counted.values(), key=str.lower)),
        ignored=tuple(sorted(ignored.items())),
        stale=tuple(stale),
    )


def _eligible(approvers: tuple[str, ...], team_members: Mapping[str, frozenset[str]]) -> _Eligible:
    users = {a.lower() for a in approvers if "/" not in a}
    for team in (a for a in approvers if "/" in a):
        members = team_members.get(team) or team_members.get(team.lower()) or frozenset()
        users.update(member.lower().lstrip("@") for member in members)
    return _Eligible(frozenset(users))


@dataclass(frozen=True)
class _Eligible:
    users: frozenset[str]

    def __call__(self, login: str) -> bool:
        return login.lower() in self.users


def approval_gate(inputs: GateInputs) -> GateReport:
    requirement = inputs.evaluation.approvals
    sha = _short(inputs.head_sha)
    if requirement.required == 0:
        return GateReport(
            Gate.APPROVAL, True, f"risk {requirement.level}: no human approval required"
        )
    who = (
        f"owners of the touched subsystems ({_names(requirement.approvers)})"
        if requirement.from_owners
        else f"{_names(requirement.approvers)}"
    )
    if not requirement.approvers:
        return GateReport(
            Gate.APPROVAL,
            False,
            f"risk {requirement.level} needs {requirement.required} approval(s) from the owners "
            "of the touched subsystems, but they have no owners: nobody can approve; "
            "a human must add owners to the policy or CODEOWNERS",
        )
    tally = tally_approvals(inputs)
    parts = [
        f"risk {requirement.level}: {len(tally.counted)} of {requirement.required} "
        f"approval(s) of {sha} from {who}"
    ]
    if tally.counted:
        parts.append(f"approved by {', '.join(tally.counted)}")
    if tally.ignored:
        parts.append("not counted: " + ", ".join(reason for _, reason in tally.ignored))
    if tally.stale:
        parts.append(f"approvals of an earlier commit do not count: {', '.join(tally.stale)}")
    ok = len(tally.counted) >= requirement.required
    return GateReport(Gate.APPROVAL, ok, "; ".join(parts))


# -- all ---------------------------------------------------------------------------------------


def evaluate_gates(inputs: GateInputs) -> tuple[GateReport, ...]:
    """Scope, review and approval for `inputs.head_sha`, in that order."""
    return (scope_gate(inputs), review_gate(inputs), approval_gate(inputs))


def gates_updated(inputs: GateInputs) -> GatesUpdated:
    """The engine event carrying all three verdicts for the head SHA."""
    return GatesUpdated(inputs.pr, inputs.head_sha, evaluate_gates(inputs))
