"""The merge queue's slash commands and the registration of every gate handler.

Performs I/O (GitHub, the store, the queue service). `issue_comment.created` comments are
parsed by `trunkline.bot.slash_commands` (the one parser); this module handles `queue`,
`dequeue`, `approve`, `retry`, `priority` and `explain` on pull requests, and answers unknown
commands there with the parser's short help. `takeover`, `resume`, `cancel` and
`approve-plan` belong to the work items' handlers (`trunkline.bot.item_commands`,
`trunkline.bot.takeover_handlers`) and are skipped here (`AGENT_COMMANDS`), as are comments
on issues (not pull requests), including help replies there.

Every command is permission-checked through `GitHubPort.get_permission` against
`slash_commands.required_permission` (write, `explain` read); an unauthorized commenter gets
the parser's polite refusal and nothing else happens. Comments by bots are ignored (no
loops). Replies are sticky comments keyed by (comment id, line), so a redelivered webhook
edits the same reply instead of posting a second one; queue events are idempotent in the
engine. `register_queue_gates` wires these handlers, the review handlers
(`trunkline.bot.approvals`), gate refreshes on `pull_request` opened / synchronize /
reopened / ready_for_review and `merge_group` into a `Router`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from trunkline.bot.approval_store import ApprovalStore
from trunkline.bot.approvals import approve_head, observe_payload, register_approvals
from trunkline.bot.events import IssueCommentEvent, PullRequestEvent
from trunkline.bot.gate_runner import (
    BotReviewVerdicts,
    GateReading,
    GateRunner,
    GitHubFor,
    LeaseHeldLocks,
    QueuePort,
    ReviewVerdictSource,
    StoreWorkItems,
)
from trunkline.bot.merge_group import register_merge_group
from trunkline.bot.router import EventHandler, RoutedEvent, Router
from trunkline.bot.service import Service
from trunkline.bot.slash_commands import (
    CommandName,
    SlashCommand,
    UnknownCommand,
    parse_commands,
    permission_refusal,
)
from trunkline.errors import ConfigurationError
from trunkline.github.model import Permission
from trunkline.github.policy_file import read_policy
from trunkline.github.port import GitHubPort
from trunkline.locks.leases import LockManager
from trunkline.policies.evaluation import Evaluation
from trunkline.policies.model import Policy
from trunkline.queue.config_from_policy import default_priority, queue_config_from_policy
from trunkline.queue.events import Dequeue, Enqueue, PriorityChanged
from trunkline.queue.explain import explain, render_markdown
from trunkline.queue.gates import tally_approvals
from trunkline.queue.model import OutcomeKind, Priority, QueueState
from trunkline.settings import Settings

log = logging.getLogger(__name__)

AGENT_COMMANDS = frozenset(
    {CommandName.TAKEOVER, CommandName.RESUME, CommandName.CANCEL, CommandName.APPROVE_PLAN}
)
"""Commands handled by the agents' handlers, not here."""

QUEUE_COMMANDS = frozenset(CommandName) - AGENT_COMMANDS


@dataclass(frozen=True)
class CommandContext:
    github: GitHubPort
    repo: str
    number: int
    login: str
    comment_id: int
    written_at: datetime | None = None  # the comment's created_at (GitHub's clock)


def reply_key(comment_id: int, line: int) -> str:
    return f"reply-{comment_id}-{line}"


def _reply(ctx: CommandContext, line: int, body: str) -> None:
    ctx.github.upsert_sticky_comment(ctx.repo, ctx.number, reply_key(ctx.comment_id, line), body)


def _is_bot(login: str, account_type: str | None) -> bool:
    return account_type == "Bot" or login.lower().endswith("[bot]")


