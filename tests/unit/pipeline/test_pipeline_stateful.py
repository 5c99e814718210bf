"""A Hypothesis state machine drives several work items of one repository through random
interleavings of every event: answers to the commands the machine issued, stale and
duplicate answers, replays of earlier events, human and merge-queue events, admissions.

Invariants are checked after every step: states move only along allowed edges (and merged
only from queued_for_merge), review and plan rounds never exceed `max_rounds`, every
terminal exit has a reason and a sticky update (a refusal: its polite comment), locks are
released or transferred whenever an item that had them lets them go, terminal items hold
nothing, command keys are unique, ignored events return the same object, and `admit`
never lets the active count exceed `max_active` (only a human `Resumed` can).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.machine import admit, decide
from trunkline.pipeline.model import LockStatus, RiskAssessment, Spend, Verdict, WorkItem
from trunkline.pipeline.serialization import (
    decode_command,
    decode_event,
    decode_item,
    encode_command,
    encode_event,
    encode_item,
)
from trunkline.pipeline.states import ACTIVE, ALLOWED_EDGES, TERMINAL, WorkState
from trunkline.policies.model import Permission

S = WorkState
T0 = datetime(2026, 3, 1, tzinfo=UTC)
CONFIG = PipelineConfig(
    max_active=2,
    max_rounds=2,
    plan_approval_levels=frozenset({"high"}),
    escalation_notify=("alice",),
)
ISSUES = (1, 2, 3, 4)
LABELED_AT_START = (1, 2, 3)  # issue 4 starts unlabeled: refusals create items too
RISKS = (
    RiskAssessment("low", (), ("api",), False),
    RiskAssessment("high", ("ci config",), ("ci", "api"), False),
    RiskAssessment("medium", ("big",), ("docs",), True),
)
HOLDING = frozenset(
    {
        S.EXECUTING,
        S.SELF_CHECK,
        S.PR_OPEN,
        S.REVIEWING,
        S.CHANGES_REQUESTED,
        S.READY,
        S.QUEUED_FOR_MERGE,
    }
)
issues = st.sampled_from(ISSUES)
# Answers are mostly the ones that move an item forward, so runs reach the merge queue.
MOSTLY_TRUE = st.sampled_from([True, True, True, False])
MOSTLY_APPROVE = st.sampled_from(
    [Verdict.APPROVE] * 6 + [Verdict.REQUEST_CHANGES] * 2 + [Verdict.ESCALATE]
)
MOSTLY_COMPLETED = st.sampled_from([ev.ExecutionKind.COMPLETED] * 10 + list(ev.ExecutionKind))


class PipelineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.items: dict[int, WorkItem] = {}
        self.sent: dict[int, list[ev.Event]] = {n: [] for n in ISSUES}
        self.issued: dict[str, cmd.Command] = {}
        self.answered_keys: dict[int, list[str]] = {n: [] for n in ISSUES}
        self.ticks = 0
        self.resumed = False
        self.shas = 0

    # --- plumbing -----------------------------------------------------------------------

    def fresh_sha(self) -> str:
        self.shas += 1
        return f"{self.shas:040x}"

    def send(self, issue: int, event: ev.Event) -> None:
        self.ticks += 1
        now = T0 + timedelta(seconds=self.ticks)
        before = self.items.get(issue)
        item, commands = decide(before, event, now, CONFIG)
        self.sent[issue].append(event)
        if item is before:
            assert commands == (), (event, commands)
            return
        assert item is not None
        assert item.version == (before.version if before else 0) + 1
        assert item.updated_at == now
        self.check_step(before, item, event, commands, now)
        # what the runner stores comes back equal
        assert decode_item(json.loads(json.dumps(encode_item(item)))) == item
        assert decode_event(json.loads(json.dumps(encode_event(event)))) == event
        for command in commands:
            assert decode_command(json.loads(json.dumps(encode_command(command)))) == command
        for command in commands:
            assert command.key not in self.issued, command
            assert command.item == f"acme/app#{issue}"
            self.issued[command.key] = command
            if isinstance(command, cmd.ANSWERED):
                self.answered_keys[issue].append(command.key)
        self.items[issue] = item

    def check_step(
        self,
        before: WorkItem | None,
        item: WorkItem,
        event: ev.Event,
        commands: tuple[cmd.Command, ...],
        now: datetime,
    ) -> None:
        steps = [t for t in item.history if t.at == now]
        state = before.state if before else None
        for transition in steps:
            assert transition.from_state == state
            assert (transition.from_state, transition.to_state) in ALLOWED_EDGES, transition
            assert transition.reason
            if transition.to_state is S.MERGED:
                assert transition.from_state is S.QUEUED_FOR_MERGE
            if transition.to_state in ACTIVE and transition.from_state not in ACTIVE:
                if transition.from_state is S.TAKEN_OVER:
                    assert isinstance(event, ev.Resumed)
                    self.resumed = True
                else:
                    assert transition.from_state is S.QUEUED
                    assert isinstance(event, ev.Admitted)
            state = transition.to_state
        assert state == item.state
        kinds = {type(c) for c in commands}
        exited = steps and item.state in TERMINAL | {S.TAKEN_OVER}
        if exited and item.state in TERMINAL:
            assert item.exit_reason
            if item.state is S.REFUSED:
                assert cmd.RefuseLabel in kinds
            else:
                assert cmd.UpdateSticky in kinds
                sticky = next(c for c in commands if isinstance(c, cmd.UpdateSticky))
                assert "Spend" in sticky.text
                assert "Next:" in sticky.text
        if item.state is S.ESCALATED and exited:
            assert cmd.Escalate in kinds
            assert cmd.ApplyLabel in kinds
        # locks: whoever had them and lets them go says so
        held = before.locks if before is not None else LockStatus.NONE
        change = (held, item.locks)
        if held is not item.locks:
            if item.locks is LockStatus.NONE:
                assert cmd.ReleaseLocks in kinds
            elif item.locks is LockStatus.REQUESTED:
                assert cmd.AcquireLocks in kinds
            elif change == (LockStatus.REQUESTED, LockStatus.HELD):
                assert isinstance(event, ev.LocksGranted)
            else:
                assert LockStatus.TRANSFERRED in change
                assert cmd.TransferLocks in kinds
        if exited and before is not None and before.locks is not LockStatus.NONE:
            assert kinds & {cmd.ReleaseLocks, cmd.TransferLocks}
        if cmd.UpdateSticky not in kinds:
            assert kinds <= {cmd.RefuseLabel}, kinds

    def answer_for(self, command: cmd.Command, data: st.DataObject) -> ev.Event:
        key = command.key
        if data.draw(st.sampled_from(range(20))) == 7:  # rare, and not a boundary value
            return ev.StepFailed(key, type(command).__name__, "boom", data.draw(st.booleans()))
        spend = Spend(data.draw(st.integers(0, 10_000)), Decimal(data.draw(st.integers(0, 500))))
        match command:
            case cmd.RunPlanner():
                plan_id = f"plan-{data.draw(st.integers(0, 3))}"
                risk = data.draw(st.sampled_from(RISKS))
                return ev.PlanReady(key, plan_id, "the plan", ("src/**",), risk, spend)
            case cmd.RunPlanReview():
                verdict = data.draw(MOSTLY_APPROVE)
                return ev.PlanReviewed(key, command.plan_id, verdict, "notes", spend)
            case cmd.AcquireLocks():
                if data.draw(MOSTLY_TRUE):
                    epochs = tuple((s, 1) for s in command.subsystems)
                    return ev.LocksGranted(key, command.subsystems, epochs)
                blocked = data.draw(st.sampled_from([("api",), ("ci", "api"), ("docs",)]))
                return ev.LocksWaiting(key, blocked)
            case cmd.RunExecutor():
                kind = data.draw(MOSTLY_COMPLETED)
                reason = "max_turns" if kind is ev.ExecutionKind.ESCALATED else ""
                return ev.ExecutionDone(key, kind, reason, spend)
            case cmd.RunSelfCheck():
                return ev.SelfCheckDone(key, data.draw(MOSTLY_TRUE), "tests")
            case cmd.PushAndOpenPr():
                pr = command.pr if command.pr is not None else 100 + int(command.item[-1])
                return ev.PrOpened(key, pr, self.fresh_sha())
            case cmd.RunReviewer():
                verdict = data.draw(MOSTLY_APPROVE)
                return ev.ReviewDone(key, command.sha, verdict, 2, "findings", spend)
            case cmd.Enqueue():
                return ev.Enqueued(key, command.pr)
        raise AssertionError(f"not an answered command: {command}")

    # --- rules --------------------------------------------------------------------------

    @initialize()
    def label_every_issue(self) -> None:
        for issue in LABELED_AT_START:
            self.send(issue, ev.Labeled("acme/app", issue, "maria", Permission.WRITE, "agent"))

    @rule(
        issue=issues,
        permission=st.sampled_from([None, *Permission]),
        label=st.sampled_from(["agent", "agent", "bug"]),
        who=st.sampled_from(["maria", "eve", "omar"]),
    )
    def label(self, issue: int, permission: Permission | None, label: str, who: str) -> None:
        self.send(issue, ev.Labeled("acme/app", issue, who, permission, label))

    @rule()
    def admission(self) -> None:
        items = list(self.items.values())
        active = sum(1 for item in items if item.state in ACTIVE)
        picked = admit(items, CONFIG.max_active)
        assert len(picked) <= max(0, CONFIG.max_active - active)
        assert all(item.state is S.QUEUED for item in picked)
        for item in picked:
            self.send(item.issue, ev.Admitted(item.run))
        if picked:
            assert sum(1 for i in self.items.values() if i.state in ACTIVE) <= CONFIG.max_active

    @rule(issue=issues, data=st.data())
    def answer(self, issue: int, data: st.DataObject) -> None:
        item = self.items.get(issue)
        if item is None:
            return
        if item.state is S.QUEUED:
            self.admission()
        elif item.awaiting is not None:
            self.send(issue, self.answer_for(self.issued[item.awaiting], data))
        elif item.state is S.AWAITING_PLAN_APPROVAL:
            self.send(issue, ev.PlanApproved("omar", item.plan_id or ""))
        elif item.state is S.QUEUED_FOR_MERGE and item.pr is not None:
            if data.draw(MOSTLY_TRUE):
                self.send(issue, ev.Merged(item.pr, self.fresh_sha()))
            else:
                self.send(issue, ev.Ejected(item.pr, "ci failed"))
        elif item.state is S.TAKEN_OVER:
            self.send(issue, ev.Resumed(item.takeover_holder or "omar"))

    @rule(issue=issues, data=st.data())
    def answer_again(self, issue: int, data: st.DataObject) -> None:
        self.answer(issue, data)

    @rule(issue=issues, data=st.data(), times=st.integers(1, 10))
    def advance(self, issue: int, data: st.DataObject, times: int) -> None:
        for _ in range(times):
            self.answer(issue, data)

    @rule(issue=issues, data=st.data())
    def stale_answer(self, issue: int, data: st.DataObject) -> None:
        keys = self.answered_keys[issue]
        if not keys:
            return
        command = self.issued[data.draw(st.sampled_from(keys))]
        self.send(issue, self.answer_for(command, data))

    @rule(issue=issues, data=st.data())
    def replay(self, issue: int, data: st.DataObject) -> None:
        recent = self.sent[issue][-12:]  # duplicates and late deliveries of recent events
        if recent:
            self.send(issue, data.draw(st.sampled_from(recent)))

    def facts(self, issue: int) -> tuple[int, str, str]:
        item = self.items.get(issue)
        pr = item.pr if item is not None and item.pr is not None else 999
        head = item.head_sha if item is not None and item.head_sha else self.fresh_sha()
        plan = item.plan_id if item is not None and item.plan_id else "plan-x"
        return pr, head, plan

    @rule(issue=issues, data=st.data(), who=st.sampled_from(["maria", "omar"]))
    def humans_and_github(self, issue: int, data: st.DataObject, who: str) -> None:
        pr, head, plan = self.facts(issue)
        events: list[ev.Event] = [
            ev.PlanApproved(who, data.draw(st.sampled_from([plan, "plan-stale"]))),
            ev.HumanReview(
                data.draw(st.sampled_from([head, "0" * 40])),
                data.draw(st.sampled_from(ev.HumanReviewState)),
                who,
                data.draw(st.sampled_from([(), ("fix line 3",)])),
            ),
            ev.PrHeadChanged(pr, data.draw(st.sampled_from([head, self.fresh_sha()]))),
            ev.Merged(998, self.fresh_sha()),
            ev.Unlabeled(who, "bug"),
        ]
        self.send(issue, data.draw(st.sampled_from(events)))

    @rule(issue=issues, who=st.sampled_from(["maria", "omar"]))
    def takeover(self, issue: int, who: str) -> None:
        self.send(issue, ev.TakeoverRequested(who))

    @rule(issue=issues, data=st.data(), who=st.sampled_from(["maria", "omar"]))
    def disrupt(self, issue: int, data: st.DataObject, who: str) -> None:
        pr, _, _ = self.facts(issue)
        events: list[ev.Event] = [
            ev.Unlabeled(who, "agent"),
            ev.PrClosed(data.draw(st.sampled_from([pr, 998])), who),
            ev.Resumed(who),
            ev.CancelRequested(who),
            ev.Ejected(pr, "ci failed"),
            ev.BudgetExhausted("budget_usd", Spend(1, Decimal(1))),
        ]
        self.send(issue, data.draw(st.sampled_from(events)))

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def items_are_consistent(self) -> None:
        for item in self.items.values():
            assert item.review_rounds <= CONFIG.max_rounds
            assert item.plan_rounds <= CONFIG.max_rounds
            if item.state in TERMINAL:
                assert item.locks is LockStatus.NONE
                assert item.awaiting is None
                assert item.exit_reason
            if item.state in HOLDING:
                assert item.locks is LockStatus.HELD
            if item.state is S.TAKEN_OVER:
                assert item.locks in {LockStatus.NONE, LockStatus.TRANSFERRED}
                assert item.awaiting is None
            if item.state is S.WAITING_FOR_LOCKS:
                assert item.locks is LockStatus.REQUESTED
            if item.awaiting is not None:
                assert item.awaiting in self.issued
                assert isinstance(self.issued[item.awaiting], cmd.ANSWERED)
            if item.state is S.MERGED:
                assert item.merged_sha is not None
            if item.state is S.ESCALATED:
                assert item.escalation_reason

    @invariant()
    def admission_bounds_the_active_count(self) -> None:
        if not self.resumed:
            active = sum(1 for item in self.items.values() if item.state in ACTIVE)
            assert active <= CONFIG.max_active

    def teardown(self) -> None:
        # liveness of the exits: cancelling every live item ends it with nothing held
        for issue, item in list(self.items.items()):
            if item.state not in TERMINAL:
                self.send(issue, ev.CancelRequested("maria"))
                assert self.items[issue].state is S.CANCELLED
                assert self.items[issue].locks is LockStatus.NONE


PipelineMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_pipeline_machine_stateful = PipelineMachine.TestCase
