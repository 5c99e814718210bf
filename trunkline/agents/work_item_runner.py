"""Drives one work item through plan, plan review, execution and review rounds.

Performs I/O through its collaborators: the provider, the sandbox and the worktree's git.
Each role is a separate run with its own context (messages); only typed products cross
between them. The executor writes only the paths the approved plan declared; the runtime
commits its work with the configured author; the reviewer reviews the exact head SHA.
Whatever happens, the result is a `WorkOutcome` (pure data): completed, escalated with a
reason, or taken over; work in progress is committed so it can be pushed, never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trunkline.agents.agent_loop import RoleResult, RunContext, RunStatus, run_role
from trunkline.agents.budget import BudgetLimits, PriceTable, Spend, check_review_round
from trunkline.agents.contracts import (
    ExecutionReport,
    Finding,
    Plan,
    Review,
    Verdict,
    effective_verdict,
)
from trunkline.agents.messages import Provider
from trunkline.agents.outcome import EscalationReason, OutcomeKind, WorkOutcome
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import (
    EXECUTOR_TOOLS,
    READ_ONLY_TOOLS,
    WorkItem,
    executor_message,
    executor_spec,
    plan_review_message,
    plan_reviewer_spec,
    planner_message,
    planner_spec,
    review_message,
    reviewer_spec,
)
from trunkline.agents.sandbox import CommandAllowlist, Sandbox
from trunkline.agents.timeline import TimelineSink
from trunkline.agents.tools import Toolbox, WriteScope
from trunkline.agents.untrusted import sanitize
from trunkline.agents.worktree_git import (
    Author,
    GitCommandError,
    changed_files,
    commit_all,
    diff_since,
    discard_changes_outside,
    head_sha,
    log_since,
)
from trunkline.clock import Clock


@dataclass(frozen=True)
class AgentRunConfig:
    """Everything a run needs from the policy and the settings."""

    model: str
    limits: BudgetLimits
    prices: PriceTable
    commands: tuple[str, ...]
    author: Author
    planner_max_tokens: int = 8192
    reviewer_max_tokens: int = 8192
    executor_max_tokens: int = 16384
    result_cap: int = 4000


@dataclass
class _Progress:
    plan: Plan | None = None
    plan_reviews: list[Review] = field(default_factory=list)
    reports: list[ExecutionReport] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)


@dataclass
class WorkItemRunner:
    item: WorkItem
    worktree: Path
    base_sha: str
    config: AgentRunConfig
    provider: Provider
    sandbox: Sandbox
    timeline: TimelineSink
    clock: Clock
    redactor: Redactor
    should_stop: Callable[[], bool] = lambda: False
    spend: Spend = field(default_factory=Spend)

    def __post_init__(self) -> None:
        self.ctx = RunContext(
            work_item=self.item.key,
            model=self.config.model,
            provider=self.provider,
            prices=self.config.prices,
            limits=self.config.limits,
            clock=self.clock,
            timeline=self.timeline,
            redactor=self.redactor,
            should_stop=self.should_stop,
            result_cap=self.config.result_cap,
            spend=self.spend,
        )
        self.progress = _Progress()

    # -- entry points ------------------------------------------------------------------------

    def run(self) -> WorkOutcome:
        """Plan, have the plan reviewed, then execute and review until approved or stopped."""
        findings: Sequence[Finding] = ()
        plan_rounds = 0
        while True:
            planned = run_role(
                self.ctx,
                planner_spec(self.config.planner_max_tokens),
                self._read_only(),
                planner_message(self.item, findings),
            )
            if planned.product is None:
                return self._stopped(planned)
            plan = self.progress.plan = planned.product
            reviewed = run_role(
                self.ctx,
                plan_reviewer_spec(self.config.reviewer_max_tokens, plan),
                self._read_only(),
                plan_review_message(self.item, plan),
            )
            if reviewed.product is None:
                return self._stopped(reviewed)
            self.progress.plan_reviews.append(reviewed.product)
            verdict = effective_verdict(reviewed.product)
            if verdict is Verdict.APPROVE:
                return self._execute_and_review(plan, history="")
            if verdict is Verdict.ESCALATE:
                return self._escalate(EscalationReason.REVIEWER_ESCALATED, reviewed.product.summary)
            plan_rounds += 1
            if plan_rounds >= self.config.limits.review_rounds:
                return self._escalate(EscalationReason.PLAN_REJECTED, reviewed.product.summary)
            findings = reviewed.product.findings

    def resume(self, plan: Plan) -> WorkOutcome:
        """After a takeover: execute the approved plan from the branch as it is now."""
        self.progress.plan = plan
        return self._execute_and_review(plan, history=log_since(self.worktree, self.base_sha))

    # -- phases ------------------------------------------------------------------------------

    def _wall_left(self) -> float:
        return self.config.limits.wall_seconds - self.ctx.elapsed()

    def _read_only(self) -> Toolbox:
        return Toolbox(self.worktree, READ_ONLY_TOOLS)

    def _execute_and_review(self, plan: Plan, history: str) -> WorkOutcome:
        findings: Sequence[Finding] = ()
        allowlist = CommandAllowlist.of(self.config.commands)
        while True:
            toolbox = Toolbox(
                self.worktree,
                EXECUTOR_TOOLS,
                sandbox=self.sandbox,
                allowlist=allowlist,
                write_scope=tuple(plan.paths),
                remaining_seconds=self._wall_left,
            )
            executed = run_role(
                self.ctx,
                executor_spec(self.config.executor_max_tokens, toolbox.commands),
                toolbox,
                executor_message(self.item, plan, self.config.commands, findings, history),
            )
            if executed.product is None:
                return self._stopped(executed)
            report = executed.product
            self.progress.reports.append(report)
            try:
                self._commit(self._commit_message(report))
                head = head_sha(self.worktree)
                diff = diff_since(self.worktree, self.base_sha)
            except GitCommandError as error:
                return self._escalate(EscalationReason.GIT_ERROR, str(error))
            if head == self.base_sha:
                return self._escalate(EscalationReason.NO_CHANGES, report.summary)
            self.ctx.spend = self.ctx.spend.add_review_round()
            reviewed = run_role(
                self.ctx,
                reviewer_spec(self.config.reviewer_max_tokens, head),
                self._read_only(),
                review_message(self.item, plan, head, diff),
            )
            if reviewed.product is None:
                return self._stopped(reviewed)
            review = reviewed.product
            self.progress.reviews.append(review)
            verdict = effective_verdict(review)
            if verdict is Verdict.APPROVE:
                return self._outcome(OutcomeKind.COMPLETED, None, review.summary)
            if verdict is Verdict.ESCALATE:
                return self._escalate(EscalationReason.REVIEWER_ESCALATED, review.summary)
            if check_review_round(self.ctx.spend, self.config.limits) is not None:
                return self._escalate(EscalationReason.MAX_REVIEW_ROUNDS, review.summary)
            findings = review.findings
            history = ""

    # -- endings -----------------------------------------------------------------------------

    def _commit_message(self, report: ExecutionReport) -> str:
        summary = sanitize(report.summary).strip()
        first = summary.splitlines()[0] if summary else "agent changes"
        round_number = len(self.progress.reports)
        body = [
            f"{self.item.key}: {first[:60]}",
            "",
            summary,
            "",
            f"Trunkline-Work-Item: {self.item.key}",
            f"Trunkline-Round: {round_number}",
        ]
        return self.redactor.redact("\n".join(body))

    def _commit(self, message: str) -> None:
        plan = self.progress.plan
        scope = WriteScope(plan.paths if plan is not None else ())
        for path in discard_changes_outside(self.worktree, scope.allows):
            if path not in self.progress.discarded:
                self.progress.discarded.append(path)
        sha = commit_all(self.worktree, message, self.config.author)
        if sha is not None:
            self.progress.commits.append(sha)

    def _stopped(self, result: RoleResult[Any]) -> WorkOutcome:
        kind = (
            OutcomeKind.TAKEN_OVER
            if result.status is RunStatus.TAKEN_OVER
            else OutcomeKind.ESCALATED
        )
        reason = None if kind is OutcomeKind.TAKEN_OVER else EscalationReason(result.reason or "")
        label = "taken over" if reason is None else reason.value
        try:
            self._commit(self.redactor.redact(f"{self.item.key}: work in progress ({label})"))
        except GitCommandError as error:
            return self._outcome(OutcomeKind.ESCALATED, EscalationReason.GIT_ERROR, str(error))
        return self._outcome(kind, reason, result.detail)

    def _escalate(self, reason: EscalationReason, detail: str) -> WorkOutcome:
        return self._outcome(OutcomeKind.ESCALATED, reason, detail)

    def _outcome(
        self, kind: OutcomeKind, reason: EscalationReason | None, detail: str
    ) -> WorkOutcome:
        try:
            head: str | None = head_sha(self.worktree)
            files = tuple(changed_files(self.worktree, self.base_sha))
        except GitCommandError:
            head, files = None, ()
        return WorkOutcome(
            work_item=self.item.key,
            kind=kind,
            reason=reason,
            detail=self.redactor.redact(sanitize(detail)),
            spend=self.ctx.spend,
            limits=self.config.limits,
            plan=self.progress.plan,
            plan_reviews=tuple(self.progress.plan_reviews),
            reports=tuple(self.progress.reports),
            reviews=tuple(self.progress.reviews),
            commits=tuple(self.progress.commits),
            discarded_paths=tuple(self.progress.discarded),
            head_sha=head,
            files_changed=files,
        )