@dataclass
class QueueCommands:
    runner: GateRunner
    queue: QueuePort

    # -- entry point ---------------------------------------------------------------------------

    def handle_comment(self, github: GitHubPort, payload: IssueCommentEvent) -> int:
        """Handle every queue command of the comment; returns how many were handled."""
        user = payload.comment.user
        if user is None or _is_bot(user.login, user.type):
            return 0
        if not payload.issue.is_pull_request:
            return 0  # comments on issues (work items) belong to the agents' handlers
        ctx = CommandContext(
            github,
            payload.repository.full_name,
            payload.issue.number,
            user.login,
            payload.comment.id,
            payload.comment.created_at,
        )
        permission: Permission | None = None
        handled = 0
        for command in parse_commands(payload.comment.body):
            if isinstance(command, UnknownCommand):
                _reply(ctx, command.line, command.help)
                handled += 1
                continue
            if command.name in AGENT_COMMANDS:
                continue
            if permission is None:
                permission = github.get_permission(ctx.repo, ctx.login)
            refusal = permission_refusal(ctx.login, command.name, permission)
            if refusal is not None:
                _reply(ctx, command.line, refusal)
            else:
                _reply(ctx, command.line, self.run(ctx, command))
            handled += 1
        return handled

    def run(self, ctx: CommandContext, command: SlashCommand) -> str:
        """Perform one authorized command on a pull request; returns the reply text."""
        actions: dict[CommandName, Callable[[CommandContext, SlashCommand], str]] = {
            CommandName.QUEUE: self.enqueue,
            CommandName.DEQUEUE: self.dequeue,
            CommandName.APPROVE: self.approve,
            CommandName.RETRY: self.retry,
            CommandName.PRIORITY: self.priority,
            CommandName.EXPLAIN: self.explain,
        }
        return actions[command.name](ctx, command)

    # -- commands ------------------------------------------------------------------------------

    def _queue_of(self, ctx: CommandContext) -> tuple[Policy | None, str]:
        """The base branch's policy and the queue's base branch (or an error text)."""
        pull = ctx.github.get_pull(ctx.repo, ctx.number)
        loaded = read_policy(ctx.github, ctx.repo, pull.base_ref)
        if not isinstance(loaded, Policy):
            return None, (
                f"The policy on `{pull.base_ref}` is invalid, so the queue cannot run: {loaded[0]}"
            )
        return loaded, loaded.queue.base

    def enqueue(self, ctx: CommandContext, command: SlashCommand, *, retry: bool = False) -> str:
        read_at = self.runner.clock.now()
        pull = ctx.github.get_pull(ctx.repo, ctx.number)
        if pull.state != "open" or pull.merged:
            return f"#{ctx.number} is not open, so it cannot be queued."
        policy, base = self._queue_of(ctx)
        if policy is None:
            return base
        if pull.base_ref != base:
            return (
                f"#{ctx.number} targets `{pull.base_ref}`, but the merge queue fast-forwards "
                f"`{base}` (policy `queue.base`)."
            )
        try:
            config = queue_config_from_policy(policy.queue)
        except ConfigurationError as error:
            return f"The merge queue is not configured correctly: {error}"
        base_sha = ctx.github.get_ref(ctx.repo, f"heads/{base}").sha
        priority = default_priority(policy)
        self.queue.submit(
            ctx.repo,
            base,
            Enqueue(ctx.number, pull.head_sha, priority, read_at=read_at),
            config=config,
            base_sha=base_sha,
        )
        reading = self.runner.refresh(ctx.github, ctx.repo, ctx.number)
        state = self.queue.state(ctx.repo, base)
        if state is None or state.entry(ctx.number) is None:
            outcome = None if state is None else state.outcome(ctx.number)
            why = f" ({outcome.kind}: {outcome.reason})" if outcome is not None else ""
            return f"#{ctx.number} is not in the merge queue: it already left it{why}."
        verb = "Re-queued" if retry else "Queued"
        where = _position(state, ctx.number)
        return (
            f"{verb} #{ctx.number} at `{pull.head_sha[:7]}` (priority {priority}){where}.\n\n"
            + _gate_lines(reading)
        )

    def dequeue(self, ctx: CommandContext, command: SlashCommand) -> str:
        policy, base = self._queue_of(ctx)
        if policy is None:
            return base
        state = self.queue.state(ctx.repo, base)
        if state is None or state.entry(ctx.number) is None:
            return f"#{ctx.number} is not in the merge queue."
        self.queue.submit(
            ctx.repo, base, Dequeue(ctx.number, ctx.login, f"dequeued by @{ctx.login}")
        )
        return f"Removed #{ctx.number} from the merge queue (asked by @{ctx.login})."

    def approve(self, ctx: CommandContext, command: SlashCommand) -> str:
        binding, reading = approve_head(
            self.runner,
            ctx.github,
            ctx.repo,
            ctx.number,
            ctx.login,
            written_at=ctx.written_at,
            named=command.sha,
        )
        if binding.sha is None or reading is None:
            return binding.refusal
        head = binding.sha
        if reading.inputs is None:
            return (
                f"Recorded your approval of `{head[:7]}`, but the gates cannot be evaluated: "
                + (reading.reports[-1].detail if reading.reports else "unknown reason")
            )
        tally = tally_approvals(reading.inputs)
        if reading.head_sha != head:
            counts = f"it does not count: the head moved on to `{reading.head_sha[:7]}`"
        elif ctx.login.lower() in {user.lower() for user in tally.counted}:
            counts = "it counts"
        else:
            reason = next(
                (text for login, text in tally.ignored if login == ctx.login.lower()),
                ctx.login,
            )
            counts = f"it does not count: {reason}"
        return f"Recorded @{ctx.login}'s approval of `{head[:7]}`; {counts}.\n\n" + _gate_lines(
            reading
        )

    def retry(self, ctx: CommandContext, command: SlashCommand) -> str:
        policy, base = self._queue_of(ctx)
        if policy is None:
            return base
        state = self.queue.state(ctx.repo, base)
        if state is not None and state.entry(ctx.number) is not None:
            return f"#{ctx.number} is already in the merge queue."
        outcome = None if state is None else state.outcome(ctx.number)
        if outcome is None or outcome.kind is not OutcomeKind.EJECTED:
            return (
                f"`/trunkline retry` re-queues a pull request the queue ejected; #{ctx.number} "
                "was not ejected. Use `/trunkline queue` to queue it."
            )
        return self.enqueue(ctx, command, retry=True) + f"\n\nIt was ejected: {outcome.reason}"

    def priority(self, ctx: CommandContext, command: SlashCommand) -> str:
        policy, base = self._queue_of(ctx)
        if policy is None:
            return base
        level = command.priority
        assert level is not None  # the parser guarantees an argument for `priority`
        state = self.queue.state(ctx.repo, base)
        if state is None or state.entry(ctx.number) is None:
            return f"#{ctx.number} is not in the merge queue; queue it first."
        self.queue.submit(ctx.repo, base, PriorityChanged(ctx.number, Priority(level.value)))
        after = self.queue.state(ctx.repo, base)
        return f"Priority of #{ctx.number} is now {level.value}{_position(after, ctx.number)}."

    def explain(self, ctx: CommandContext, command: SlashCommand) -> str:
        reading = self.runner.refresh(ctx.github, ctx.repo, ctx.number)
        parts = [f"**Gates of #{ctx.number} on `{reading.head_sha[:7]}`**", _gate_lines(reading)]
        if reading.evaluation is not None:
            parts += ["", render_evaluation(reading.evaluation)]
        if reading.policy is not None:
            state = self.queue.state(ctx.repo, reading.policy.queue.base)
            explanation = None if state is None else explain(state, ctx.number)
            if explanation is not None:
                parts += ["", render_markdown(explanation)]
            else:
                outcome = None if state is None else state.outcome(ctx.number)
                left = f" (last outcome: {outcome.kind}: {outcome.reason})" if outcome else ""
                parts += ["", f"**Merge queue:** #{ctx.number} is not queued{left}."]
        return "\n".join(parts)


