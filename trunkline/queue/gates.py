"""The three per-PR gates of the merge queue, evaluated on one PR head SHA.

Pure; performs no I/O. `evaluate_gates(inputs)` turns what a runner read (the policy
evaluation of the PR's real diff, the subsystems whose locks the PR's work item holds, the
live lock holders of the touched subsystems, the reviewer agent's verdicts, the recorded
human approvals and who wrote the PR's commits) into the `GateReport`s of a `GatesUpdated`
event, each with a detail a human can act on:

- **scope**: a PR of a work item: every subsystem the diff touches is among the held lock
  subsystems; the detail lists what is outside. A PR without a work item (a person's PR)
  takes no locks: it passes unless a touched subsystem is frozen (`max_active: 0`) or has
  all its slots held by others; the detail names the holders and what to do. A file list
  that was cut off fails (unknown paths are unknown scope).
- **review**: the reviewer agent's verdict for exactly this SHA is `approve`; a verdict for
  another SHA does not count, `request_changes` / `escalate` / none fail with why.
- **approval**: the humans the risk level requires approved exactly this SHA. Approvals for
  other SHAs, the bot itself, any bot account (`[bot]` login or a Bot-typed account), the
  requester (unless `allow_requester`) and anyone who wrote commits in the PR or took its
  work item over (contributors; `allow_requester` exempts the requester only) never count.
  `from: owners` means: **each** touched subsystem needs `required` approvals from its own
  owners (one subsystem's owner never stands in for another's); a named list is one group.
  A listed team `@org/team` counts an approver when `team_members` lists them as a member
  of it (team membership is not looked up; see docs/queue-gates.md).

Logins are compared case-insensitively, as GitHub does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from trunkline.locks.holders import describe_holder, parse_holder
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
class SubsystemHolders:
    """The live lock holders of one touched subsystem and how many it allows at once."""

    subsystem: str
    holders: tuple[str, ...]
    max_active: int


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
    # People who are not independent of this SHA, with why: the authors and committers of its
    # commits, the human who took the work item over.
    contributors: tuple[tuple[str, str], ...] = ()
    # For a PR without a work item: the live holders of the touched subsystems.
    lock_holders: tuple[SubsystemHolders, ...] = ()


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
        return _unowned_scope(inputs)
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


def _unowned_scope(inputs: GateInputs) -> GateReport:
    """A PR without a work item takes no locks; it must not step on a subsystem the policy
    has frozen or whose slots other holders fill."""
    touched = inputs.evaluation.subsystem_names
    sha = _short(inputs.head_sha)
    own = inputs.requester.lower() if inputs.requester else None
    known = {entry.subsystem: entry for entry in inputs.lock_holders}
    blocked: list[str] = []
    for name in touched:
        entry = known.get(name)
        if entry is None:
            continue
        others = tuple(h for h in entry.holders if (parse_holder(h).login or "").lower() != own)
        if entry.max_active == 0:
            blocked.append(f"{name} is frozen by the policy (max_active: 0)")
        elif len(others) >= entry.max_active:
            blocked.append(f"{name} is held by {', '.join(describe_holder(h) for h in others)}")
    if blocked:
        return GateReport(
            Gate.SCOPE,
            False,
            f"#{inputs.pr} has no work item, so it holds no ownership locks, and the diff at "
            f"{sha} touches subsystems it may not change now: {'; '.join(blocked)}. "
            "Wait until the holder merges or releases it (or a maintainer unfreezes it), "
            "then push or comment `/trunkline explain` to check again; or coordinate with "
            "the holder",
        )
    return GateReport(
        Gate.SCOPE,
        True,
        f"#{inputs.pr} has no work item (a person's pull request): it holds no locks, and "
        f"no other holder fills the subsystems the diff at {sha} touches "
        f"({_names(touched)})",
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
class ApprovalGroup:
    """One requirement of the approval gate: `required` approvals from `approvers`. With
    `from: owners` there is one group per touched subsystem (`subsystem` names it); a named
    list of approvers is one group (`subsystem` None)."""

    subsystem: str | None
    approvers: tuple[str, ...]
    required: int
    counted: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.approvers) and len(self.counted) >= self.required


@dataclass(frozen=True)
class ApprovalTally:
    """Who approved this SHA, sorted into those who count and those who do not (and why)."""

    counted: tuple[str, ...]  # independent approvers eligible in at least one group
    ignored: tuple[tuple[str, str], ...]  # (login, reason)
    stale: tuple[str, ...]  # logins that approved another SHA only
    groups: tuple[ApprovalGroup, ...] = ()

    @property
    def ok(self) -> bool:
        return all(group.ok for group in self.groups)


def approval_groups(evaluation: Evaluation) -> tuple[ApprovalGroup, ...]:
    """The requirements the risk level sets (none when it requires no approval)."""
    requirement = evaluation.approvals
    if requirement.required == 0:
        return ()
    if not requirement.from_owners:
        return (ApprovalGroup(None, requirement.approvers, requirement.required),)
    return tuple(
        ApprovalGroup(touch.name, touch.owners, requirement.required)
        for touch in evaluation.subsystems
    )


def tally_approvals(inputs: GateInputs) -> ApprovalTally:
    requirement = inputs.evaluation.approvals
    groups = approval_groups(inputs.evaluation)
    eligible = [_eligible(group.approvers, inputs.team_members) for group in groups]
    requester = inputs.requester.lower() if inputs.requester else None
    contributors: dict[str, str] = {}
    for login, why in inputs.contributors:
        contributors.setdefault(login.lower(), why)
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
        exempt = key == requester and requirement.allow_requester
        if is_bot_account(login, inputs.bot_login, is_bot=approval.is_bot):
            ignored[key] = f"{login} (a bot)"
        elif key == requester and not exempt:
            ignored[key] = f"{login} (the requester)"
        elif key in contributors and not exempt:
            ignored[key] = f"{login} ({contributors[key]}: not an independent approver)"
        elif not any(check(key) for check in eligible):
            who = "an owner of the touched subsystems" if requirement.from_owners else "listed"
            ignored[key] = f"{login} (not {who})"
        else:
            counted[key] = login
    stale = sorted(
        {a.user for a in inputs.approvals if a.sha != inputs.head_sha}
        - {a.user for a in inputs.approvals if a.user.lower() in current_users}
    )
    by_name = sorted(counted.values(), key=str.lower)
    tallied = tuple(
        replace(group, counted=tuple(login for login in by_name if check(login)))
        for group, check in zip(groups, eligible, strict=True)
    )
    return ApprovalTally(
        counted=tuple(by_name),
        ignored=tuple(sorted(ignored.items())),
        stale=tuple(stale),
        groups=tallied,
    )


def eligible_logins(
    approvers: tuple[str, ...], team_members: Mapping[str, frozenset[str]]
) -> frozenset[str]:
    """The lower-cased logins `approvers` names: users as written, teams (`org/team`)
    through `team_members` (a team nobody configured names no one)."""
    users = {a.lower().lstrip("@") for a in approvers if "/" not in a}
    for team in (a for a in approvers if "/" in a):
        members = team_members.get(team) or team_members.get(team.lower()) or frozenset()
        users.update(member.lower().lstrip("@") for member in members)
    return frozenset(users)


def _eligible(approvers: tuple[str, ...], team_members: Mapping[str, frozenset[str]]) -> _Eligible:
    return _Eligible(eligible_logins(approvers, team_members))


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
    tally = tally_approvals(inputs)
    ownerless = [group.subsystem or "?" for group in tally.groups if not group.approvers]
    if not tally.groups or (ownerless and not requirement.from_owners):
        return GateReport(
            Gate.APPROVAL,
            False,
            f"risk {requirement.level} needs {requirement.required} approval(s) but names no "
            "approvers: nobody can approve; a human must fix the policy",
        )
    if requirement.from_owners:
        parts = [
            f"risk {requirement.level}: each touched subsystem needs {requirement.required} "
            f"approval(s) of {sha} from its own owners: "
            + ", ".join(_group_text(group) for group in tally.groups)
        ]
        if ownerless:
            parts.append(
                f"{_names(ownerless)} {'has' if len(ownerless) == 1 else 'have'} no owners, so "
                "nobody can approve it; a human must add owners to the policy or CODEOWNERS"
            )
    else:
        (group,) = tally.groups
        parts = [
            f"risk {requirement.level}: {len(group.counted)} of {requirement.required} "
            f"approval(s) of {sha} from {_names(group.approvers)}"
        ]
        if group.counted:
            parts.append(f"approved by {', '.join(group.counted)}")
    if tally.ignored:
        parts.append("not counted: " + ", ".join(reason for _, reason in tally.ignored))
    if tally.stale:
        parts.append(f"approvals of an earlier commit do not count: {', '.join(tally.stale)}")
    return GateReport(Gate.APPROVAL, tally.ok, "; ".join(parts))


def _group_text(group: ApprovalGroup) -> str:
    mark = "✓" if group.ok else "✗"
    approved = f"; approved by {', '.join(group.counted)}" if group.counted else ""
    return (
        f"{group.subsystem} {mark} {len(group.counted)} of {group.required} "
        f"(owners: {_names(group.approvers)}{approved})"
    )


# -- all ---------------------------------------------------------------------------------------


def evaluate_gates(inputs: GateInputs) -> tuple[GateReport, ...]:
    """Scope, review and approval for `inputs.head_sha`, in that order."""
    return (scope_gate(inputs), review_gate(inputs), approval_gate(inputs))


def gates_updated(inputs: GateInputs) -> GatesUpdated:
    """The engine event carrying all three verdicts for the head SHA."""
    return GatesUpdated(inputs.pr, inputs.head_sha, evaluate_gates(inputs))
