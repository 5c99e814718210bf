"""The performer of the pipeline's `Escalate`: every escalation of a work item, whatever
decided it, goes through `trunkline.agents.escalation.perform_escalation`.

Performs I/O through its collaborators: the workspace (the item's worktree, a fetch, one
push), the GitHub port of the item's installation and the policy. For an `Escalate`:

1. the item's worktree (the existing one, which holds the work committed so far, else one
   re-created from the pushed branch or the base);
2. `perform_escalation` with an `EscalationReport` built from the command and the item
   (`escalation_comment`: reason, spend against the policy's caps, what was done, next
   steps): it pushes the worktree's HEAD to the item's branch when there is work beyond the
   base — with `branch_push.push_expecting` (the branch as this job fetched it, a
   fast-forward, never forced; a refused push is said in the comment, not raised) —,
   upserts the comment (mentioning `escalation.notify`) and adds `escalation.label`.

Git trouble (the worktree, the branch's SHA, the push) never holds back the comment and
its mentions: they are posted (saying the push is tried again) and the error propagates, so
the job is retried. The comment's key is `agents.escalated.<reason>.run<r>.v<version>` from
the command's key, independent of git: each escalation of the item creates its own comment
(its mentions notify), a retry of the same one edits it.

Idempotent like `perform_escalation`: a retried job edits the same comment, pushes nothing
new and adds a label that is there. The escalation decision releases the item's leases in
the same step, so this push is not made under a lease: the branch is the item's own, and
the compare-and-swap keeps anyone else's commits on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from trunkline.agents.escalation import (
    EscalationPolicy,
    EscalationReport,
    PushReport,
    failure_note,
    perform_escalation,
    post_escalation,
)
from trunkline.agents.outcome import OutcomeKind
from trunkline.agents.worktree_git import head_sha
from trunkline.pipeline import commands as cmd
from trunkline.pipeline.agent_performers import run_limits
from trunkline.pipeline.branch_push import observed_branch_sha, push_expecting
from trunkline.pipeline.escalation_comment import escalation_comment
from trunkline.pipeline.performers import GitHubFor, PolicyFor
from trunkline.pipeline.runner import CommandContext, Performed, PipelineService
from trunkline.pipeline.superseded import command_run, command_version
from trunkline.workspace.model import RepositorySpec, Worktree, slugify, work_branch
from trunkline.workspace.workspace import Workspace


@dataclass
class EscalationPerformer:
    github_for: GitHubFor
    policy_for: PolicyFor
    workspace: Workspace
    spec_for: Callable[[str], RepositorySpec]
    token_for: Callable[[int | None], str | None]

    def register(self, service: PipelineService) -> None:
        service.register(cmd.Escalate, self.escalate)

    def escalate(self, command: cmd.Escalate, context: CommandContext) -> Performed:
        policy = self.policy_for(context.repo)
        github = self.github_for(context.installation_id)
        spec = self.spec_for(context.repo)
        title = github.get_issue(context.repo, context.issue).title
        report = EscalationReport(
            work_item=context.item.key,
            kind=OutcomeKind.ESCALATED,
            reason=command.reason,
            comment=escalation_comment(command, context.item, run_limits(policy)),
            head_sha=None,
            occurrence=occurrence(command.key),
        )
        escalation = EscalationPolicy.of(policy.escalation)
        try:
            worktree = self.workspace.create_worktree(
                spec,
                context.issue,
                slugify(title),
                policy.queue.base,
                self.token_for(context.installation_id),
            )
            expected = observed_branch_sha(self.workspace, spec, worktree.branch)
            head = head_sha(worktree.path)
        except Exception as error:  # git trouble never holds back the comment and mentions
            branch = work_branch(context.issue, slugify(title))
            failed = PushReport(branch, None, failed=failure_note(error))
            post_escalation(
                report,
                failed,
                github=github,
                repo=context.repo,
                issue_number=context.issue,
                policy=escalation,
            )
            raise

        def push(worktree: Worktree) -> str:
            token = self.token_for(context.installation_id)
            return push_expecting(self.workspace, spec, worktree, token, expected)

        perform_escalation(
            replace(report, head_sha=head),
            github=github,
            workspace=self.workspace,
            spec=spec,
            worktree=worktree,
            issue_number=context.issue,
            token=lambda: self.token_for(context.installation_id),
            policy=escalation,
            push=push,
        )
        return Performed()


def occurrence(command_key: str) -> str:
    """What makes an escalation a new one in its comment's key: the run and the version that
    decided it (a retry of the same `Escalate` edits its comment; a later one creates one)."""
    return f"run{command_run(command_key)}.v{command_version(command_key)}"