def _position(state: QueueState | None, pr: int) -> str:
    position = None if state is None else state.position(pr)
    if state is None or position is None:
        return ""
    return f", number {position} of {len(state.entries)} in the queue"


def _gate_lines(reading: GateReading) -> str:
    return "\n".join(
        f"- {'✅' if report.ok else '❌'} {report.gate}: {report.detail}"
        for report in reading.reports
    )


def render_evaluation(evaluation: Evaluation) -> str:
    """The policy evaluation of a PR's diff, for `/trunkline explain` (pure)."""
    approvals = evaluation.approvals
    lines = [
        "**Policy evaluation of the diff**",
        "- subsystems: "
        + (
            ", ".join(
                f"{touch.name} (owners: {', '.join(touch.owners) or 'none'})"
                for touch in evaluation.subsystems
            )
            or "none"
        ),
        f"- risk: {evaluation.risk}",
    ]
    lines += [f"  - {reason.message}" for reason in evaluation.reasons[:20]]
    if approvals.required == 0:
        lines.append("- approvals: none required")
    else:
        source = "owners" if approvals.from_owners else "listed approvers"
        who = ", ".join(approvals.approvers) or "nobody"
        requester = "may" if approvals.allow_requester else "may not"
        lines.append(
            f"- approvals: {approvals.required} from the {source} ({who}); "
            f"the requester {requester} count"
        )
    return "\n".join(lines)


