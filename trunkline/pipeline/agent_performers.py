"""Performers of the pipeline's agent and git commands: one role run per command.

Performs I/O through its collaborators: the model provider (`trunkline.agents`), the
workspace (mirror, the item's worktree, pushes with a fresh installation token per git
command), the sandbox (self-check commands), the GitHub port (issue text, the pull request)
and the store (the saved plan, the takeover flag, the agent timeline).

- `RunPlanner`: planner run with read-only tools on the item's worktree; the plan is saved
  (`trunkline.agents.takeover.save_plan`) and evaluated by the policy engine on its paths
  (the risk and subsystems are the policy's, never the agent's) -> `PlanReady`.
- `RunPlanReview` -> `PlanReviewed` (`effective_verdict`: nits never block).
- `RunExecutor`: executor run with the allowlisted commands in the sandbox, writes confined
  to the plan's paths; the work is committed (changes outside the plan undone first)
  and pushed -> `ExecutionDone` completed, or escalated (`no_changes`, the run's failure
  reason) with the work in progress pushed. A run stopped by `/trunkline takeover` pushes
  its work and reports `TakeoverRequested` (by the flag's login). The run works under the item's
  leases: their epochs are read when the job starts (`item_leases.fence_for`; none held ->
  `StaleLease`, the item escalates `lease_lost`), a heartbeat renews them every
  `lock_ttl / 3` and stops the agent at its next turn when they are lost, and every write
  presents them: the work-in-progress push is checked right before it is made and expects
  the branch as the job found it; the result is decided only while they are held.
- `RunSelfCheck`: every command of the policy's `agents.commands` in the sandbox
  -> `SelfCheckDone` (passed when all exit 0; the summary names the first failure and
  quotes the last lines of its output, redacted).
- Feedback given to a model (change requests, failed checks, human review text) passes the
  performers' `redactor` first, like tool results and the run's notes.
- `PushAndOpenPr`: under the item's leases like the executor: the epochs checked right
  before the push, the push a compare-and-swap on the branch as the job fetched it
  (`branch_push.push_expecting`, never forced), checked again before the PR is created, and
  `PrOpened` decided only while they are held. The PR is opened once (its number is kept in
  the row's `data["pipeline_pr"]` so a retried job reuses it).
- `RunReviewer`: reviewer run on exactly the command's SHA (the worktree is re-created from
  the pushed branch when its head differs) -> `ReviewDone`, its findings that name a path
  and a line as `ReviewNote`s (the App's review posts them as line comments).
- A role run that stops on a cap answers `BudgetExhausted` (with what the next call could
  have cost); one that fails (invalid product after its repair turn, a `max_tokens` stop,
  the API failing, a refusal) raises `EscalatingStepError` with that reason and its spend.
- the `agents_resume` job (from `/trunkline resume`): feeds `Resumed(by)`; the executor then
  continues from the pushed branch (the worktree is re-created from it).

One model run per command: every role command claims its run in `role_runs.RoleRunLedger`
first (keyed by the command key): a recorded outcome is reused without calling the model, a
live claim of another delivery is waited for, an expired one taken over. The executor pushes
its commit before it answers (fenced, a compare-and-swap) and records the SHA
(`data["pipeline_head"]`); later jobs build or refresh the worktree on their own replica from
the pushed branch (the self-check and the push at the recorded SHA, the reviewer at its SHA),
so replicas need no shared disk.

Each run's `should_stop` is true when a human took the item over or when the item no longer
waits for the command (cancelled, exited, superseded): the agent stops at its next turn
boundary. Spend: each run starts from the item's spend so far plus what earlier runs of the
same command spent without reporting (a replica that died, a run that raised: the claim
carries it, `role_runs`), so the item's token and USD caps hold across runs and across
crashes; before every model call the command's spend and the call's worst case are noted on
the claim (a call in flight when its run died counts at that worst case), and a run whose
claim was taken over stops before its next call. Executor turns and wall time are counted
per run.
"""

from __future__ import annotations

