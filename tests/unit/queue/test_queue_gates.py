"""The pure gates: scope, review, approval, one table per rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.policies.evaluation import Change, CompiledPolicy, Evaluation
from trunkline.policies.model import Policy
from trunkline.queue.gates import (
    AgentVerdict,
    ApprovalSource,
    GateInputs,
    RecordedApproval,
    ReviewerVerdict,
    SubsystemHolders,
    approval_gate,
    evaluate_gates,
    gates_updated,
    is_bot_account,
    review_gate,
    scope_gate,
    tally_approvals,
)
from trunkline.queue.model import Gate

HEAD = "a" * 40
OLD = "b" * 40
BOT = "trunkline[bot]"

POLICY = Policy.model_validate(
    {
        "subsystems": {
            "api": {"paths": ["api/**"], "owners": ["alice", "@acme/api-team"]},
            "docs": {"paths": ["docs/**"], "owners": ["dora"]},
            "web": {"paths": ["web/**"]},  # no owners
        },
        "risk": {"high": {"paths": ["api/secrets/**"]}, "medium": {"paths": ["docs/**"]}},
        "approvals": {
            "medium": {"required": 1},
            "high": {"required": 2, "from": ["alice", "erin", "@acme/security"]},
        },
    }
)
COMPILED = CompiledPolicy(POLICY)


def evaluation(*paths: str) -> Evaluation:
    return COMPILED.evaluate(Change(modified=paths))


def inputs(paths: tuple[str, ...] = ("api/x.py",), **changes: Any) -> GateInputs:
    base = GateInputs(
        pr=7,
        head_sha=HEAD,
        evaluation=evaluation(*paths),
        held_subsystems=("api", "docs"),
        requester="rita",
        bot_login=BOT,
    )
    return replace(base, **changes)


def approved(
    *users: str, sha: str = HEAD, source: ApprovalSource = ApprovalSource.GITHUB_REVIEW
) -> tuple[RecordedApproval, ...]:
    return tuple(RecordedApproval(user, sha, source) for user in users)


# -- scope -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "held", "ok", "mentions"),
    [
        (("api/x.py",), ("api",), True, ["api"]),
        (("api/x.py", "docs/a.md"), ("api", "docs"), True, ["api, docs"]),
        (("api/x.py", "docs/a.md"), ("api",), False, ["outside the held locks: docs", "docs/a.md"]),
        (("src/main.py",), ("api",), False, ["default", "src/main.py"]),
        (("api/x.py",), (), False, ["outside the held locks: api", "held: none"]),
        (("api/x.py",), None, True, ["no work item", "no other holder fills", "(api)"]),
        (("api/x.py",), ("api", "docs", "web"), True, ["all within the held locks"]),
    ],
)
def test_scope_gate(
    paths: tuple[str, ...], held: tuple[str, ...] | None, ok: bool, mentions: list[str]
) -> None:
    report = scope_gate(inputs(paths, held_subsystems=held))
    assert report.gate is Gate.SCOPE
    assert report.ok is ok
    for text in mentions:
        assert text in report.detail


def test_scope_fails_when_the_file_list_was_cut_off() -> None:
    report = scope_gate(inputs(("api/x.py",), held_subsystems=("api",), diff_truncated=True))
    assert not report.ok
    assert "more files than GitHub lists" in report.detail


# -- review ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "ok", "mentions"),
    [
        ((), False, ["no reviewer verdict for aaaaaaa"]),
        (((OLD, ReviewerVerdict.APPROVE),), False, ["verdicts exist for bbbbbbb only"]),
        (((HEAD, ReviewerVerdict.APPROVE),), True, ["reviewer approved aaaaaaa"]),
        (((HEAD, ReviewerVerdict.REQUEST_CHANGES),), False, ["requested changes"]),
        (((HEAD, ReviewerVerdict.ESCALATE),), False, ["escalated"]),
        # The newest verdict for this SHA decides.
        (((HEAD, ReviewerVerdict.APPROVE), (HEAD, ReviewerVerdict.REQUEST_CHANGES)), False, []),
        (((HEAD, ReviewerVerdict.REQUEST_CHANGES), (HEAD, ReviewerVerdict.APPROVE)), True, []),
        (((HEAD, ReviewerVerdict.APPROVE), (OLD, ReviewerVerdict.ESCALATE)), True, []),
    ],
)
def test_review_gate(
    verdicts: tuple[tuple[str, ReviewerVerdict], ...], ok: bool, mentions: list[str]
) -> None:
    given = tuple(AgentVerdict(sha, verdict, "looks fine") for sha, verdict in verdicts)
    report = review_gate(inputs(verdicts=given))
    assert report.gate is Gate.REVIEW
    assert report.ok is ok
    for text in mentions:
        assert text in report.detail


# -- approval ----------------------------------------------------------------------------------

MEDIUM = ("docs/a.md",)  # medium risk: 1 approval from the owners of docs (dora)
HIGH = ("api/secrets/k.py",)  # high risk: 2 from alice, erin, @acme/security
LOW = ("api/x.py",)  # low risk: no approvals


@pytest.mark.parametrize(
    ("case", "paths", "approvals", "changes", "ok", "mentions"),
    [
        ("low risk needs nobody", LOW, (), {}, True, ["no human approval required"]),
        ("missing", MEDIUM, (), {}, False, ["docs ✗ 0 of 1 (owners: dora)", "its own owners"]),
        ("owner approves head", MEDIUM, approved("dora"), {}, True, ["approved by dora"]),
        ("case-insensitive login", MEDIUM, approved("Dora"), {}, True, ["approved by Dora"]),
        (
            "stale sha",
            MEDIUM,
            approved("dora", sha=OLD),
            {},
            False,
            ["0 of 1", "earlier commit do not count: dora"],
        ),
        (
            "command approval counts like a review",
            MEDIUM,
            approved("dora", source=ApprovalSource.COMMAND),
            {},
            True,
            [],
        ),
        ("non-owner", MEDIUM, approved("mallory"), {}, False, ["mallory (not an owner"]),
        (
            "requester is not counted",
            MEDIUM,
            approved("dora"),
            {"requester": "dora"},
            False,
            ["dora (the requester)"],
        ),
        (
            "requester counts when allowed",
            MEDIUM,
            approved("dora"),
            {"requester": "dora", "allow_requester": True},
            True,
            [],
        ),
        ("the bot itself", MEDIUM, approved(BOT), {}, False, ["trunkline[bot] (a bot)"]),
        ("another bot", MEDIUM, approved("dependabot[bot]"), {}, False, ["(a bot)"]),
        (
            "bot-typed account without the suffix",
            MEDIUM,
            (RecordedApproval("robo", HEAD, ApprovalSource.GITHUB_REVIEW, is_bot=True),),
            {"owners": ("robo",)},
            False,
            ["robo (a bot)"],
        ),
        ("named list: one of two", HIGH, approved("alice"), {}, False, ["1 of 2"]),
        ("named list: two distinct", HIGH, approved("alice", "erin"), {}, True, ["2 of 2"]),
        (
            "same person twice is one approver",
            HIGH,
            approved("alice") + approved("alice", source=ApprovalSource.COMMAND),
            {},
            False,
            ["1 of 2"],
        ),
        (
            "owners of the subsystem are not named approvers",
            HIGH,
            approved("alice", "dora"),
            {},
            False,
            ["dora (not listed)"],
        ),
        (
            "team member counts via the mapping",
            HIGH,
            approved("alice", "sam"),
            {"teams": {"@acme/security": frozenset({"sam"})}},
            True,
            [],
        ),
        (
            "team without a mapping counts nobody",
            HIGH,
            approved("alice", "sam"),
            {},
            False,
            ["sam (not listed)"],
        ),
        (
            "owner team via mapping (from: owners)",
            ("api/x.py", "docs/a.md"),
            approved("tina", "dora"),
            {"teams": {"@acme/api-team": frozenset({"tina"})}},
            True,
            [],
        ),
        (
            "an api owner does not approve the docs part",
            ("api/x.py", "docs/a.md"),
            approved("tina"),
            {"teams": {"@acme/api-team": frozenset({"tina"})}},
            False,
            ["api ✓ 1 of 1", "docs ✗ 0 of 1"],
        ),
    ],
)
def test_approval_gate(
    case: str,
    paths: tuple[str, ...],
    approvals: tuple[RecordedApproval, ...],
    changes: dict[str, Any],
    ok: bool,
    mentions: list[str],
) -> None:
    given = inputs(paths, approvals=approvals)
    if "requester" in changes:
        given = replace(given, requester=changes["requester"])
    if "teams" in changes:
        given = replace(given, team_members=changes["teams"])
    requirement = given.evaluation.approvals
    if changes.get("allow_requester"):
        requirement = replace(requirement, allow_requester=True)
    if "owners" in changes:
        requirement = replace(requirement, approvers=changes["owners"])
    given = replace(given, evaluation=replace(given.evaluation, approvals=requirement))
    report = approval_gate(given)
    assert report.gate is Gate.APPROVAL
    assert report.ok is ok, (case, report.detail)
    for text in mentions:
        assert text in report.detail, (case, report.detail)


def test_owners_without_owners_nobody_can_approve() -> None:
    # web has no owners: dora owns docs only and cannot approve web's part of the change.
    report = approval_gate(inputs(("web/a.js", "docs/a.md"), approvals=approved("dora")))
    assert not report.ok
    assert "web has no owners, so nobody can approve it" in report.detail
    assert "docs ✓ 1 of 1" in report.detail
    no_owner_policy = Policy.model_validate(
        {"subsystems": {"web": {"paths": ["web/**"]}}, "approvals": {"low": {"required": 1}}}
    )
    lone = CompiledPolicy(no_owner_policy).evaluate(Change(modified=("web/a.js",)))
    report = approval_gate(inputs(evaluation=lone, approvals=approved("dora")))
    assert not report.ok
    assert "nobody can approve" in report.detail


OWNERS_POLICY = CompiledPolicy(
    Policy.model_validate(
        {
            "subsystems": {
                "api": {"paths": ["api/**"], "owners": ["alice", "olga"]},
                "docs": {"paths": ["docs/**"], "owners": ["dora", "olga"]},
            },
            "approvals": {"low": {"required": 1}},
        }
    )
)
BOTH = OWNERS_POLICY.evaluate(Change(modified=("api/x.py", "docs/a.md")))


@pytest.mark.parametrize(
    ("approvers", "ok", "mentions"),
    [
        # One subsystem's owners never approve another's part: each needs its own.
        (("alice",), False, ["api ✓ 1 of 1", "docs ✗ 0 of 1 (owners: dora, olga)"]),
        (("dora",), False, ["api ✗ 0 of 1", "docs ✓ 1 of 1"]),
        (("alice", "dora"), True, ["approved by alice)", "approved by dora)"]),
        # An owner of both subsystems approves both.
        (("olga",), True, ["api ✓ 1 of 1 (owners: alice, olga; approved by olga)"]),
        (("mallory", "alice"), False, ["mallory (not an owner"]),
    ],
)
def test_owners_approve_each_touched_subsystem_separately(
    approvers: tuple[str, ...], ok: bool, mentions: list[str]
) -> None:
    report = approval_gate(inputs(evaluation=BOTH, approvals=approved(*approvers)))
    assert report.ok is ok, report.detail
    for text in mentions:
        assert text in report.detail, report.detail
    tally = tally_approvals(inputs(evaluation=BOTH, approvals=approved(*approvers)))
    assert [group.subsystem for group in tally.groups] == ["api", "docs"]


@pytest.mark.parametrize(
    ("contributors", "requester", "allow", "ok", "mentions"),
    [
        ((), "rita", False, True, []),
        (
            (("dora", "authored commits in this pull request"),),
            "rita",
            False,
            False,
            ["dora (authored commits in this pull request: not an independent approver)"],
        ),
        (
            (("Dora", "took over the work item"),),
            "rita",
            False,
            False,
            ["dora (took over the work item"],
        ),
        # allow_requester lets the requester approve even their own commits ...
        ((("dora", "authored commits in this pull request"),), "dora", True, True, []),
        # ... but no other contributor.
        (
            (("dora", "committed to this pull request"),),
            "rita",
            True,
            False,
            ["committed to this pull request"],
        ),
        ((), "dora", False, False, ["dora (the requester)"]),
    ],
)
def test_contributors_are_not_independent_approvers(
    contributors: tuple[tuple[str, str], ...],
    requester: str,
    allow: bool,
    ok: bool,
    mentions: list[str],
) -> None:
    given = inputs(
        MEDIUM, approvals=approved("dora"), contributors=contributors, requester=requester
    )
    requirement = replace(given.evaluation.approvals, allow_requester=allow)
    given = replace(given, evaluation=replace(given.evaluation, approvals=requirement))
    report = approval_gate(given)
    assert report.ok is ok, report.detail
    for text in mentions:
        assert text in report.detail, report.detail


@pytest.mark.parametrize(
    ("holders", "ok", "mentions"),
    [
        ((), True, ["no work item", "(api)"]),
        ((SubsystemHolders("api", (), 1),), True, ["no other holder fills"]),
        (
            (SubsystemHolders("api", ("issue-12",), 1),),
            False,
            ["api is held by work item #12 (issue-12)", "Wait until the holder merges"],
        ),
        (
            (SubsystemHolders("api", ("human:bob",), 1),),
            False,
            ["api is held by @bob (took over a work item)"],
        ),
        (
            (SubsystemHolders("api", ("human:bob:issue-12",), 1),),
            False,
            ["api is held by @bob (took over work item #12)"],
        ),
        # A subsystem that allows two holders still has room for the person's change.
        ((SubsystemHolders("api", ("issue-12",), 2),), True, []),
        ((SubsystemHolders("api", ("issue-12", "issue-13"), 2),), False, ["issue-13"]),
        ((SubsystemHolders("api", (), 0),), False, ["api is frozen by the policy"]),
        # The requester's own takeover leases do not block their PR.
        ((SubsystemHolders("api", ("human:Rita",), 1),), True, []),
        ((SubsystemHolders("api", ("human:rita:issue-3",), 1),), True, []),
    ],
)
def test_scope_of_a_pr_without_a_work_item(
    holders: tuple[SubsystemHolders, ...], ok: bool, mentions: list[str]
) -> None:
    report = scope_gate(inputs(("api/x.py",), held_subsystems=None, lock_holders=holders))
    assert report.ok is ok, report.detail
    for text in mentions:
        assert text in report.detail, report.detail


def test_tally_sorts_counted_ignored_and_stale() -> None:
    tally = tally_approvals(
        inputs(
            MEDIUM,
            approvals=approved("dora", "rita", BOT) + approved("mallory", sha=OLD),
        )
    )
    assert tally.counted == ("dora",)
    assert [login for login, _ in tally.ignored] == ["rita", BOT]
    assert tally.stale == ("mallory",)


@pytest.mark.parametrize(
    ("login", "is_bot", "expected"),
    [
        ("trunkline[bot]", False, True),
        ("Trunkline[Bot]", False, True),
        ("renovate[bot]", False, True),
        ("ci-robot", True, True),
        ("trunkline", False, False),
        ("alice", False, False),
    ],
)
def test_is_bot_account(login: str, is_bot: bool, expected: bool) -> None:
    assert is_bot_account(login, BOT, is_bot=is_bot) is expected


def test_all_gates_in_order_and_event() -> None:
    given = inputs(
        MEDIUM,
        verdicts=(AgentVerdict(HEAD, ReviewerVerdict.APPROVE),),
        approvals=approved("dora"),
    )
    reports = evaluate_gates(given)
    assert [r.gate for r in reports] == [Gate.SCOPE, Gate.REVIEW, Gate.APPROVAL]
    assert all(r.ok for r in reports)
    event = gates_updated(given)
    assert (event.pr, event.head_sha, event.reports) == (7, HEAD, reports)


USERS = st.sampled_from(["alice", "erin", "dora", "rita", "sam", BOT, "renovate[bot]"])
SHAS = st.sampled_from([HEAD, OLD])


@given(
    approvals=st.lists(st.tuples(USERS, SHAS), max_size=8),
    noise=st.lists(st.tuples(USERS, st.just(OLD)), max_size=4),
    bots=st.lists(st.sampled_from([BOT, "renovate[bot]", "x[bot]"]), max_size=3),
    paths=st.sampled_from([MEDIUM, HIGH, LOW]),
)
def test_stale_and_bot_approvals_never_change_the_approval_gate(
    approvals: list[tuple[str, str]],
    noise: list[tuple[str, str]],
    bots: list[str],
    paths: tuple[str, ...],
) -> None:
    """Approvals of another SHA and approvals by bots can never make the gate pass (nor
    fail), and the gate passes only with `required` distinct counted approvers."""
    base = inputs(
        paths, approvals=tuple(RecordedApproval(u, s, ApprovalSource.COMMAND) for u, s in approvals)
    )
    extra = tuple(RecordedApproval(u, s, ApprovalSource.GITHUB_REVIEW) for u, s in noise) + tuple(
        RecordedApproval(b, HEAD, ApprovalSource.GITHUB_REVIEW) for b in bots
    )
    noisy = replace(base, approvals=base.approvals + extra)
    assert approval_gate(noisy).ok is approval_gate(base).ok
    tally = tally_approvals(noisy)
    heads = {u.lower() for u, s in approvals if s == HEAD}
    assert {c.lower() for c in tally.counted} <= heads - {"rita", BOT, "renovate[bot]"}
    required = base.evaluation.approvals.required
    assert approval_gate(noisy).ok is (len(tally.counted) >= required)
    assert approval_gate(noisy).ok is all(len(g.counted) >= required for g in tally.groups)