# -- handlers and registration -----------------------------------------------------------------


def comment_handler(commands: QueueCommands, github_for: GitHubFor) -> EventHandler:
    def handle(event: RoutedEvent) -> None:
        payload = event.payload
        if not isinstance(payload, IssueCommentEvent):
            return
        installation = payload.installation.id if payload.installation else None
        commands.handle_comment(github_for(installation), payload)

    return handle


def pull_request_handler(runner: GateRunner, github_for: GitHubFor) -> EventHandler:
    """Evaluate and report the gates whenever a PR's head is new."""

    def handle(event: RoutedEvent) -> None:
        payload = event.payload
        if not isinstance(payload, PullRequestEvent) or payload.pull_request.state != "open":
            return
        installation = payload.installation.id if payload.installation else None
        observe_payload(runner, payload.repository.full_name, payload.pull_request)
        runner.refresh(github_for(installation), payload.repository.full_name, payload.number)

    return handle


PULL_REQUEST_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review", "edited")


def register_queue_gates(
    router: Router, runner: GateRunner, queue: QueuePort, github_for: GitHubFor
) -> QueueCommands:
    """Register the queue's commands, approvals, gate refreshes and merge-group gate."""
    commands = QueueCommands(runner, queue)
    router.add(comment_handler(commands, github_for), "issue_comment", "created")
    pulls = pull_request_handler(runner, github_for)
    for action in PULL_REQUEST_ACTIONS:
        router.add(pulls, "pull_request", action)
    register_approvals(router, runner, github_for)
    register_merge_group(router, runner, github_for)
    return commands


def build_gate_runner(
    engine: Engine,
    queue: QueuePort,
    settings: Settings,
    *,
    verdicts: ReviewVerdictSource | None = None,
) -> GateRunner:
    """The production `GateRunner`: store approvals, work items and leases, bot reviews."""
    return GateRunner(
        approvals=ApprovalStore(engine),
        work_items=StoreWorkItems(engine),
        held_locks=LeaseHeldLocks(LockManager(engine)),
        verdicts=verdicts or BotReviewVerdicts(settings.github_bot_login),
        queue=queue,
        bot_login=settings.github_bot_login,
        team_members={team: frozenset(members) for team, members in settings.team_members.items()},
    )


def configure_queue_gates(
    service: Service, queue: QueuePort, github_for: GitHubFor
) -> QueueCommands:
    """For `build_service(settings, configure=...)`: wire everything of this area into the
    service's router (the composition root gives the queue service and the GitHub clients,
    e.g. `InstallationClients.for_installation`)."""
    runner = build_gate_runner(service.engine, queue, service.settings)
    return register_queue_gates(service.router, runner, queue, github_for)
