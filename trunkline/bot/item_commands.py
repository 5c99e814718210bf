"""A work item's slash commands and `issues.closed`: the human answers the pipeline waits for.

Performs I/O through its collaborators: the GitHub port of the delivery's installation
(the commenter's permission, the item's pull request, labels, replies), the repository's
policy (`policy_for`) and `PipelineService.submit`. Runs inside the `process_delivery` job
(at-least-once), which is safe: the state machine ignores what it has already decided (a
`PlanApproved` for a plan no longer awaiting approval, a `CancelRequested` for an item that
has ended, a `Labeled` for a live item), and every reply is a sticky comment keyed by the
command's comment id and line, so a redelivery edits the reply it already wrote.

On a work item's issue (or, for `cancel`, on its pull request):

- `/trunkline approve-plan`: `PlanApproved(by, plan_id)` for an item awaiting plan approval,
  from someone with write access whom the plan's approval rule allows
  (`trunkline.bot.plan_approval`);
- `/trunkline cancel`: `CancelRequested(by)`: the agents stop, the locks are released, the
  pull request leaves the queue and the dispatch label is removed;
- `/trunkline retry` (on the issue; on a pull request it belongs to the queue): a new run of
  an item that ended escalated, cancelled, failed or refused, exactly as if the commenter had
  labeled the issue again (the label is put back first when it is missing);
- `/trunkline explain`: where the item is and why;
- queue commands (`queue`, `dequeue`, `approve`, `priority`) on an issue get a reply saying
  they belong on the pull request, and unknown commands get the parser's short help.

`takeover` and `resume` are `trunkline.bot.takeover_handlers`' business; comments by bots
are ignored. `issues.closed` by a person with write access cancels the issue's live item,
unless the item's pull request was merged (closing keywords close the issue when it merges,
and the merge is reported by `pull_request.closed` or the queue); a close by anyone else
(the issue's author, a triager) leaves the work going. A cancel, a close and a retry also
lower a takeover flag the item still carries, so a later run does not start taken over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from trunkline.agents.takeover import clear_takeover
from trunkline.agents.work_item_rows import ItemRef, item_of_pull
from trunkline.bot.dispatch_handlers import is_bot_sender, policy_permission
from trunkline.bot.events import IssueCommentEvent, IssuesEvent
from trunkline.bot.plan_approval import plan_approval_refusal
from trunkline.bot.queue_commands import reply_key
from trunkline.bot.router import RoutedEvent, Router
from trunkline.bot.slash_commands import (
    CommandName,
    SlashCommand,
    UnknownCommand,
    parse_commands,
    permission_refusal,
)
from trunkline.github.model import Permission
from trunkline.github.port import GitHubPort
from trunkline.pipeline import events as ev
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.runner import PipelineService
from trunkline.pipeline.states import RESTARTABLE, TERMINAL, WorkState
from trunkline.policies.evaluation import Change, evaluate
from trunkline.policies.model import Policy

log = logging.getLogger(__name__)

#: Handled here, on issues; `cancel` also on a work item's pull request.
ITEM_COMMANDS = frozenset(
    {CommandName.APPROVE_PLAN, CommandName.CANCEL, CommandName.RETRY, CommandName.EXPLAIN}
)
#: Handled elsewhere on an issue (the takeover handlers).
_ELSEWHERE = frozenset({CommandName.TAKEOVER, CommandName.RESUME})


@dataclass(frozen=True)
class _Comment:
    github: GitHubPort
    repo: str
    number: int  # the issue or pull request commented on
    login: str
    comment_id: int
    on_pull_request: bool
    label_names: tuple[str, ...]

    def reply(self, line: int, body: str) -> None:
        self.github.upsert_sticky_comment(
            self.repo, self.number, reply_key(self.comment_id, line), body
        )


@dataclass
class ItemCommands:
    service: PipelineService
    github_for: Callable[[int | None], GitHubPort]
    policy_for: Callable[[str], Policy]
    team_members: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def register(self, router: Router) -> None:
        router.add(self.on_comment, "issue_comment", "created")
        router.add(self.on_issue_closed, "issues", "closed")

    # -- comments ------------------------------------------------------------------------

    def on_comment(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, IssueCommentEvent):
            return
        user = payload.comment.user or payload.sender
        if user is None or is_bot_sender(user.login, user.type):
            return
        installation = payload.installation.id if payload.installation else None
        comment = _Comment(
            self.github_for(installation),
            payload.repository.full_name,
            payload.issue.number,
            user.login,
            payload.comment.id,
            payload.issue.is_pull_request,
            payload.issue.label_names,
        )
        permission: Permission | None = None
        for command in parse_commands(payload.comment.body):
            if comment.on_pull_request:
                # on a pull request only `cancel` and `approve-plan` are the items' business
                # (the queue's handler answers everything else there, help included)
                if isinstance(command, UnknownCommand) or command.name not in {
                    CommandName.CANCEL,
                    CommandName.APPROVE_PLAN,
                }:
                    continue
            elif isinstance(command, UnknownCommand):
                comment.reply(command.line, command.help)
                continue
            elif command.name in _ELSEWHERE:
                continue
            elif command.name not in ITEM_COMMANDS:
                comment.reply(command.line, _belongs_on_a_pull_request(comment, command))
                continue
            if permission is None:
                permission = comment.github.get_permission(comment.repo, comment.login)
            refusal = permission_refusal(comment.login, command.name, permission)
            if refusal is None:
                refusal = self._run(comment, command, permission)
            comment.reply(command.line, refusal)

    def _run(self, comment: _Comment, command: SlashCommand, permission: Permission) -> str:
        item = self._item(comment)
        if item is None:
            kind = "pull request" if comment.on_pull_request else "issue"
            return (
                f"#{comment.number} is not a trunkline work item, so `/trunkline "
                f"{command.name.value}` has nothing to act on on this {kind}."
            )
        log.info(
            "work item command",
            extra={
                "repo": item.repo,
                "issue": item.issue,
                "command": command.name.value,
                "by": comment.login,
            },
        )
        if command.name is CommandName.APPROVE_PLAN:
            return self._approve_plan(comment, item)
        if command.name is CommandName.CANCEL:
            return self._cancel(comment, item)
        if command.name is CommandName.RETRY:
            return self._retry(comment, item, permission)
        return explain_item(item)

    def _item(self, comment: _Comment) -> WorkItem | None:
        if not comment.on_pull_request:
            return self.service.item(comment.repo, comment.number)
        ref = item_of_pull(self.service.engine, comment.repo, comment.number)
        return None if ref is None else self.service.item(ref.repo, ref.number)

    def _approve_plan(self, comment: _Comment, item: WorkItem) -> str:
        if item.state is not WorkState.AWAITING_PLAN_APPROVAL or item.plan_id is None:
            return (
                f"Nothing to approve: {item.key} is {item.state.value}, not waiting for a "
                "plan approval."
            )
        evaluation = evaluate(self.policy_for(item.repo), Change(modified=item.plan_paths))
        refusal = plan_approval_refusal(
            comment.login,
            requester=item.requester,
            evaluation=evaluation,
            team_members=self.team_members,
        )
        if refusal is not None:
            return refusal
        self.service.submit(item.repo, item.issue, ev.PlanApproved(comment.login, item.plan_id))
        return (
            f"@{comment.login} approved the plan `{item.plan_id}` of {item.key}: it now waits "
            "for its locks, then the executor starts."
        )

    def _cancel(self, comment: _Comment, item: WorkItem) -> str:
        if item.state in TERMINAL:
            return f"Nothing to cancel: {item.key} has already ended ({item.state.value})."
        self.service.submit(item.repo, item.issue, ev.CancelRequested(comment.login))
        self._clear_takeover(item, f"cancelled by @{comment.login}")
        return (
            f"@{comment.login} cancelled {item.key}: its agents stop, its locks are released, "
            "its pull request (if any) leaves the merge queue and the label is removed. "
            "`/trunkline retry` starts a new run."
        )

    def _retry(self, comment: _Comment, item: WorkItem, permission: Permission) -> str:
        if item.state not in RESTARTABLE:
            return (
                f"Nothing to retry: {item.key} is {item.state.value}. `/trunkline retry` "
                "starts a new run of an item that was escalated, cancelled, failed or refused."
            )
        self._clear_takeover(item, f"a new run asked for by @{comment.login}")
        label = self.service.config_for(item.repo).dispatch_label
        if not any(name.casefold() == label.casefold() for name in comment.label_names):
            # first, so the label reconciler never sees the new run without its label
            comment.github.add_labels(item.repo, item.issue, [label])
        self.service.submit(
            item.repo,
            item.issue,
            ev.Labeled(item.repo, item.issue, comment.login, policy_permission(permission), label),
        )
        after = self.service.item(item.repo, item.issue)
        if after is None or after.run == item.run:
            return (
                f"{item.key} was not restarted: @{comment.login} may not hand work to the "
                "agents here (see the policy's `dispatch.min_permission`)."
            )
        return f"@{comment.login} asked for another try: run {after.run} of {item.key} is queued."

    def _clear_takeover(self, item: WorkItem, why: str) -> None:
        """A takeover ends with its item: a later run must not start out taken over."""
        ref = ItemRef(item.repo, item.issue)
        if clear_takeover(self.service.engine, ref, self.service.clock.now(), why):
            log.info("takeover flag lowered", extra={"work_item": item.key, "why": why})

    # -- issues.closed -------------------------------------------------------------------

    def on_issue_closed(self, routed: RoutedEvent) -> None:
        payload = routed.payload
        if not isinstance(payload, IssuesEvent) or payload.issue.is_pull_request:
            return
        sender = payload.sender
        if sender is None or is_bot_sender(sender.login, sender.type):
            return  # trunkline's own close (after a merge), or another automation's
        repo = payload.repository.full_name
        item = self.service.item(repo, payload.issue.number)
        if item is None or item.state in TERMINAL:
            return
        installation = payload.installation.id if payload.installation else None
        github = self.github_for(installation)
        if item.pr is not None and github.get_pull(repo, item.pr).merged:
            return  # closed by the merge's closing keywords: the merge is reported
        permission = github.get_permission(repo, sender.login)
        if permission_refusal(sender.login, CommandName.CANCEL, permission) is not None:
            # an issue's author (or a triager) may close it, but not stop work a maintainer
            # handed over: the work goes on, as when they comment `/trunkline cancel`
            log.info(
                "issue closed by someone who may not cancel its work item",
                extra={"repo": repo, "issue": item.issue, "by": sender.login},
            )
            return
        self.service.submit(repo, item.issue, ev.CancelRequested(sender.login))
        self._clear_takeover(item, f"the issue was closed by @{sender.login}")
        log.info(
            "work item cancelled: its issue was closed",
            extra={"repo": repo, "issue": item.issue, "by": sender.login},
        )


def _belongs_on_a_pull_request(comment: _Comment, command: SlashCommand) -> str:
    return (
        f"`/trunkline {command.name.value}` works on a pull request, and #{comment.number} is "
        "an issue. Comment it on the work item's pull request."
    )


def explain_item(item: WorkItem) -> str:
    """Where the item is and why, for `/trunkline explain` on its issue."""
    lines = [f"{item.key} is **{item.state.value}** (run {item.run})."]
    if item.history:
        last = item.history[-1]
        lines.append(f"Last change: {last.reason} ({last.at:%Y-%m-%d %H:%M} UTC).")
    if item.waiting_on:
        lines.append(f"Waiting for the locks on {', '.join(item.waiting_on)}.")
    if item.lock_subsystems:
        lines.append(f"Locks: {', '.join(item.lock_subsystems)} ({item.locks.value}).")
    if item.pr is not None:
        lines.append(f"Pull request: #{item.pr}.")
    lines.append(f"Spent so far: {item.spend.tokens} tokens, ${item.spend.usd}.")
    return "\n".join(lines)
