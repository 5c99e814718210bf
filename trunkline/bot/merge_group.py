"""GitHub's native merge queue: the `trunkline/gate` check run on a merge group's head.

Performs I/O (GitHub, the store) in the handler; `group_members` is pure. On `merge_group`
`checks_requested`, the PRs of the group are read from its head ref,
`refs/heads/gh-readonly-queue/<base>/pr-<number>-<sha>` (every `pr-<n>-<sha>` segment of the
ref, should GitHub name several), and each PR's scope, review and approval gates are
evaluated at exactly the SHA the group contains (`GateRunner.read`: a PR whose head moved
since fails, since its gates are for another commit). `trunkline/gate` is posted on the
group's `head_sha`: success only if every PR passes every gate, with a summary per PR. A ref
that names no PR fails the check with the reason, so a group is never passed by default.
"""

from __future__ import annotations

import logging
import re

from trunkline.bot.check_reports import GroupMember, post_check, render_group_check
from trunkline.bot.events import MergeGroupEvent
from trunkline.bot.gate_runner import GateRunner, GitHubFor
from trunkline.bot.router import EventHandler, RoutedEvent, Router
from trunkline.errors import TerminalError
from trunkline.github.errors import NotFoundError
from trunkline.github.port import GitHubPort
from trunkline.queue.events import GateReport
from trunkline.queue.model import ALL_GATES

log = logging.getLogger(__name__)

_MEMBER = re.compile(r"(?:^|/)pr-(\d+)-([0-9a-f]{40})(?=/|$)")
QUEUE_REF_PREFIX = "gh-readonly-queue/"


class MergeGroupPayloadError(TerminalError):
    """A merge_group payload trunkline cannot act on (e.g. no repository)."""


def group_members(head_ref: str) -> tuple[tuple[int, str], ...]:
    """(PR number, head SHA) of every PR a merge group's head ref names, in order."""
    ref = head_ref.removeprefix("refs/heads/")
    if not ref.startswith(QUEUE_REF_PREFIX):
        return ()
    seen: dict[int, str] = {}
    for match in _MEMBER.finditer(ref):
        seen.setdefault(int(match.group(1)), match.group(2))
    return tuple(seen.items())


def check_group(
    runner: GateRunner, github: GitHubPort, repo: str, head_ref: str, head_sha: str
) -> tuple[GroupMember, ...]:
    """Evaluate every PR of the group and post `trunkline/gate` on `head_sha`."""
    members = []
    for pr, sha in group_members(head_ref):
        try:
            reports = runner.synced_read(github, repo, pr, sha).reports
        except NotFoundError:
            reports = tuple(
                GateReport(g, False, f"pull request #{pr} not found") for g in ALL_GATES
            )
        members.append(GroupMember(pr, sha, reports))
    problem = None if members else f"the merge group ref {head_ref} names no pull request"
    post_check(github, repo, head_sha, render_group_check(members, problem), runner.bot_login)
    log.info(
        "merge group gate",
        extra={
            "repo": repo,
            "head_sha": head_sha,
            "prs": {m.pr: m.ok for m in members},
        },
    )
    return tuple(members)


def merge_group_handler(runner: GateRunner, github_for: GitHubFor) -> EventHandler:
    def handle(event: RoutedEvent) -> None:
        payload = event.payload
        if not isinstance(payload, MergeGroupEvent):
            return
        if payload.repository is None:
            raise MergeGroupPayloadError("merge_group payload without a repository")
        installation = payload.installation.id if payload.installation else None
        group = payload.merge_group
        check_group(
            runner,
            github_for(installation),
            payload.repository.full_name,
            group.head_ref,
            group.head_sha,
        )

    return handle


def register_merge_group(router: Router, runner: GateRunner, github_for: GitHubFor) -> None:
    router.add(merge_group_handler(runner, github_for), "merge_group", "checks_requested")