import logging
import shlex
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from trunkline.agents.agent_loop import RunContext, RunStatus, run_role
from trunkline.agents.budget import BudgetLimits, CallEstimate, PriceTable
from trunkline.agents.budget import Spend as AgentSpend
from trunkline.agents.contracts import Finding, Plan, Severity, effective_verdict
from trunkline.agents.messages import Provider, Usage
from trunkline.agents.redaction import Redactor
from trunkline.agents.roles import (
    EXECUTOR_TOOLS,
    READ_ONLY_TOOLS,
    executor_message,
    executor_spec,
    plan_review_message,
    plan_reviewer_spec,
    planner_message,
    planner_spec,
    review_message,
    reviewer_spec,
)
from trunkline.agents.roles import WorkItem as AgentItem
from trunkline.agents.sandbox import (
    CommandAllowlist,
    CommandRefusedError,
    CommandResult,
    Sandbox,
)
from trunkline.agents.takeover import checkout_for_resume, load_plan, read_takeover, save_plan
from trunkline.agents.timeline import TimelineSink
from trunkline.agents.tools import Toolbox, WriteScope
from trunkline.agents.work_item_rows import ItemRef, change_data, read_data
from trunkline.agents.worktree_git import (
    Author,
    commit_all,
    diff_since,
    discard_changes_outside,
    head_sha,
)
from trunkline.clock import Clock
from trunkline.errors import TerminalError
from trunkline.github.port import GitHubPort
from trunkline.locks.leases import LockManager
from trunkline.pipeline import commands as cmd
from trunkline.pipeline import events as ev
from trunkline.pipeline.branch_push import observed_branch_sha, push_expecting
from trunkline.pipeline.item_leases import ItemFence, LeaseHeartbeat, check, fence_for
from trunkline.pipeline.model import ReviewNote, RiskAssessment, Spend, Verdict
from trunkline.pipeline.performers import GitHubFor, PolicyFor
from trunkline.pipeline.role_runs import (
    Busy,
    ClaimKeeper,
    Recorded,
    RoleOutcome,
    RoleRunLedger,
    RunClaim,
)
from trunkline.pipeline.runner import (
    CommandContext,
    EscalatingStepError,
    Performed,
    PipelineService,
)
from trunkline.pipeline.serialization import decode_event, encode_event
from trunkline.policies.evaluation import Change, evaluate
from trunkline.policies.model import Policy
from trunkline.policies.plan_scope import plan_subsystems
from trunkline.store.jobs import ClaimedJob
from trunkline.workspace.errors import PushRejectedError
from trunkline.workspace.gitrunner import run_git
from trunkline.workspace.model import RepositorySpec, Worktree, slugify
from trunkline.workspace.workspace import Workspace

log = logging.getLogger(__name__)

RESUME_JOB = "agents_resume"
PR_KEY = "pipeline_pr"
HEAD_KEY = "pipeline_head"
_FEEDBACK_LIMIT = 2000


def run_limits(policy: Policy) -> BudgetLimits:
    """The policy's per-item caps (`agents.budget`, executor turns, review rounds)."""
    budget = policy.agents.budget
    return BudgetLimits(
        tokens=budget.tokens,
        usd=Decimal(str(budget.usd)),
        wall_seconds=budget.wall.total_seconds(),
        executor_turns=policy.agents.executor.max_turns,
        review_rounds=policy.agents.reviewer.max_rounds,
    )


def feedback_findings(feedback: Sequence[str], redactor: Redactor) -> tuple[Finding, ...]:
    """Change requests (reviewer summaries, human comments, failed checks, a queue ejection's
    check summary) as findings for the model, each redacted: they may quote command output."""
    return tuple(
        Finding(severity=Severity.MAJOR, message=redactor.redact(text.strip())[:_FEEDBACK_LIMIT])
        for text in feedback
        if text.strip()
    )


def self_check_failure(line: str, outcome: CommandResult, redactor: Redactor) -> str:
    """The summary of a failed self-check command: why, and the last 20 lines of its output,
    redacted (the summary reaches the sticky comments, the timeline and, as feedback, the
    executor model)."""
    tail = redactor.redact("\n".join(outcome.output.strip().splitlines()[-20:]))
    why = "timed out" if outcome.timed_out else f"exit code {outcome.exit_code}"
    return f"`{line}` failed ({why}):\n\n```\n{tail}\n```"[:_FEEDBACK_LIMIT]


def risk_of(policy: Policy, paths: Sequence[str]) -> RiskAssessment:
    """The policy engine's assessment of a plan that touches `paths` (as modified files).

    The subsystems (the locks the item takes) cover every file the plan's write scope
    allows (`plan_subsystems`: a directory or glob locks every subsystem it could reach)."""
    evaluation = evaluate(policy, Change(modified=tuple(paths)))
    return RiskAssessment(
        level=evaluation.risk,
        reasons=tuple(reason.message for reason in evaluation.reasons),
        subsystems=plan_subsystems(policy, paths),
        plan_approval_required=evaluation.approvals.plan_approval,
    )


