"""The tool-use loop of one role run: budgets before calls, tools, typed hand-off, timeline.

Performs I/O only through its collaborators (provider, toolbox, clock, timeline sink).
A run sends the role's system prompt and first message, executes the tools the model calls,
and ends when the model submits its product through the submit tool and the product
validates (pydantic, plus the role's semantic checks). Before every call the budget is
checked with the most the call could cost, then `before_call` (when set) is told the spend
and that estimate, and may stop the run; at every turn boundary `should_stop()` is asked
(a takeover). An invalid product, or a turn without any tool call, gets ONE repair turn with
the errors fed back (a tool_result with is_error); a second failure fails the run. A
`max_tokens` stop fails the run: a truncated hand-off is never accepted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from trunkline.agents.budget import (
    BudgetLimits,
    CallEstimate,
    Exhausted,
    PriceTable,
    Spend,
    check_call,
    cost_of,
    estimate_call,
    price_for,
)
from trunkline.agents.contracts import Review, tool_schema
from trunkline.agents.messages import (
    ContentBlock,
    Message,
    ModelRequest,
    ModelResponse,
    Provider,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    Usage,
    input_token_ceiling,
    prompt_digest,
)
from trunkline.agents.redaction import Redactor
from trunkline.agents.timeline import (
    RunFinished,
    RunStarted,
    StepRecord,
    TimelineSink,
    ToolCallRecord,
)
from trunkline.agents.tools import Toolbox, arguments_json
from trunkline.clock import Clock
from trunkline.errors import TrunklineError
from trunkline.telemetry.json_logs import bind_context

P = TypeVar("P", bound=BaseModel)
log = logging.getLogger(__name__)


class Role(StrEnum):
    PLANNER = "planner"
    PLAN_REVIEWER = "plan_reviewer"
    EXECUTOR = "executor"
    REVIEWER = "reviewer"


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXHAUSTED = "exhausted"
    TAKEN_OVER = "taken_over"


class FailureReason(StrEnum):
    INVALID_OUTPUT = "invalid_output"
    MAX_TOKENS_STOP = "max_tokens_stop"
    PROVIDER_ERROR = "provider_error"
    REFUSAL = "model_refusal"


@dataclass(frozen=True)
class RoleSpec(Generic[P]):
    role: Role
    system: str
    product: type[P]
    submit_tool: str
    submit_description: str
    max_tokens: int
    check: Callable[[P], list[str]] = field(default=lambda _product: [])

    @property
    def submit_spec(self) -> ToolSpec:
        return ToolSpec(self.submit_tool, self.submit_description, tool_schema(self.product))


@dataclass
class RunContext:
    """What every run of one work item shares: the money, the clock, the recorder."""

    work_item: str
    model: str
    provider: Provider
    prices: PriceTable
    limits: BudgetLimits
    clock: Clock
    timeline: TimelineSink
    redactor: Redactor
    should_stop: Callable[[], bool] = lambda: False
    result_cap: int = 4000
    spend: Spend = field(default_factory=Spend)
    started_monotonic: float | None = None
    runs: int = 0
    #: Called right before every model call with the spend so far and the most the call can
    #: cost (after the budget check passed); False stops the run before the call (its claim
    #: was taken over). The pipeline records both durably here, so a run that dies mid-call
    #: still counts against the item's caps.
    before_call: Callable[[Spend, CallEstimate], bool] | None = None
    #: Called after every answered call with the spend including it.
    after_call: Callable[[Spend], None] | None = None

    def elapsed(self) -> float:
        if self.started_monotonic is None:
            self.started_monotonic = self.clock.monotonic()
        return self.clock.monotonic() - self.started_monotonic

    def cap(self, text: str) -> str:
        text = self.redactor.redact(text)
        if len(text) > self.result_cap:
            return text[: self.result_cap] + f"... [{len(text) - self.result_cap} chars capped]"
        return text


@dataclass(frozen=True)
class RoleResult(Generic[P]):
    run_id: str
    status: RunStatus
    product: P | None
    reason: str | None
    detail: str
    usage: Usage
    cost_usd: Decimal


def _format_errors(error: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in item['loc']) or '(root)'}: {item['msg']}"
        for item in error.errors()
    ]


def _validate(spec: RoleSpec[P], arguments: object) -> tuple[P | None, list[str]]:
    try:
        product = spec.product.model_validate(arguments)
    except ValidationError as error:
        return None, _format_errors(error)
    problems = spec.check(product)
    return (None, problems) if problems else (product, [])


@dataclass
class _Run(Generic[P]):
    ctx: RunContext
    spec: RoleSpec[P]
    toolbox: Toolbox
    run_id: str
    usage: Usage = field(default_factory=Usage)
    cost: Decimal = Decimal(0)
    steps: int = 0

    def finish(
        self, status: RunStatus, reason: str | None, detail: str, product: P | None = None
    ) -> RoleResult[P]:
        log.info(
            "agent run finished",
            extra={
                "run_id": self.run_id,
                "role": self.spec.role.value,
                "status": status.value,
                "reason": reason,
                "steps": self.steps,
                "tokens": self.usage.total_tokens,
                "cost_usd": str(self.cost),
            },
        )
        self.ctx.timeline.run_finished(
            RunFinished(
                self.run_id,
                status.value,
                reason,
                self.usage,
                self.cost,
                self.ctx.clock.now(),
            )
        )
        return RoleResult(self.run_id, status, product, reason, detail, self.usage, self.cost)

    def record(
        self,
        request: ModelRequest,
        response: ModelResponse | None,
        calls: list[ToolCallRecord],
        usage: Usage,
        cost: Decimal,
        duration: float,
        *,
        verdict: str | None = None,
        note: str | None = None,
    ) -> None:
        self.steps += 1
        self.ctx.timeline.step_recorded(
            StepRecord(
                run_id=self.run_id,
                index=self.steps,
                role=self.spec.role.value,
                model=request.model,
                prompt_digest=prompt_digest(request),
                stop_reason=response.stop_reason.value if response else "not_sent",
                tool_calls=tuple(calls),
                usage=usage,
                cost_usd=cost,
                duration_seconds=duration,
                verdict=verdict,
                note=self.ctx.redactor.redact(note) if note else None,
            )
        )


def run_role(ctx: RunContext, spec: RoleSpec[P], toolbox: Toolbox, first: str) -> RoleResult[P]:
    """Run one role to its product, or to a typed stop (failed, exhausted, taken over).
    Every record logged during the run carries `agent_run` (the run's id) in its context."""
    ctx.runs += 1
    run_id = f"{ctx.work_item}/{ctx.runs}-{spec.role.value}"
    with bind_context(agent_run=run_id):
        return _run_role(ctx, spec, toolbox, first, run_id)


def _run_role(
    ctx: RunContext, spec: RoleSpec[P], toolbox: Toolbox, first: str, run_id: str
) -> RoleResult[P]:
    run = _Run(ctx, spec, toolbox, run_id)
    price = price_for(ctx.prices, ctx.model)
    ctx.elapsed()
    ctx.timeline.run_started(
        RunStarted(run.run_id, ctx.work_item, spec.role.value, ctx.model, ctx.clock.now())
    )
    messages: list[Message] = [Message("user", (TextBlock(first),))]
    tools = (*toolbox.specs, spec.submit_spec)
    repair_used = False
    executor_turn = spec.role is Role.EXECUTOR
    while True:
        if ctx.should_stop():
            return run.finish(RunStatus.TAKEN_OVER, "taken_over", "stopped at a turn boundary")
        request = ModelRequest(
            ctx.model, spec.system, tuple(messages), tools, spec.max_tokens, spec.role.value
        )
        estimate = estimate_call(
            input_token_ceiling(request), spec.max_tokens, price, ctx.provider.max_call_seconds()
        )
        exhausted: Exhausted | None = check_call(
            ctx.spend,
            ctx.limits,
            estimate,
            elapsed_seconds=ctx.elapsed(),
            executor_turn=executor_turn,
        )
        if exhausted is not None:
            detail = (
                f"the next {spec.role.value} call could cost up to {estimate.tokens} tokens / "
                f"${estimate.usd:.4f}; spent {ctx.spend.tokens} tokens / ${ctx.spend.usd:.4f} "
                f"of {ctx.limits.tokens} / ${ctx.limits.usd}"
            )
            return run.finish(RunStatus.EXHAUSTED, exhausted.value, detail)
        if ctx.before_call is not None and not ctx.before_call(ctx.spend, estimate):
            return run.finish(
                RunStatus.TAKEN_OVER, "claim_lost", "another delivery took this run over"
            )
        started = ctx.clock.monotonic()
        try:
            response = ctx.provider.complete(request)
        except TrunklineError as error:
            duration = ctx.clock.monotonic() - started
            run.record(request, None, [], Usage(), Decimal(0), duration, note=str(error))
            return run.finish(RunStatus.FAILED, FailureReason.PROVIDER_ERROR.value, str(error))
        duration = ctx.clock.monotonic() - started
        cost = cost_of(response.usage, price)
        ctx.spend = ctx.spend.add_call(response.usage, cost, executor_turn=executor_turn)
        if ctx.after_call is not None:
            ctx.after_call(ctx.spend)
        run.usage = run.usage + response.usage
        run.cost += cost

        if response.stop_reason is StopReason.MAX_TOKENS:
            note = f"stopped at max_tokens={spec.max_tokens}: the output was truncated"
            run.record(request, response, [], response.usage, cost, duration, note=note)
            return run.finish(RunStatus.FAILED, FailureReason.MAX_TOKENS_STOP.value, note)
        if response.stop_reason is StopReason.REFUSAL:
            run.record(request, response, [], response.usage, cost, duration, note="refusal")
            return run.finish(RunStatus.FAILED, FailureReason.REFUSAL.value, "the model refused")

        results: list[ContentBlock] = []
        calls: list[ToolCallRecord] = []
        product: P | None = None
        submit_errors: list[str] | None = None
        for use in response.tool_uses:
            args = ctx.cap(arguments_json(use.input))
            if product is not None:
                content, is_error = "not executed: the product was already submitted", True
                calls.append(ToolCallRecord(use.id, use.name, args, content, True, False))
                results.append(ToolResultBlock(use.id, content, True))
                continue
            if use.name == spec.submit_tool:
                product, errors = _validate(spec, use.input)
                if product is not None:
                    content, is_error = "accepted", False
                else:
                    submit_errors = errors
                    content = (
                        "the submission is invalid; fix these errors and call "
                        f"{spec.submit_tool} again:\n" + "\n".join(f"- {e}" for e in errors)
                    )
                    is_error = True
                calls.append(
                    ToolCallRecord(use.id, use.name, args, ctx.cap(content), is_error, False)
                )
                results.append(ToolResultBlock(use.id, ctx.redactor.redact(content), is_error))
                continue
            outcome = toolbox.execute(use.name, use.input)
            if outcome.refused:
                log.warning(
                    "agent tool call refused",
                    extra={"run_id": run.run_id, "tool": use.name, "step": run.steps + 1},
                )
            safe = ctx.redactor.redact(outcome.content)
            calls.append(
                ToolCallRecord(
                    use.id,
                    use.name,
                    args,
                    ctx.cap(safe),
                    outcome.is_error,
                    outcome.refused,
                    ctx.cap(outcome.refusal_reason) if outcome.refusal_reason else None,
                )
            )
            results.append(ToolResultBlock(use.id, safe, outcome.is_error))

        verdict = product.verdict.value if isinstance(product, Review) else None
        problem: str | None = None
        if product is None and not response.tool_uses:
            problem = f"the turn ended without calling {spec.submit_tool}"
        elif submit_errors is not None:
            problem = "invalid product: " + "; ".join(submit_errors)
        run.record(
            request, response, calls, response.usage, cost, duration, verdict=verdict, note=problem
        )
        if product is not None:
            return run.finish(RunStatus.SUCCEEDED, None, "submitted", product)
        if problem is not None:
            if repair_used:
                return run.finish(
                    RunStatus.FAILED,
                    FailureReason.INVALID_OUTPUT.value,
                    f"{problem} (after the one repair turn)",
                )
            repair_used = True
        if not response.tool_uses:
            results.append(
                TextBlock(
                    f"You did not call a tool. Finish by calling {spec.submit_tool} with "
                    f"your {spec.product.__name__}; this is your one repair turn."
                )
            )
        assistant_content = response.content or (TextBlock("(no content)"),)
        messages.append(Message("assistant", tuple(assistant_content)))
        messages.append(Message("user", tuple(results)))


def product_json(product: BaseModel) -> str:
    return json.dumps(product.model_dump(mode="json"), indent=2, ensure_ascii=False)


__all__ = [
    "BudgetLimits",
    "FailureReason",
    "Role",
    "RoleResult",
    "RoleSpec",
    "RunContext",
    "RunStatus",
    "product_json",
    "run_role",
]
