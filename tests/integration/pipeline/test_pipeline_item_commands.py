"""A work item's slash commands and `issues.closed`, through the router as GitHub delivers
them: `approve-plan`, `cancel`, `retry`, `explain`, help and misplaced queue commands.

SQLite, the recording GitHub fake, the real lock manager; scripted planner and plan reviewer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pipeline_harness import (
    MAINTAINER,
    OUTSIDER,
    REPO,
    Harness,
    comment_payload,
    labeled_payload,
    make_harness,
    repository_json,
)

from trunkline.agents.takeover import read_takeover, request_takeover
from trunkline.agents.work_item_rows import ItemRef
from trunkline.bot.queue_commands import reply_key
from trunkline.github.model import Permission
from trunkline.github.sticky import marker
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import RiskAssessment, Spend, Verdict
from trunkline.pipeline.runner import CommandContext, Performed
from trunkline.pipeline.states import WorkState as S
from trunkline.policies.model import Policy

WRITER = "wes"  # write access, named nowhere
APPROVER = "ada"  # named by the `high` approval rule
TEAM_MEMBER = "sam"  # in @acme/security, which the rule names

HIGH_RISK_POLICY = {
    "version": 1,
    "risk": {"high": {"paths": ["src/auth/**"]}},
    "approvals": {
        "high": {"required": 1, "from": ["@ada", "@acme/security"], "plan_approval": True}
    },
    "queue": {"required_checks": ["ci"]},
}
ANY_WRITER_POLICY = {
    "version": 1,
    "risk": {"high": {"paths": ["src/auth/**"]}},
    "approvals": {"high": {"required": 1, "plan_approval": True}},
    "queue": {"required_checks": ["ci"]},
}


def _plan(command: cmd.RunPlanner, context: CommandContext) -> Performed:
    risk = RiskAssessment("high", ("touches src/auth",), ("default",), plan_approval_required=True)
    return Performed(
        ev.PlanReady(command.key, "plan-1", "Rework login", ("src/auth/login.py",), risk, Spend(1))
    )


def _approve_plan(command: cmd.RunPlanReview, context: CommandContext) -> Performed:
    return Performed(ev.PlanReviewed(command.key, command.plan_id, Verdict.APPROVE, "fine"))


def _escalate_plan(command: cmd.RunPlanReview, context: CommandContext) -> Performed:
    return Performed(ev.PlanReviewed(command.key, command.plan_id, Verdict.ESCALATE, "unsure"))


def _executor(command: cmd.RunExecutor, context: CommandContext) -> Performed:
    return Performed()  # still working: the item stays in `executing`


def _harness(tmp_path: Path, policy: dict[str, Any], reviewer: Any = _approve_plan) -> Harness:
    h = make_harness(
        tmp_path,
        Policy.model_validate(policy),
        {cmd.RunPlanner: _plan, cmd.RunPlanReview: reviewer, cmd.RunExecutor: _executor},
        team_members={"@acme/security": frozenset({TEAM_MEMBER})},
    )
    for login in (WRITER, APPROVER, TEAM_MEMBER):
        h.github.set_permission(REPO, login, Permission.WRITE)
    return h


def _labeled_issue(h: Harness) -> int:
    issue = h.github.add_issue(REPO, title="Rework login", labels=("agent",)).number
    h.deliver("issues", labeled_payload(issue, MAINTAINER))
    h.drain()
    return issue


def _say(h: Harness, number: int, body: str, login: str, comment_id: int, **kw: Any) -> str:
    """Deliver the comment, run the jobs, return the reply to its first command line."""
    h.deliver("issue_comment", comment_payload(number, body, login, comment_id=comment_id, **kw))
    h.drain()
    replies = [
        c.body for c in h.github.comments_on(REPO, number) if _replies_to(c.body, comment_id)
    ]
    assert replies, f"no reply to comment {comment_id}"
    return replies[0]


def _replies_to(body: str, comment_id: int) -> bool:
    return marker(reply_key(comment_id, 1)) in body


def _state(h: Harness, issue: int) -> S:
    item = h.service.item(REPO, issue)
    assert item is not None
    return item.state


def test_approve_plan_by_a_writer_starts_the_work(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL

    reply = _say(h, issue, "/trunkline approve-plan", WRITER, 901)

    assert "approved the plan `plan-1`" in reply
    item = h.service.item(REPO, issue)
    assert item is not None
    assert item.plan_approved_by == WRITER
    assert item.state is S.EXECUTING  # locks granted, executor started
    assert h.locks.held(REPO, item.holder)


def test_approve_plan_is_held_to_the_risk_levels_approvers(tmp_path: Path) -> None:
    h = _harness(tmp_path, HIGH_RISK_POLICY)
    issue = _labeled_issue(h)

    refused = _say(h, issue, "/trunkline approve-plan", WRITER, 901)
    assert "one of the approvers the policy names: @acme/security, @ada" in refused
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL

    no_access = _say(h, issue, "/trunkline approve-plan", OUTSIDER, 902)
    assert "needs write access" in no_access
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL

    approved = _say(h, issue, "/trunkline approve-plan", TEAM_MEMBER, 903)
    assert f"@{TEAM_MEMBER} approved" in approved
    assert _state(h, issue) is S.EXECUTING

    again = _say(h, issue, "/trunkline approve-plan", APPROVER, 904)
    assert "Nothing to approve" in again


def test_the_requester_may_not_approve_their_own_plan_unless_the_rule_allows_it(
    tmp_path: Path,
) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)  # labeled by MAINTAINER: the requester

    refused = _say(h, issue, "/trunkline approve-plan", MAINTAINER, 901)
    assert "you asked for this work" in refused
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL

    allowing = {**ANY_WRITER_POLICY}
    allowing["approvals"] = {
        "high": {"required": 1, "plan_approval": True, "allow_requester": True}
    }
    h2 = _harness(tmp_path / "allowing", allowing)
    issue2 = _labeled_issue(h2)
    assert "approved the plan" in _say(h2, issue2, "/trunkline approve-plan", MAINTAINER, 901)
    assert _state(h2, issue2) is S.EXECUTING


def test_a_redelivered_approval_replies_once_and_decides_once(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    first = _say(h, issue, "/trunkline approve-plan", WRITER, 901)
    second = _say(h, issue, "/trunkline approve-plan", WRITER, 901)  # the same delivery again

    replies = [c for c in h.github.comments_on(REPO, issue) if _replies_to(c.body, 901)]
    assert len(replies) == 1
    assert "approved the plan" in first
    assert "Nothing to approve" in second  # the reply is edited; nothing is decided twice
    item = h.service.item(REPO, issue)
    assert item is not None
    assert [t.to_state for t in item.history].count(S.WAITING_FOR_LOCKS) == 1


def test_cancel_on_the_issue_releases_the_locks_and_removes_the_label(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    _say(h, issue, "/trunkline approve-plan", WRITER, 901)
    item = h.service.item(REPO, issue)
    assert item is not None
    assert h.locks.held(REPO, item.holder)

    reply = _say(h, issue, "/trunkline cancel", WRITER, 902)

    assert f"@{WRITER} cancelled {REPO}#{issue}" in reply
    assert _state(h, issue) is S.CANCELLED
    assert not h.locks.held(REPO, item.holder)
    assert "agent" not in h.github.get_issue(REPO, issue).labels
    assert "Nothing to cancel" in _say(h, issue, "/trunkline cancel", WRITER, 903)


def test_cancel_on_the_work_items_pull_request(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    opened: list[int] = []

    def execute(command: cmd.RunExecutor, context: CommandContext) -> Performed:
        return Performed(ev.ExecutionDone(command.key, ev.ExecutionKind.COMPLETED))

    def self_check(command: cmd.RunSelfCheck, context: CommandContext) -> Performed:
        return Performed(ev.SelfCheckDone(command.key, True, "tests pass"))

    def open_pr(command: cmd.PushAndOpenPr, context: CommandContext) -> Performed:
        pull = h.github.add_pull(REPO, head_ref="trunkline/issue-1", head_sha="a" * 40)
        opened.append(pull.number)
        return Performed(ev.PrOpened(command.key, pull.number, pull.head_sha))

    def review(command: cmd.RunReviewer, context: CommandContext) -> Performed:
        return Performed()  # still reviewing

    h.service.performers[cmd.RunExecutor] = execute
    for command_type, performer in (
        (cmd.RunSelfCheck, self_check),
        (cmd.PushAndOpenPr, open_pr),
        (cmd.RunReviewer, review),
    ):
        h.service.register(command_type, performer)
    issue = _labeled_issue(h)
    _say(h, issue, "/trunkline approve-plan", WRITER, 901)
    (pr,) = opened
    assert _state(h, issue) is S.REVIEWING

    reply = _say(h, pr, "/trunkline cancel", WRITER, 902, pull_request=True)

    assert f"cancelled {REPO}#{issue}" in reply
    assert _state(h, issue) is S.CANCELLED
    other = h.github.add_pull(REPO, head_ref="someone/else", head_sha="b" * 40).number
    assert "not a trunkline work item" in _say(
        h, other, "/trunkline cancel", WRITER, 903, pull_request=True
    )


def test_retry_restarts_an_escalated_item(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY, reviewer=_escalate_plan)
    issue = _labeled_issue(h)
    assert _state(h, issue) is S.ESCALATED

    reply = _say(h, issue, "/trunkline retry", WRITER, 901)

    assert "run 2" in reply
    item = h.service.item(REPO, issue)
    assert item is not None
    assert item.run == 2
    assert item.requester == WRITER
    assert item.state is S.ESCALATED  # the scripted reviewer escalates again...
    assert len([t for t in item.history if t.to_state is S.QUEUED]) == 2  # ...in a new run


def test_retry_after_a_cancel_puts_the_label_back_first(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    _say(h, issue, "/trunkline cancel", WRITER, 901)
    assert "agent" not in h.github.get_issue(REPO, issue).labels

    reply = _say(h, issue, "/trunkline retry", WRITER, 902, labels=())

    assert "run 2" in reply
    assert "agent" in h.github.get_issue(REPO, issue).labels
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL


def test_retry_of_a_live_item_and_by_a_reader(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    assert "Nothing to retry" in _say(h, issue, "/trunkline retry", WRITER, 901)
    _say(h, issue, "/trunkline cancel", WRITER, 902)
    assert "needs write access" in _say(h, issue, "/trunkline retry", OUTSIDER, 903)
    assert _state(h, issue) is S.CANCELLED


def test_help_explain_and_misplaced_queue_commands_on_an_issue(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    assert "trunkline understands" in _say(h, issue, "/trunkline aprove-plan", WRITER, 901)
    assert "works on a pull request" in _say(h, issue, "/trunkline queue", WRITER, 902)
    explained = _say(h, issue, "/trunkline explain", OUTSIDER, 903)  # read access is enough
    assert "**awaiting_plan_approval** (run 1)" in explained
    not_an_item = h.github.add_issue(REPO, title="Just a question").number
    assert "not a trunkline work item" in _say(
        h, not_an_item, "/trunkline cancel", WRITER, 904, labels=()
    )


def test_comments_by_bots_are_ignored(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    h.deliver(
        "issue_comment",
        comment_payload(issue, "/trunkline cancel", "helper[bot]", account_type="Bot"),
    )
    h.drain()
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL


def _closed_payload(issue: int, login: str, account_type: str = "User") -> dict[str, Any]:
    return {
        "action": "closed",
        "issue": {"number": issue, "title": "Rework login", "labels": [{"name": "agent"}]},
        "repository": repository_json(),
        "sender": {"login": login, "id": 5, "type": account_type},
        "installation": {"id": 7},
    }


@pytest.mark.parametrize(
    ("login", "account_type", "cancelled"),
    [(WRITER, "User", True), (OUTSIDER, "User", False), ("trunkline[bot]", "Bot", False)],
)
def test_closing_the_issue_cancels_its_item(
    tmp_path: Path, login: str, account_type: str, cancelled: bool
) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    _say(h, issue, "/trunkline approve-plan", WRITER, 901)
    item = h.service.item(REPO, issue)
    assert item is not None

    h.deliver("issues", _closed_payload(issue, login, account_type))
    h.drain()

    assert (_state(h, issue) is S.CANCELLED) is cancelled
    assert bool(h.locks.held(REPO, item.holder)) is not cancelled


def test_a_label_a_bot_applies_starts_nothing(tmp_path: Path) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = h.github.add_issue(REPO, title="Rework login", labels=("agent",)).number
    payload = labeled_payload(issue, "helper[bot]")
    payload["sender"]["type"] = "Bot"
    h.deliver("issues", payload)
    h.drain()
    assert h.service.item(REPO, issue) is None


def test_the_plan_approval_request_mentions_who_may_approve(tmp_path: Path) -> None:
    h = _harness(tmp_path, HIGH_RISK_POLICY)
    issue = _labeled_issue(h)
    (request,) = [c.body for c in h.github.comments_on(REPO, issue) if "plan-approval" in c.body]
    assert "@acme/security @ada: reply `/trunkline approve-plan`" in request

    nobody_named = {**ANY_WRITER_POLICY, "escalation": {"notify": ["@oncall"]}}
    h2 = _harness(tmp_path / "notify", nobody_named)
    issue2 = _labeled_issue(h2)
    (asked,) = [c.body for c in h2.github.comments_on(REPO, issue2) if "plan-approval" in c.body]
    assert "@oncall: reply `/trunkline approve-plan`" in asked


def test_cancel_lowers_a_takeover_flag_so_a_retry_does_not_start_taken_over(
    tmp_path: Path,
) -> None:
    h = _harness(tmp_path, ANY_WRITER_POLICY)
    issue = _labeled_issue(h)
    ref = ItemRef(REPO, issue)
    request_takeover(h.engine, ref, WRITER, datetime.now(UTC))
    h.service.submit(REPO, issue, ev.TakeoverRequested(WRITER))
    assert _state(h, issue) is S.TAKEN_OVER

    _say(h, issue, "/trunkline cancel", WRITER, 901)

    assert _state(h, issue) is S.CANCELLED
    assert not read_takeover(h.engine, ref).active
    _say(h, issue, "/trunkline retry", WRITER, 902, labels=())
    assert _state(h, issue) is S.AWAITING_PLAN_APPROVAL  # planned afresh, not taken over