def pull_request_body(item_issue: int, command: cmd.PushAndOpenPr) -> str:
    reasons = "".join(f"\n- {reason}" for reason in command.reasons) or "\n- (none)"
    return (
        f"Closes #{item_issue}.\n\n"
        f"## Plan\n\n{command.plan_summary}\n\n"
        f"## Risk: {command.risk}\n{reasons}\n\n"
        f"## Spend\n\n{command.spend.tokens} tokens, ${command.spend.usd}\n\n"
        f"<sub>Opened by trunkline for #{item_issue}.</sub>\n"
    )


def merge_base(worktree: Path, base_sha: str) -> str:
    return run_git(worktree, "merge-base", "HEAD", base_sha).text


def has_commit(worktree: Path, sha: str) -> bool:
    """True when the repository behind `worktree` has commit `sha`."""
    return run_git(worktree, "cat-file", "-e", f"{sha}^{{commit}}", check=False).status == 0


def move_worktree(worktree: Path, sha: str) -> None:
    """Point the worktree's branch and files at `sha` (fetched: it is in the mirror)."""
    if not has_commit(worktree, sha):
        raise TerminalError(f"commit {sha[:12]} is not in the repository (was the branch reset?)")
    run_git(worktree, "reset", "--quiet", "--hard", sha)
    run_git(worktree, "clean", "-q", "-fd")


def _replayed(outcome: RoleOutcome) -> Performed:
    """A recorded outcome as the performer's result: its event, or its failure again."""
    if outcome.failed:
        raise EscalatingStepError(
            outcome.code or "step_failed",
            outcome.message,
            Spend(tokens=outcome.tokens, usd=outcome.usd),
        )
    return Performed(None if outcome.event is None else decode_event(outcome.event))


