"""Table-driven scenarios for every rule of the work-item state machine (trunkline.pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.machine import admit, decide, start
from trunkline.pipeline.model import (
    HISTORY_LIMIT,
    LockStatus,
    RiskAssessment,
    Spend,
    Verdict,
    WorkItem,
)
from trunkline.pipeline.states import ACTIVE, ALLOWED_EDGES, BEFORE_EXECUTION, WorkState
from trunkline.policies.loader import load_policy
from trunkline.policies.model import Permission, Policy

S = WorkState
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CONFIG = PipelineConfig(
    dispatch_label="agent",
    min_permission=Permission.WRITE,
    max_active=2,
    max_rounds=2,
    plan_approval_levels=frozenset({"high"}),
    escalation_label="needs-human",
    escalation_notify=("alice",),
)
LOW = RiskAssessment("low", ("nothing risky",), ("api",), False)
HIGH = RiskAssessment("high", ("path .github/workflows/ci.yml matches high",), ("ci",), False)
C = TypeVar("C")


@dataclass
class Driver:
    """Feeds events to one item, answering commands with the keys the machine issued."""

    item: WorkItem | None = None
    commands: tuple[cmd.Command, ...] = ()
    config: PipelineConfig = CONFIG
    ticks: int = 0
    seen: list[tuple[WorkItem | None, tuple[cmd.Command, ...]]] = field(default_factory=list)

    def send(self, event: ev.Event) -> tuple[cmd.Command, ...]:
        self.ticks += 1
        before = self.item
        item, commands = decide(before, event, T0 + timedelta(seconds=self.ticks), self.config)
        if item is before:
            assert commands == ()
        else:
            assert item is not None
            assert item.version == (before.version if before else 0) + 1
            for step in item.history[len(before.history) if before else 0 :]:
                assert (step.from_state, step.to_state) in ALLOWED_EDGES, step
        self.item, self.commands = item, commands
        self.seen.append((item, commands))
        return commands

    @property
    def it(self) -> WorkItem:
        assert self.item is not None
        return self.item

    def at(self, state: WorkState) -> bool:
        return self.it.state is state

    def one(self, kind: type[C]) -> C:
        found = [c for c in self.commands if isinstance(c, kind)]
        assert len(found) == 1, (kind, self.commands)
        return found[0]

    def has(self, kind: type[Any]) -> bool:
        return any(isinstance(c, kind) for c in self.commands)

    def unchanged(self, event: ev.Event) -> None:
        before = self.item
        item, commands = decide(before, event, T0 + timedelta(hours=1), self.config)
        assert item is before
        assert commands == ()

    # --- the happy path, step by step -------------------------------------------------

    def label(self, by: str = "maria", permission: Permission | None = Permission.WRITE) -> None:
        self.send(ev.Labeled("acme/app", 7, by, permission, "agent"))

    def admit(self) -> None:
        self.send(ev.Admitted(self.it.run))

    def plan(self, risk: RiskAssessment = LOW, plan_id: str = "plan-1") -> None:
        key = self.one(cmd.RunPlanner).key
        self.send(
            ev.PlanReady(key, plan_id, "do it", ("src/api/**",), risk, Spend(100, Decimal("0.01")))
        )

    def plan_review(self, verdict: Verdict = Verdict.APPROVE, summary: str = "") -> None:
        review = self.one(cmd.RunPlanReview)
        self.send(ev.PlanReviewed(review.key, review.plan_id, verdict, summary))

    def grant(self) -> None:
        acquire = self.one(cmd.AcquireLocks)
        self.send(
            ev.LocksGranted(
                acquire.key, acquire.subsystems, tuple((s, 1) for s in acquire.subsystems)
            )
        )

    def execute(
        self, kind: ev.ExecutionKind = ev.ExecutionKind.COMPLETED, reason: str = ""
    ) -> None:
        key = self.one(cmd.RunExecutor).key
        self.send(ev.ExecutionDone(key, kind, reason, Spend(1000, Decimal("0.10"))))

    def self_check(self, passed: bool = True) -> None:
        self.send(
            ev.SelfCheckDone(
                self.one(cmd.RunSelfCheck).key, passed, "3 passed" if passed else "1 failed"
            )
        )

    def open_pr(self, sha: str = "a" * 40) -> None:
        self.send(ev.PrOpened(self.one(cmd.PushAndOpenPr).key, 42, sha))

    def review(self, verdict: Verdict = Verdict.APPROVE, findings: int = 0) -> None:
        run = self.one(cmd.RunReviewer)
        self.send(ev.ReviewDone(run.key, run.sha, verdict, findings, "see findings"))

    def enqueued(self) -> None:
        self.send(ev.Enqueued(self.one(cmd.Enqueue).key, 42))

    def merged(self, sha: str = "m" * 40) -> None:
        self.send(ev.Merged(42, sha))


def driven_to(state: WorkState, config: PipelineConfig = CONFIG) -> Driver:
    """A driver whose item went along the happy path up to `state`."""
    d = Driver(config=config)
    path: list[tuple[WorkState, Any]] = [
        (S.QUEUED, d.label),
        (S.PLANNING, d.admit),
        (S.PLAN_REVIEW, d.plan),
        (S.WAITING_FOR_LOCKS, d.plan_review),
        (S.EXECUTING, d.grant),
        (S.SELF_CHECK, d.execute),
        (S.PR_OPEN, d.self_check),
        (S.REVIEWING, d.open_pr),
        (S.READY, d.review),
        (S.QUEUED_FOR_MERGE, d.enqueued),
        (S.MERGED, d.merged),
    ]
    if state is S.AWAITING_PLAN_APPROVAL:
        d.label()
        d.admit()
        d.plan(HIGH)
        d.plan_review()
        assert d.at(S.AWAITING_PLAN_APPROVAL)
        return d
    for reached, action in path:
        action()
        assert d.it.state is reached, (d.it.state, reached)
        if reached is state:
            return d
    raise AssertionError(f"{state} is not on the happy path")


HAPPY = [
    S.QUEUED,
    S.PLANNING,
    S.PLAN_REVIEW,
    S.AWAITING_PLAN_APPROVAL,
    S.WAITING_FOR_LOCKS,
    S.EXECUTING,
    S.SELF_CHECK,
    S.PR_OPEN,
    S.REVIEWING,
    S.READY,
    S.QUEUED_FOR_MERGE,
]
ACTIVE_ON_PATH = [s for s in HAPPY if s in ACTIVE]


def sticky(d: Driver) -> cmd.UpdateSticky:
    return d.one(cmd.UpdateSticky)


# --- labels and creation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permission", "accepted"),
    [
        (None, False),
        (Permission.READ, False),
        (Permission.TRIAGE, False),
        (Permission.WRITE, True),
        (Permission.MAINTAIN, True),
        (Permission.ADMIN, True),
    ],
)
def test_label_creates_the_item_only_for_min_permission(
    permission: Permission | None, accepted: bool
) -> None:
    d = Driver()
    d.label("sam", permission)
    if accepted:
        assert d.at(S.QUEUED)
        assert d.it.run == 1
        assert d.it.requester == "sam"
        assert [type(c) for c in d.commands] == [cmd.UpdateSticky]
    else:
        assert d.at(S.REFUSED)
        refusal = d.one(cmd.RefuseLabel)
        assert (refusal.user, refusal.min_permission) == ("sam", "write")
        assert len(d.commands) == 1  # a polite comment and nothing else
        assert d.it.exit_reason
        assert "write" in d.it.exit_reason


def test_a_label_that_is_not_the_dispatch_label_is_ignored() -> None:
    item, commands = decide(
        None, ev.Labeled("acme/app", 7, "maria", Permission.ADMIN, "bug"), T0, CONFIG
    )
    assert (item, commands) == (None, ())
    d = driven_to(S.QUEUED)
    d.unchanged(ev.Labeled("acme/app", 7, "maria", Permission.ADMIN, "bug"))
    d.unchanged(ev.Unlabeled("maria", "bug"))


def test_a_label_for_another_issue_is_a_wiring_error() -> None:
    d = driven_to(S.QUEUED)
    with pytest.raises(ValueError, match="acme/app#8 labeled"):
        decide(d.it, ev.Labeled("acme/app", 8, "maria", Permission.WRITE, "agent"), T0, CONFIG)


def test_events_other_than_labeled_create_nothing() -> None:
    assert decide(None, ev.Admitted(1), T0, CONFIG) == (None, ())
    assert decide(None, ev.CancelRequested("x"), T0, CONFIG) == (None, ())


@pytest.mark.parametrize("state", HAPPY)
def test_duplicate_delivery_or_relabel_of_a_live_item_does_nothing(state: WorkState) -> None:
    d = driven_to(state)
    d.unchanged(ev.Labeled("acme/app", 7, "maria", Permission.WRITE, "agent"))
    d.unchanged(ev.Labeled("acme/app", 7, "root", Permission.ADMIN, "agent"))


def test_refused_user_is_told_once_per_run_and_others_separately() -> None:
    d = Driver()
    d.label("eve", Permission.READ)
    d.unchanged(ev.Labeled("acme/app", 7, "eve", Permission.READ, "agent"))
    d.send(ev.Labeled("acme/app", 7, "mallory", Permission.TRIAGE, "agent"))
    assert d.at(S.REFUSED)
    assert d.one(cmd.RefuseLabel).user == "mallory"
    d.label("maria", Permission.WRITE)  # a maintainer labels: a run starts
    assert d.at(S.QUEUED)
    assert d.it.run == 1
    assert d.it.requester == "maria"


def test_unauthorized_label_on_a_running_item_is_refused_without_touching_it() -> None:
    d = driven_to(S.EXECUTING)
    d.send(ev.Labeled("acme/app", 7, "eve", Permission.READ, "agent"))
    assert d.at(S.EXECUTING)
    assert [type(c) for c in d.commands] == [cmd.RefuseLabel]


@pytest.mark.parametrize("exit_event", ["escalate", "cancel", "close_pr"])
def test_relabel_after_a_restartable_exit_starts_a_new_run(exit_event: str) -> None:
    d = driven_to(S.REVIEWING)
    old_awaiting = d.it.awaiting
    if exit_event == "escalate":
        d.send(ev.BudgetExhausted("budget_usd", Spend(9, Decimal(5))))
    elif exit_event == "cancel":
        d.send(ev.CancelRequested("maria"))
    else:
        d.send(ev.PrClosed(42, "maria"))
    exited = d.it.state
    d.label("omar", Permission.MAINTAIN)
    item = d.it
    assert item.state is S.QUEUED
    assert item.run == 2
    assert item.requester == "omar"
    assert (item.plan_id, item.pr, item.head_sha, item.review_rounds) == (None, None, None, 0)
    assert item.spend == Spend()
    assert item.locks is LockStatus.NONE
    assert item.history[-1].from_state is exited
    assert d.has(cmd.RemoveLabel) == (exited is S.ESCALATED)
    # a late result of the old run does not touch the new one
    d.unchanged(ev.ReviewDone(old_awaiting or "", "a" * 40, Verdict.APPROVE))
    # the new run's keys differ from the old run's
    d.admit()
    assert ":run2:" in d.one(cmd.RunPlanner).key


def test_relabel_after_merge_does_nothing() -> None:
    d = driven_to(S.MERGED)
    d.unchanged(ev.Labeled("acme/app", 7, "maria", Permission.ADMIN, "agent"))


@pytest.mark.parametrize("state", sorted(BEFORE_EXECUTION))
def test_removing_the_label_before_execution_cancels(state: WorkState) -> None:
    d = driven_to(state)
    had_locks = d.it.locks is not LockStatus.NONE
    d.send(ev.Unlabeled("maria", "agent"))
    assert d.at(S.CANCELLED)
    assert d.it.exit_reason
    assert "removed" in d.it.exit_reason
    assert d.has(cmd.ReleaseLocks) == had_locks
    assert d.has(cmd.CancelWork) == (state in ACTIVE)
    assert "cancelled" in sticky(d).text


@pytest.mark.parametrize("state", [s for s in HAPPY if s not in BEFORE_EXECUTION])
def test_removing_the_label_after_execution_started_only_notes_it(state: WorkState) -> None:
    d = driven_to(state)
    d.send(ev.Unlabeled("maria", "agent"))
    assert d.at(state)
    assert d.it.label_removed
    assert [type(c) for c in d.commands] == [cmd.UpdateSticky]
    assert "continues" in sticky(d).text
    d.unchanged(ev.Unlabeled("maria", "agent"))


# --- the main line ------------------------------------------------------------------------


def test_happy_path_from_label_to_merge() -> None:
    d = driven_to(S.MERGED)
    states = [step.to_state for step in d.it.history]
    assert states == [
        S.QUEUED,
        S.PLANNING,
        S.PLAN_REVIEW,
        S.WAITING_FOR_LOCKS,
        S.EXECUTING,
        S.SELF_CHECK,
        S.PR_OPEN,
        S.REVIEWING,
        S.READY,
        S.QUEUED_FOR_MERGE,
        S.MERGED,
    ]
    assert d.it.merged_sha == "m" * 40
    assert d.it.exit_reason == f"#42 merged as {'m' * 12}"
    release = d.one(cmd.ReleaseLocks)
    assert (release.holder, release.subsystems) == ("issue-7", ("api",))
    close = d.one(cmd.CloseIssue)
    assert "#42" in close.summary
    assert "do it" in close.summary
    assert "1000 tokens" in close.summary
    assert "merged" in sticky(d).text
    assert d.it.locks is LockStatus.NONE
    # every step but the last posted a sticky update; every answered command was answered
    assert all(any(isinstance(c, cmd.UpdateSticky) for c in cs) for _, cs in d.seen)
    keys = [c.key for _, cs in d.seen for c in cs]
    assert len(keys) == len(set(keys))


def test_commands_carry_what_the_runner_needs() -> None:
    d = driven_to(S.WAITING_FOR_LOCKS)
    acquire = d.one(cmd.AcquireLocks)
    assert (acquire.item, acquire.holder, acquire.subsystems) == ("acme/app#7", "issue-7", ("api",))
    d.grant()
    run = d.one(cmd.RunExecutor)
    assert (run.round, run.plan_id, run.holder, run.feedback) == (1, "plan-1", "issue-7", ())
    assert d.it.lock_epochs == (("api", 1),)
    d.execute()
    d.self_check()
    push = d.one(cmd.PushAndOpenPr)
    assert (push.pr, push.risk, push.reasons, push.plan_summary) == (
        None,
        "low",
        LOW.reasons,
        "do it",
    )
    assert push.spend == Spend(1000, Decimal("0.10"))
    d.open_pr("b" * 40)
    assert d.one(cmd.RunReviewer).sha == "b" * 40
    d.review()
    post = d.one(cmd.PostReview)
    assert (post.pr, post.sha, post.verdict) == (42, "b" * 40, Verdict.APPROVE)
    enqueue = d.one(cmd.Enqueue)
    assert (enqueue.pr, enqueue.head_sha) == (42, "b" * 40)
    assert (d.it.reviewed_sha, d.it.review_verdict) == ("b" * 40, Verdict.APPROVE)


def test_deciding_is_deterministic() -> None:
    a, b = driven_to(S.REVIEWING), driven_to(S.REVIEWING)
    assert a.it == b.it
    assert a.seen == b.seen


@pytest.mark.parametrize(
    ("risk", "levels", "gated"),
    [
        (LOW, frozenset(), False),
        (HIGH, frozenset({"high"}), True),  # the policy's level requires it
        (RiskAssessment("low", (), ("api",), True), frozenset(), True),  # the evaluation does
        (HIGH, frozenset(), False),
    ],
)
def test_plan_approval_gate_per_risk_level(
    risk: RiskAssessment, levels: frozenset[str], gated: bool
) -> None:
    d = Driver(config=PipelineConfig(plan_approval_levels=levels))
    d.label()
    d.admit()
    d.plan(risk)
    d.plan_review()
    if not gated:
        assert d.at(S.WAITING_FOR_LOCKS)
        return
    assert d.at(S.AWAITING_PLAN_APPROVAL)
    ask = d.one(cmd.RequestPlanApproval)
    assert (ask.plan_id, ask.risk, ask.reasons) == ("plan-1", risk.level, risk.reasons)
    d.unchanged(ev.PlanApproved("omar", "plan-0"))  # an approval of another plan
    d.send(ev.PlanApproved("omar", "plan-1"))
    assert d.at(S.WAITING_FOR_LOCKS)
    assert d.it.plan_approved_by == "omar"
    d.unchanged(ev.PlanApproved("omar", "plan-1"))


def test_plan_review_changes_replan_then_escalate_after_max_rounds() -> None:
    d = driven_to(S.PLAN_REVIEW)
    d.plan_review(Verdict.REQUEST_CHANGES, "split step 2")
    assert d.at(S.PLANNING)
    again = d.one(cmd.RunPlanner)
    assert (again.round, again.feedback) == (2, "split step 2")
    d.plan(plan_id="plan-2")
    d.plan_review(Verdict.REQUEST_CHANGES)
    assert d.at(S.ESCALATED)
    assert d.it.escalation_reason == "plan_rejected"
    assert d.one(cmd.Escalate).notify == ("alice",)


def test_plan_review_escalation_and_stale_plan_ids() -> None:
    d = driven_to(S.PLAN_REVIEW)
    review = d.one(cmd.RunPlanReview)
    d.unchanged(ev.PlanReviewed(review.key, "plan-other", Verdict.APPROVE))
    d.unchanged(ev.PlanReviewed("wrong-key", "plan-1", Verdict.APPROVE))
    d.plan_review(Verdict.ESCALATE, "needs a product decision")
    assert d.at(S.ESCALATED)
    assert d.one(cmd.Escalate).detail == "needs a product decision"


def test_waiting_for_locks_notes_each_new_blocker_once() -> None:
    d = driven_to(S.WAITING_FOR_LOCKS)
    key = d.one(cmd.AcquireLocks).key
    d.send(ev.LocksWaiting(key, ("api",)))
    assert d.at(S.WAITING_FOR_LOCKS)
    assert "api" in sticky(d).text
    d.unchanged(ev.LocksWaiting(key, ("api",)))
    d.unchanged(ev.LocksWaiting("other", ("db",)))
    d.send(ev.LocksGranted(key, ("api",), (("api", 3),)))
    assert d.at(S.EXECUTING)
    assert d.it.locks is LockStatus.HELD


def test_reviewer_change_requests_loop_back_bounded_by_max_rounds() -> None:
    d = driven_to(S.REVIEWING)
    for round_ in (1, 2):
        d.review(Verdict.REQUEST_CHANGES, findings=2)
        assert d.at(S.EXECUTING)
        assert d.it.review_rounds == round_
        assert f"**Review rounds used:** {round_} of 2" in sticky(d).text
        assert [s.to_state for s in d.it.history[-2:]] == [S.CHANGES_REQUESTED, S.EXECUTING]
        run = d.one(cmd.RunExecutor)
        assert run.round == round_ + 1
        assert run.feedback == ("see findings",)
        assert d.one(cmd.PostReview).verdict is Verdict.REQUEST_CHANGES
        d.execute()
        d.self_check()
        assert d.one(cmd.PushAndOpenPr).pr == 42  # the same PR is updated
        d.open_pr(str(round_) * 40)
    d.review(Verdict.REQUEST_CHANGES, findings=1)
    assert d.at(S.ESCALATED)
    assert d.it.review_rounds == 2
    assert d.it.escalation_reason == "max_review_rounds"
    assert d.one(cmd.ReleaseLocks).holder == "issue-7"
    assert d.one(cmd.ApplyLabel).label == "needs-human"
    assert d.has(cmd.PostReview)
    assert "review rounds" in sticky(d).text


def test_reviewer_escalation() -> None:
    d = driven_to(S.REVIEWING)
    d.review(Verdict.ESCALATE)
    assert d.at(S.ESCALATED)
    assert d.it.escalation_reason == "reviewer_escalated"


def test_a_review_of_another_sha_or_a_stale_request_is_ignored() -> None:
    d = driven_to(S.REVIEWING)
    run = d.one(cmd.RunReviewer)
    d.unchanged(ev.ReviewDone(run.key, "f" * 40, Verdict.APPROVE))
    d.unchanged(ev.ReviewDone("stale", run.sha, Verdict.APPROVE))


def test_failed_self_check_goes_back_to_the_executor_using_a_round() -> None:
    d = driven_to(S.SELF_CHECK)
    d.self_check(passed=False)
    assert d.at(S.EXECUTING)
    assert d.it.review_rounds == 1
    assert d.one(cmd.RunExecutor).feedback == ("1 failed",)


@pytest.mark.parametrize(
    ("state", "review_state", "comments", "loops"),
    [
        (S.REVIEWING, ev.HumanReviewState.CHANGES_REQUESTED, ("rename x",), True),
        (S.READY, ev.HumanReviewState.CHANGES_REQUESTED, (), True),
        (S.QUEUED_FOR_MERGE, ev.HumanReviewState.CHANGES_REQUESTED, ("no",), True),
        (S.REVIEWING, ev.HumanReviewState.COMMENTED, ("line 3: off by one",), True),
        (S.REVIEWING, ev.HumanReviewState.COMMENTED, (), False),
        (S.READY, ev.HumanReviewState.APPROVED, (), False),
        (S.QUEUED_FOR_MERGE, ev.HumanReviewState.APPROVED, ("lgtm",), False),
    ],
)
def test_human_reviews_on_the_current_head(
    state: WorkState,
    review_state: ev.HumanReviewState,
    comments: tuple[str, ...],
    loops: bool,
) -> None:
    d = driven_to(state)
    event = ev.HumanReview("a" * 40, review_state, "omar", comments)
    if not loops:
        d.unchanged(event)  # approvals are the merge queue's approval gate's business
        return
    d.send(event)
    assert d.at(S.EXECUTING)
    assert d.it.review_rounds == 1
    feedback = d.one(cmd.RunExecutor).feedback
    assert feedback == (comments or ("@omar requested changes without a comment",))
    assert d.has(cmd.Dequeue) == (state is S.QUEUED_FOR_MERGE)
    d.unchanged(event)  # a duplicate delivery


def test_human_change_request_on_an_old_head_or_without_rounds_left() -> None:
    d = driven_to(S.REVIEWING)
    d.unchanged(ev.HumanReview("0" * 40, ev.HumanReviewState.CHANGES_REQUESTED, "omar"))
    d = driven_to(S.REVIEWING, PipelineConfig(max_rounds=1))
    d.send(ev.HumanReview("a" * 40, ev.HumanReviewState.CHANGES_REQUESTED, "omar"))
    d.execute()
    d.self_check()
    d.open_pr("b" * 40)
    d.send(ev.HumanReview("b" * 40, ev.HumanReviewState.CHANGES_REQUESTED, "omar"))
    assert d.at(S.ESCALATED)
    assert d.it.escalation_reason == "max_review_rounds"


def test_a_push_to_the_pr_voids_the_verdict_and_reviews_again() -> None:
    d = driven_to(S.READY)
    d.send(ev.PrHeadChanged(42, "c" * 40))
    assert d.at(S.REVIEWING)
    assert (d.it.head_sha, d.it.reviewed_sha, d.it.review_verdict) == ("c" * 40, None, None)
    assert d.one(cmd.RunReviewer).sha == "c" * 40
    d.unchanged(ev.PrHeadChanged(42, "c" * 40))
    d.unchanged(ev.PrHeadChanged(43, "d" * 40))
    d.review()
    assert d.at(S.READY)


def test_a_push_while_queued_keeps_the_entry_and_reviews_the_new_head() -> None:
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.send(ev.PrHeadChanged(42, "c" * 40))
    assert d.at(S.QUEUED_FOR_MERGE)
    d.review()
    assert d.at(S.QUEUED_FOR_MERGE)
    assert d.one(cmd.PostReview).sha == "c" * 40
    assert not d.has(cmd.Enqueue)
    d.merged()
    assert d.at(S.MERGED)


def test_a_merge_of_another_pr_changes_nothing() -> None:
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.unchanged(ev.Merged(41, "m" * 40))


@pytest.mark.parametrize("state", [S.REVIEWING, S.READY, S.QUEUED_FOR_MERGE])
def test_a_merge_of_the_items_pr_is_a_fact_in_any_state(state: WorkState) -> None:
    d = driven_to(state)
    waiting_for = d.it.awaiting
    d.send(ev.Merged(42, "m" * 40))
    assert d.at(S.MERGED)
    assert d.it.merged_sha == "m" * 40
    assert d.has(cmd.ReleaseLocks)
    assert d.has(cmd.CloseIssue)
    # a command still working for it stops; a plain merge from the queue has none
    assert d.has(cmd.CancelWork) == (waiting_for is not None)
    assert d.has(cmd.CancelWork) == (state is not S.QUEUED_FOR_MERGE)
    d.unchanged(ev.Merged(42, "m" * 40))


def test_a_merge_that_lands_after_a_change_request_still_ends_the_item_merged() -> None:
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.send(ev.HumanReview("a" * 40, ev.HumanReviewState.CHANGES_REQUESTED, "omar", ("no",)))
    assert d.at(S.EXECUTING)  # sent back; its Dequeue is deferred by the fast-forward in flight
    d.send(ev.Merged(42, "m" * 40))
    assert d.at(S.MERGED)
    assert d.has(cmd.CloseIssue)
    assert d.has(cmd.CancelWork)  # the executor run started by the change request stops


def test_a_human_merging_an_escalated_pr_ends_the_item_merged() -> None:
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.send(ev.Dequeued(42, "dequeued by @omar"))
    assert d.at(S.ESCALATED)
    assert d.it.escalation_reason == "dequeued"
    assert d.has(cmd.ReleaseLocks)
    assert not d.has(cmd.Dequeue)  # already out of the queue
    assert d.one(cmd.Escalate).reason == "dequeued"
    d.send(ev.Merged(42, "m" * 40))
    assert d.at(S.MERGED)
    assert not d.has(cmd.ReleaseLocks)  # released when it escalated
    assert d.one(cmd.RemoveLabel).label == CONFIG.escalation_label  # no longer needs a human


def test_a_dequeue_counts_only_while_queued_and_for_the_items_pr() -> None:
    d = driven_to(S.READY)
    d.unchanged(ev.Dequeued(42, "dequeued by @omar"))
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.unchanged(ev.Dequeued(41, "dequeued by @omar"))


def test_ejection_goes_back_to_the_executor() -> None:
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.send(ev.Ejected(42, "ci failed on the integration commit"))
    assert d.at(S.EXECUTING)
    assert d.one(cmd.RunExecutor).feedback == ("ci failed on the integration commit",)
    assert not d.has(cmd.Dequeue)


def test_closing_the_pr_fails_the_item_and_releases_locks() -> None:
    d = driven_to(S.QUEUED_FOR_MERGE)
    d.unchanged(ev.PrClosed(99, "omar"))
    d.send(ev.PrClosed(42, "omar"))
    assert d.at(S.FAILED)
    assert d.has(cmd.ReleaseLocks)
    assert d.has(cmd.Dequeue)
    assert "closed" in sticky(d).text


# --- takeover, resume, cancel -------------------------------------------------------------


@pytest.mark.parametrize("state", ACTIVE_ON_PATH)
def test_takeover_from_any_active_state(state: WorkState) -> None:
    d = driven_to(state)
    locks = d.it.locks
    d.send(ev.TakeoverRequested("omar"))
    assert d.at(S.TAKEN_OVER)
    assert d.it.takeover_holder == "omar"
    assert d.it.awaiting is None
    assert d.has(cmd.CancelWork)
    if locks is LockStatus.HELD:
        transfer = d.one(cmd.TransferLocks)
        assert (transfer.from_holder, transfer.to_holder) == ("issue-7", "human:omar:issue-7")
        assert d.it.locks is LockStatus.TRANSFERRED
    else:
        assert not d.has(cmd.TransferLocks)
        assert d.has(cmd.ReleaseLocks) == (locks is LockStatus.REQUESTED)
    assert d.has(cmd.Dequeue) == (state is S.QUEUED_FOR_MERGE)
    d.unchanged(ev.TakeoverRequested("zoe"))
    d.unchanged(ev.BudgetExhausted("budget_usd", Spend()))

    d.send(ev.Resumed("omar"))
    if locks is LockStatus.HELD:
        assert d.at(S.EXECUTING)
        back = d.one(cmd.TransferLocks)
        assert (back.from_holder, back.to_holder) == ("human:omar:issue-7", "issue-7")
        assert d.it.locks is LockStatus.HELD
    elif d.it.plan_accepted:
        assert d.at(S.WAITING_FOR_LOCKS)
        assert d.has(cmd.AcquireLocks)
    else:
        assert d.at(S.PLANNING)
        assert d.has(cmd.RunPlanner)
    d.unchanged(ev.Resumed("omar"))


def test_takeover_outside_active_states_is_ignored() -> None:
    driven_to(S.QUEUED).unchanged(ev.TakeoverRequested("omar"))
    driven_to(S.MERGED).unchanged(ev.TakeoverRequested("omar"))
    driven_to(S.EXECUTING).unchanged(ev.Resumed("omar"))


def test_late_executor_results_after_takeover_are_ignored() -> None:
    d = driven_to(S.EXECUTING)
    key = d.one(cmd.RunExecutor).key
    d.send(ev.TakeoverRequested("omar"))
    d.unchanged(ev.ExecutionDone(key, ev.ExecutionKind.TAKEN_OVER))
    d.unchanged(ev.ExecutionDone(key, ev.ExecutionKind.COMPLETED))
    d.unchanged(ev.StepFailed(key, "executor", "boom", retryable=False))


def test_cancel_while_taken_over_releases_the_humans_locks() -> None:
    d = driven_to(S.EXECUTING)
    d.send(ev.TakeoverRequested("omar"))
    d.send(ev.CancelRequested("omar"))
    assert d.at(S.CANCELLED)
    assert d.one(cmd.ReleaseLocks).holder == "human:omar:issue-7"


@pytest.mark.parametrize("state", HAPPY)
def test_cancel_from_every_live_state(state: WorkState) -> None:
    d = driven_to(state)
    locks = d.it.locks
    d.send(ev.CancelRequested("maria"))
    assert d.at(S.CANCELLED)
    assert d.it.exit_reason == "cancelled by @maria"
    assert d.has(cmd.ReleaseLocks) == (locks is not LockStatus.NONE)
    assert d.one(cmd.RemoveLabel).label == "agent"
    assert "cancelled by @maria" in sticky(d).text
    assert d.it.awaiting is None
    d.unchanged(ev.CancelRequested("maria"))


# --- failures and budgets -----------------------------------------------------------------


def test_non_retryable_step_failure_escalates_with_the_spend() -> None:
    d = driven_to(S.SELF_CHECK)
    key = d.one(cmd.RunSelfCheck).key
    d.unchanged(ev.StepFailed("stale", "self_check", "x", retryable=False))
    d.send(ev.StepFailed(key, "self_check", "sandbox missing", retryable=True))
    assert d.at(S.SELF_CHECK)
    assert d.it.last_error == "self_check: sandbox missing"
    d.unchanged(ev.StepFailed(key, "self_check", "sandbox missing", retryable=True))
    d.send(ev.StepFailed(key, "self_check", "sandbox missing", retryable=False))
    assert d.at(S.ESCALATED)
    escalate = d.one(cmd.Escalate)
    assert (escalate.reason, escalate.detail) == ("step_failed", "self_check: sandbox missing")
    assert escalate.spend == Spend(1000, Decimal("0.10"))
    assert d.has(cmd.ReleaseLocks)
    text = sticky(d).text
    assert "1000 tokens" in text
    assert "human" in text


@pytest.mark.parametrize("state", ACTIVE_ON_PATH)
def test_budget_exhaustion_escalates_from_every_active_state(state: WorkState) -> None:
    d = driven_to(state)
    locks = d.it.locks
    d.send(ev.BudgetExhausted("budget_usd", Spend(5000, Decimal("5.00"))))
    assert d.at(S.ESCALATED)
    assert d.it.escalation_reason == "budget_usd"
    assert d.one(cmd.Escalate).spend == Spend(5000, Decimal("5.00"))
    assert d.has(cmd.ReleaseLocks) == (locks is not LockStatus.NONE)
    assert d.one(cmd.ApplyLabel).label == "needs-human"
    d.unchanged(ev.BudgetExhausted("budget_usd", Spend(6000, Decimal("6.00"))))


def test_executor_escalation_carries_the_agents_reason() -> None:
    d = driven_to(S.EXECUTING)
    d.execute(ev.ExecutionKind.ESCALATED, "max_turns")
    assert d.at(S.ESCALATED)
    assert d.one(cmd.Escalate).reason == "max_turns"


def test_spend_is_cumulative_and_never_goes_back() -> None:
    d = driven_to(S.EXECUTING)
    key = d.one(cmd.RunExecutor).key
    d.send(ev.ExecutionDone(key, ev.ExecutionKind.COMPLETED, "", Spend(50, Decimal("0.5"))))
    assert d.it.spend == Spend(100, Decimal("0.5"))  # the plan reported 100 tokens


# --- admission ----------------------------------------------------------------------------


def _queued(issue: int, minute: int, state: WorkState = S.QUEUED) -> WorkItem:
    at = T0 + timedelta(minutes=minute)
    return WorkItem("acme/app", issue, state, "maria", at, at, queued_at=at, run=1)


@pytest.mark.parametrize(
    ("items", "max_active", "expected"),
    [
        ([_queued(1, 3), _queued(2, 1), _queued(3, 2)], 2, [2, 3]),
        ([_queued(1, 1), _queued(2, 1)], 4, [1, 2]),
        ([_queued(1, 1), _queued(5, 0, S.EXECUTING)], 1, []),
        ([_queued(1, 1), _queued(5, 0, S.TAKEN_OVER)], 1, [1]),  # takeovers free their slot
        ([_queued(1, 1), _queued(5, 0, S.ESCALATED)], 1, [1]),
        ([_queued(1, 1)], 0, []),  # 0 pauses dispatch
        ([_queued(1, 1), *(_queued(10 + n, 0, S.REVIEWING) for n in range(3))], 2, []),
    ],
)
def test_admit_is_fifo_under_max_active(
    items: list[WorkItem], max_active: int, expected: list[int]
) -> None:
    assert [i.issue for i in admit(items, max_active)] == expected


def test_admit_refuses_items_of_several_repositories() -> None:
    other = WorkItem("acme/web", 1, S.QUEUED, "maria", T0, T0)
    with pytest.raises(ValueError, match="one repository"):
        admit([_queued(1, 1), other], 2)


def test_start_moves_a_queued_item_to_planning_once() -> None:
    d = driven_to(S.QUEUED)
    item, commands = start(d.it, T0, CONFIG)
    assert item is not None
    assert item.state is S.PLANNING
    assert [type(c) for c in commands] == [cmd.RunPlanner, cmd.UpdateSticky]
    assert start(item, T0, CONFIG) == (item, ())


# --- bookkeeping --------------------------------------------------------------------------


def test_history_is_bounded() -> None:
    d = driven_to(S.REVIEWING, PipelineConfig(max_rounds=1000))
    for n in range(HISTORY_LIMIT + 5):
        d.send(ev.PrHeadChanged(42, f"{n:040d}"))
    assert len(d.it.history) == HISTORY_LIMIT
    assert d.it.history[-1].to_state is S.REVIEWING


def test_config_from_policy() -> None:
    text = """
dispatch: {label: go, min_permission: maintain, max_active: 3}
approvals:
  high: {required: 1, plan_approval: true}
  medium: {required: 1}
agents: {reviewer: {max_rounds: 4}}
escalation: {label: help, notify: ["@alice", "@acme/leads"]}
"""
    policy = load_policy(text, "trunkline.yml")
    assert isinstance(policy, Policy)
    config = PipelineConfig.of(policy)
    assert config == PipelineConfig(
        dispatch_label="go",
        min_permission=Permission.MAINTAIN,
        max_active=3,
        max_rounds=4,
        plan_approval_levels=frozenset({"high"}),
        escalation_label="help",
        escalation_notify=("alice", "@acme/leads"),
    )


def test_config_rejects_impossible_values() -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        PipelineConfig(max_rounds=0)
    with pytest.raises(ValueError, match="max_active"):
        PipelineConfig(max_active=-1)