@dataclass
class AgentPerformers:
    engine: Engine
    service: PipelineService
    github_for: GitHubFor
    policy_for: PolicyFor
    workspace: Workspace
    spec_for: Callable[[str], RepositorySpec]
    token_for: Callable[[int | None], str | None]
    provider: Provider
    sandbox_for: Callable[[Path], Sandbox]
    timeline_for: Callable[[], TimelineSink]
    clock: Clock
    redactor: Redactor
    prices: PriceTable
    author: Author
    locks: LockManager
    lock_ttl: timedelta = timedelta(minutes=10)
    model: str | None = None  # overrides the policy's models (e.g. the operator's setting)
    max_tokens: int = 8192
    result_cap: int = 4000
    run_claim_ttl: timedelta = timedelta(seconds=30)  # a role run's claim, renewed every third
    ledger: RoleRunLedger | None = None

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = RoleRunLedger(self.engine, self.clock, self.run_claim_ttl)

    def register(self, service: PipelineService) -> None:
        service.register(cmd.RunPlanner, self.run_planner)
        service.register(cmd.RunPlanReview, self.run_plan_review)
        service.register(cmd.RunExecutor, self.run_executor)
        service.register(cmd.RunSelfCheck, self.run_self_check)
        service.register(cmd.PushAndOpenPr, self.push_and_open_pr)
        service.register(cmd.RunReviewer, self.run_reviewer)

    # -- one model run per command -------------------------------------------------------

    @property
    def _ledger(self) -> RoleRunLedger:
        assert self.ledger is not None  # set in __post_init__
        return self.ledger

    def _once(
        self,
        command: Any,
        context: CommandContext,
        perform: Callable[[RunClaim], Performed],
        replay: Callable[[RoleOutcome], Performed | None] | None = None,
    ) -> Performed:
        """Run `perform` only if no delivery of `command` ran (or runs) the model: a
        recorded outcome is reused (`replay`; None from it: the work is gone, run again),
        a live claim of another delivery is waited for, an expired one is taken over."""
        ref = self._ref(context)
        token = uuid.uuid4().hex
        while True:
            claim = self._ledger.claim(ref, command.key, token)
            if isinstance(claim, Recorded):
                log.warning(
                    "role run already completed; its outcome is reused",
                    extra={"item": context.item.key, "command": command.key},
                )
                reused = (replay or _replayed)(claim.outcome)
                if reused is not None:
                    return reused
                self._ledger.forget(ref, command.key)
                continue
            if not isinstance(claim, Busy):
                break
            if not self.service.still_awaits(context.repo, context.issue, command.key):
                return Performed()  # cancelled or answered meanwhile: nothing to do
            log.info(
                "role run in progress elsewhere; waiting",
                extra={"item": context.item.key, "command": command.key},
            )
            self.clock.sleep(min(self._ledger.ttl.total_seconds() / 6, 1.0))
        run = RunClaim(self._ledger, ref, command.key, token, carried=claim.carried)
        try:
            with ClaimKeeper(self._ledger, ref, command.key, token):
                performed = perform(run)
        except EscalatingStepError as error:
            failure = RoleOutcome(
                code=error.code, message=str(error), tokens=error.spend.tokens, usd=error.spend.usd
            )
            if run.record(failure):
                raise
            return Performed()  # another delivery holds the claim now: it reports
        except TerminalError:
            if not run.recorded:
                run.release()
            raise
        except Exception as error:
            if run.recorded:
                raise
            run.release()
            if not context.last_attempt:
                raise  # retried: the next run carries what this one spent
            # the command ends here: the item escalates with what its runs spent
            spent = run.left_behind()
            item = context.item.spend
            total = Spend(item.tokens + spent.tokens, item.usd + spent.usd)
            detail = f"gave up after {context.attempt} attempts: {type(error).__name__}: {error}"
            raise EscalatingStepError("step_failed", detail, total) from error
        except BaseException:
            if not run.recorded:
                run.release()
            raise
        event = None if performed.event is None else encode_event(performed.event)
        if not run.record(RoleOutcome(event=event)):
            log.warning(
                "role run's claim was taken over; its result is not reported",
                extra={"item": context.item.key, "command": command.key},
            )
            return Performed()
        return performed

    # -- shared pieces -------------------------------------------------------------------

    def _ref(self, context: CommandContext) -> ItemRef:
        return ItemRef(context.repo, context.issue)

    def _github(self, context: CommandContext) -> GitHubPort:
        return self.github_for(context.installation_id)

    def _agent_item(self, context: CommandContext) -> AgentItem:
        issue = self._github(context).get_issue(context.repo, context.issue)
        return AgentItem(key=context.item.key, title=issue.title, body=issue.body or "")

    def _worktree(
        self,
        context: CommandContext,
        *,
        fresh: bool = False,
        at: str | None = None,
        sync: bool = True,
    ) -> Worktree:
        """The item's worktree on this replica, fetched. With `sync`, its HEAD is moved to
        `at`, or else to the pushed branch when there is one: the pushed branch is the
        truth any replica sees, so a job works on the commits an earlier job made wherever
        it ran (a worktree this replica made earlier may be behind it)."""
        policy = self.policy_for(context.repo)
        spec = self.spec_for(context.repo)
        title = self._github(context).get_issue(context.repo, context.issue).title
        token = self.token_for(context.installation_id)
        if fresh:
            worktree = checkout_for_resume(
                self.workspace, spec, self._ref(context), slugify(title), policy.queue.base, token
            )
        else:
            worktree = self.workspace.create_worktree(
                spec, context.issue, slugify(title), policy.queue.base, token
            )
        if sync:
            target = at or observed_branch_sha(self.workspace, spec, worktree.branch)
            if target is not None and head_sha(worktree.path) != target:
                move_worktree(worktree.path, target)
        return worktree

    def _recorded_head(self, context: CommandContext) -> str | None:
        """The commit the executor pushed for the item's current run (None: none yet)."""
        recorded = read_data(self.engine, self._ref(context)).get(HEAD_KEY) or {}
        if recorded.get("run") != context.item.run:
            return None
        sha = recorded.get("sha")
        return str(sha) if sha else None

    def _remember_head(self, context: CommandContext, sha: str) -> None:
        run = context.item.run

        def remember(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, HEAD_KEY: {"run": run, "sha": sha}}

        change_data(self.engine, self._ref(context), remember)

    def _context(
        self,
        context: CommandContext,
        claim: RunClaim,
        model: str,
        heartbeat: LeaseHeartbeat | None = None,
    ) -> RunContext:
        """The run's context. Its spend starts from the item's plus what earlier runs of
        the command that never reported spent (`claim.carried`); before every model call
        the command's spend and the call's worst case are noted on the claim."""
        ref = self._ref(context)
        key = claim.key
        item_spend = context.item.spend
        spent = Spend(item_spend.tokens + claim.carried.tokens, item_spend.usd + claim.carried.usd)
        if claim.carried.tokens or claim.carried.usd:
            log.warning(
                "role run carries the spend of earlier runs that never reported",
                extra={
                    "item": context.item.key,
                    "command": key,
                    "carried": claim.carried.describe(),
                },
            )

        def command_spend(spend: AgentSpend) -> Spend:
            return Spend(spend.tokens - item_spend.tokens, spend.usd - item_spend.usd)

        def before_call(spend: AgentSpend, estimate: CallEstimate) -> bool:
            return claim.note(command_spend(spend), Spend(estimate.tokens, estimate.usd))

        def after_call(spend: AgentSpend) -> None:
            claim.settle(command_spend(spend))

        def should_stop() -> bool:
            if heartbeat is not None and heartbeat.lost is not None:
                return True
            if read_takeover(self.engine, ref).active:
                return True
            return not self.service.still_awaits(context.repo, context.issue, key)

        return RunContext(
            work_item=context.item.key,
            model=self.model or model,
            provider=self.provider,
            prices=self.prices,
            limits=run_limits(self.policy_for(context.repo)),
            clock=self.clock,
            timeline=self.timeline_for(),
            redactor=self.redactor,
            should_stop=should_stop,
            result_cap=self.result_cap,
            spend=AgentSpend(usage=Usage(input_tokens=spent.tokens), usd=spent.usd),
            before_call=before_call,
            after_call=after_call,
        )

    @staticmethod
    def _spend(run: RunContext) -> Spend:
        return Spend(tokens=run.spend.tokens, usd=run.spend.usd)

    def _stopped(
        self,
        context: CommandContext,
        run: RunContext,
        status: RunStatus,
        reason: str | None,
        detail: str,
    ) -> Performed:
        """A role run that produced nothing: why, as the pipeline's event."""
        if status is RunStatus.TAKEN_OVER:
            takeover = read_takeover(self.engine, self._ref(context))
            if takeover.active and takeover.by:
                return Performed(ev.TakeoverRequested(takeover.by))
            return Performed()  # the item no longer waits for this run: nothing to report
        if status is RunStatus.EXHAUSTED:
            return Performed(ev.BudgetExhausted(reason or "budget", self._spend(run), detail))
        code = reason or "step_failed"
        raise EscalatingStepError(code, f"{code}: {detail}", self._spend(run))

    def _plan(self, context: CommandContext, plan_id: str) -> Plan:
        plan = load_plan(self.engine, self._ref(context))
        if plan is None or plan.plan_id != plan_id:
            raise TerminalError(f"{context.item.key}: the approved plan {plan_id} is not saved")
        return plan

    # -- roles ---------------------------------------------------------------------------

    def run_planner(self, command: cmd.RunPlanner, context: CommandContext) -> Performed:
        return self._once(command, context, lambda run: self._plan_once(command, context, run))

    def _plan_once(
        self, command: cmd.RunPlanner, context: CommandContext, claim: RunClaim
    ) -> Performed:
        policy = self.policy_for(context.repo)
        worktree = self._worktree(context)
        run = self._context(context, claim, policy.agents.planner.model)
        findings = feedback_findings((command.feedback,), self.redactor)
        result = run_role(
            run,
            planner_spec(self.max_tokens),
            Toolbox(worktree.path, READ_ONLY_TOOLS),
            planner_message(self._agent_item(context), findings),
        )
        if result.product is None:
            return self._stopped(context, run, result.status, result.reason, result.detail)
        plan = result.product
        save_plan(self.engine, self._ref(context), plan)
        return Performed(
            ev.PlanReady(
                answers=command.key,
                plan_id=plan.plan_id,
                summary=plan.summary,
                paths=tuple(plan.paths),
                evaluation=risk_of(policy, plan.paths),
                spend=self._spend(run),
            )
        )

    def run_plan_review(self, command: cmd.RunPlanReview, context: CommandContext) -> Performed:
        return self._once(
            command, context, lambda run: self._review_plan_once(command, context, run)
        )

    def _review_plan_once(
        self, command: cmd.RunPlanReview, context: CommandContext, claim: RunClaim
    ) -> Performed:
        policy = self.policy_for(context.repo)
        plan = self._plan(context, command.plan_id)
        worktree = self._worktree(context)
        run = self._context(context, claim, policy.agents.reviewer.model)
        result = run_role(
            run,
            plan_reviewer_spec(self.max_tokens, plan),
            Toolbox(worktree.path, READ_ONLY_TOOLS),
            plan_review_message(self._agent_item(context), plan),
        )
        if result.product is None:
            return self._stopped(context, run, result.status, result.reason, result.detail)
        review = result.product
        return Performed(
            ev.PlanReviewed(
                answers=command.key,
                plan_id=plan.plan_id,
                verdict=Verdict(effective_verdict(review).value),
                summary=_review_text(review.summary, review.findings),
                spend=self._spend(run),
            )
        )

    def _fence(self, context: CommandContext, holder: str) -> ItemFence | None:
        """The item's leases as held now (`StaleLease` when lost: nothing is written)."""
        return fence_for(self.locks, context.repo, holder, context.item.lock_subsystems)

    def run_executor(self, command: cmd.RunExecutor, context: CommandContext) -> Performed:
        return self._once(
            command,
            context,
            lambda run: self._execute_once(command, context, run),
            lambda outcome: self._replay_execution(command, context, outcome),
        )

    def _execute_once(
        self, command: cmd.RunExecutor, context: CommandContext, claim: RunClaim
    ) -> Performed:
        policy = self.policy_for(context.repo)
        plan = self._plan(context, command.plan_id)
        fence = self._fence(context, command.holder)
        resumed = _resumed(context)
        worktree = self._worktree(context, fresh=resumed)
        expected = observed_branch_sha(self.workspace, self.spec_for(context.repo), worktree.branch)
        base = merge_base(worktree.path, worktree.base_sha)
        commands = tuple(policy.agents.commands)
        toolbox = Toolbox(
            worktree.path,
            EXECUTOR_TOOLS,
            sandbox=self.sandbox_for(worktree.path),
            allowlist=CommandAllowlist.of(commands),
            write_scope=tuple(plan.paths),
        )
        history = ""
        if resumed:
            history = run_git(worktree.path, "log", "--format=%h %an: %s", f"{base}..HEAD").text
        with LeaseHeartbeat(self.locks, fence, self.lock_ttl) as heartbeat:
            run = self._context(context, claim, policy.agents.executor.model, heartbeat)
            result = run_role(
                run,
                executor_spec(self.max_tokens, toolbox.commands),
                toolbox,
                executor_message(
                    self._agent_item(context),
                    plan,
                    commands,
                    feedback_findings(command.feedback, self.redactor),
                    history,
                ),
            )
        # a human took the item over: the leases are theirs now; the work is handed over
        # (pushed without the fence, as a compare-and-swap that cannot overwrite a commit of
        # theirs) and the takeover reported, which is the human's fact, not a fenced result
        handover = read_takeover(self.engine, self._ref(context)).active
        lost = None if handover else heartbeat.lost
        label = "completed" if result.product is not None else (result.reason or "stopped")
        if lost is not None:
            label = "lease lost"
        self._commit(  # local to the worktree until pushed below
            worktree,
            plan,
            context,
            f"{label}: "
            + (result.product.summary if result.product is not None else "work in progress"),
        )
        if lost is not None:
            raise lost  # a holder that lost its leases pushes and reports nothing
        if handover:
            self._push_quietly(context, worktree, None, expected)
            return self._stopped(context, run, RunStatus.TAKEN_OVER, None, "")
        if result.product is None:
            self._push_quietly(context, worktree, fence, expected)
            performed = self._stopped(context, run, result.status, result.reason, result.detail)
            return Performed(performed.event, performed.repeat_after, fence)
        head = head_sha(worktree.path)
        if head == base:
            return Performed(
                ev.ExecutionDone(
                    command.key, ev.ExecutionKind.ESCALATED, "no_changes", self._spend(run)
                ),
                fence=fence,
            )
        done = ev.ExecutionDone(command.key, ev.ExecutionKind.COMPLETED, "", self._spend(run))
        # the run is recorded before its commit is published: a retry after a failed push
        # pushes the recorded commit again instead of asking the model again
        if not claim.record(RoleOutcome(event=encode_event(done), head=head)):
            return Performed()  # another delivery holds the claim now: it reports
        self._publish(context, worktree, fence, expected)
        self._remember_head(context, head)
        return Performed(done, fence=fence)

    def _publish(
        self,
        context: CommandContext,
        worktree: Worktree,
        fence: ItemFence | None,
        expected: str | None,
    ) -> str:
        """Push the executor's commit before it answers (so a self-check, push or review on
        any replica finds it): under the leases (checked right before), a compare-and-swap
        on the branch as the job found it, never forced."""
        check(self.engine, fence)
        return push_expecting(
            self.workspace,
            self.spec_for(context.repo),
            worktree,
            self.token_for(context.installation_id),
            expected,
        )

    def _replay_execution(
        self, command: cmd.RunExecutor, context: CommandContext, outcome: RoleOutcome
    ) -> Performed | None:
        """A completed executor run's outcome again, its commit published if it was not;
        None when the commit is neither on the branch nor here (the run is made again)."""
        if outcome.head is None:
            performed = _replayed(outcome)
            if performed.event is None:
                return performed
            return Performed(performed.event, fence=self._fence(context, command.holder))
        fence = self._fence(context, command.holder)
        worktree = self._worktree(context, sync=False)
        spec = self.spec_for(context.repo)
        expected = observed_branch_sha(self.workspace, spec, worktree.branch)
        if expected != outcome.head:
            if not has_commit(worktree.path, outcome.head):
                log.warning(
                    "the executor's recorded commit is lost; running it again",
                    extra={"item": context.item.key, "head": outcome.head},
                )
                return None
            move_worktree(worktree.path, outcome.head)
            self._publish(context, worktree, fence, expected)
        self._remember_head(context, outcome.head)
        return Performed(_replayed(outcome).event, fence=fence)

    def _commit(self, worktree: Worktree, plan: Plan, context: CommandContext, text: str) -> None:
        scope = WriteScope(plan.paths)
        discard_changes_outside(worktree.path, scope.allows)
        message = self.redactor.redact(
            f"{context.item.key}: {text.splitlines()[0][:60] if text else 'changes'}\n\n"
            f"Trunkline-Work-Item: {context.item.key}\n"
            f"Trunkline-Round: {context.item.exec_round}\n"
        )
        commit_all(worktree.path, message, self.author)

    def _push_quietly(
        self,
        context: CommandContext,
        worktree: Worktree,
        fence: ItemFence | None,
        expected: str | None,
    ) -> None:
        """Push the work in progress so a human can pick it up: only while the leases are
        held, only over the branch as the job found it, never forced."""
        check(self.engine, fence)
        try:
            push_expecting(
                self.workspace,
                self.spec_for(context.repo),
                worktree,
                self.token_for(context.installation_id),
                expected,
            )
        except PushRejectedError as error:
            log.warning(
                "work in progress not pushed", extra={"item": context.item.key, "error": str(error)}
            )

    def run_self_check(self, command: cmd.RunSelfCheck, context: CommandContext) -> Performed:
        policy = self.policy_for(context.repo)
        worktree = self._worktree(context, at=self._recorded_head(context))
        sandbox = self.sandbox_for(worktree.path)
        ran: list[str] = []
        for line in policy.agents.commands:
            try:
                outcome = sandbox.run(shlex.split(line))
            except CommandRefusedError as error:
                raise TerminalError(f"self-check could not run {line!r}: {error}") from error
            ran.append(line)
            if outcome.exit_code != 0 or outcome.timed_out:
                summary = self_check_failure(line, outcome, self.redactor)
                return Performed(ev.SelfCheckDone(command.key, False, summary))
        summary = "passed: " + (", ".join(f"`{line}`" for line in ran) or "no commands")
        return Performed(ev.SelfCheckDone(command.key, True, summary))

    def push_and_open_pr(self, command: cmd.PushAndOpenPr, context: CommandContext) -> Performed:
        policy = self.policy_for(context.repo)
        fence = self._fence(context, command.holder)
        # the executor's commit as it pushed it: a branch that moved since is not adopted
        # (the compare-and-swap below refuses to push over it)
        worktree = self._worktree(context, at=self._recorded_head(context))
        spec = self.spec_for(context.repo)
        expected = observed_branch_sha(self.workspace, spec, worktree.branch)
        check(self.engine, fence)  # right before the push
        sha = push_expecting(
            self.workspace, spec, worktree, self.token_for(context.installation_id), expected
        )
        github = self._github(context)
        ref = self._ref(context)
        number = command.pr
        if number is None:
            recorded = read_data(self.engine, ref).get(PR_KEY) or {}
            if recorded.get("run") == context.item.run:
                number = int(recorded["number"])
        if number is None:
            # a job killed after creating the PR and before noting it: adopt that PR
            pull = github.find_open_pull(context.repo, head=worktree.branch, base=policy.queue.base)
            if pull is None:
                title = github.get_issue(context.repo, context.issue).title
                check(self.engine, fence)  # right before the pull request is created
                pull = github.create_pull(
                    context.repo,
                    title=title,
                    head=worktree.branch,
                    base=policy.queue.base,
                    body=pull_request_body(context.issue, command),
                )
            number = pull.number
            run = context.item.run

            def remember(data: dict[str, Any]) -> dict[str, Any]:
                return {**data, PR_KEY: {"run": run, "number": number}}

            change_data(self.engine, ref, remember)
        return Performed(ev.PrOpened(command.key, number, sha), fence=fence)

    def run_reviewer(self, command: cmd.RunReviewer, context: CommandContext) -> Performed:
        return self._once(command, context, lambda run: self._review_once(command, context, run))

    def _review_once(
        self, command: cmd.RunReviewer, context: CommandContext, claim: RunClaim
    ) -> Performed:
        policy = self.policy_for(context.repo)
        plan_id = context.item.plan_id or ""
        plan = self._plan(context, plan_id)
        worktree = self._worktree(context, at=command.sha)
        diff = diff_since(worktree.path, merge_base(worktree.path, worktree.base_sha))
        run = self._context(context, claim, policy.agents.reviewer.model)
        result = run_role(
            run,
            reviewer_spec(self.max_tokens, command.sha),
            Toolbox(worktree.path, READ_ONLY_TOOLS),
            review_message(self._agent_item(context), plan, command.sha, diff),
        )
        if result.product is None:
            return self._stopped(context, run, result.status, result.reason, result.detail)
        review = result.product
        return Performed(
            ev.ReviewDone(
                answers=command.key,
                sha=command.sha,
                verdict=Verdict(effective_verdict(review).value),
                findings=len(review.findings),
                summary=_review_text(review.summary, review.findings),
                spend=self._spend(run),
                notes=review_notes(review.findings),
            )
        )

    def resume_job(self, job: ClaimedJob) -> None:
        """The `agents_resume` job handler (see `resume_handler`)."""
        resume_handler(self.service)(job)


def resume_handler(service: PipelineService) -> Callable[[ClaimedJob], None]:
    """The `agents_resume` job handler: `/trunkline resume` (enqueued by the takeover
    handlers' `JobLauncher`) -> the pipeline's `Resumed(by)`. Idempotent: the pipeline
    ignores a `Resumed` for an item that is not taken over."""

    def handle(job: ClaimedJob) -> None:
        repo = str(job.payload["repo"])
        issue = int(job.payload["issue_number"])
        by = str(job.payload.get("requested_by") or "someone")
        if service.item(repo, issue) is None:
            raise TerminalError(f"{repo}#{issue} is not a pipeline work item")
        service.submit(repo, issue, ev.Resumed(by))

    return handle


def _resumed(context: CommandContext) -> bool:
    """True when the executor continues after a takeover (its branch may have new commits)."""
    history = context.item.history
    return (
        bool(history)
        and history[-1].from_state is not None
        and (history[-1].from_state.value == "taken_over")
    )


def review_notes(findings: Sequence[Finding]) -> tuple[ReviewNote, ...]:
    """The findings that name a path and a line, as line comments of the App's review."""
    return tuple(
        ReviewNote(f.path, f.line, f"**{f.severity}**: {f.message}"[:_FEEDBACK_LIMIT])
        for f in findings
        if f.path and f.line and f.line > 0
    )


def _review_text(summary: str, findings: Sequence[Finding]) -> str:
    lines = [summary.strip()]
    for finding in findings:
        where = (
            f"{finding.path}:{finding.line}"
            if finding.path and finding.line
            else (finding.path or "")
        )
        lines.append(f"- [{finding.severity}] {where} {finding.message}".replace("  ", " "))
    return "\n".join(line for line in lines if line)[: _FEEDBACK_LIMIT * 2]
