"""GitHub's native merge queue: the `trunkline/gate` check run on a merge group's head.

Performs I/O (GitHub, the store) in the handler; `group_members` and `group_contents` are
pure. A merge group's head commit contains the PR its ref names **and every PR ahead of it
in the queue**, so on `merge_group` `checks_requested` the PRs are found from the group's
commits between `base_sha` and `head_sha` (`GitHubPort.compare_commits`):

- a merge commit "Merge pull request #N ..." with two parents: PR N at its second parent;
- a squash commit whose first line ends with "(#N)": PR N at its current head;
- the PR the head ref names, `refs/heads/gh-readonly-queue/<base>/pr-<n>-<sha>`, at that SHA;
- the commits reachable from a PR's SHA belong to that PR.

Each PR's scope, review and approval gates are evaluated at exactly the SHA the group
contains (`GateRunner.synced_read`: a PR whose head moved since fails, since its gates are
for another commit). `trunkline/gate` is posted on the group's `head_sha`: success only if
every PR passes every gate, with a summary per PR. A group that names no PR, whose commits
cannot be listed, or that holds a commit belonging to no identifiable PR (e.g. GitHub's
rebase merge method replays commits without naming the PR) fails the check with the reason,
so a group is never passed by default.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from trunkline.bot.check_reports import GroupMember, post_check, render_group_check
from trunkline.bot.events import MergeGroupEvent
from trunkline.bot.gate_runner import GateRunner, GitHubFor
from trunkline.bot.router import EventHandler, RoutedEvent, Router
from trunkline.errors import TerminalError
from trunkline.github.errors import NotFoundError
from trunkline.github.model import Commit
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


_MERGE_MESSAGE = re.compile(r"^Merge pull request #(\d+)\b")
_SQUASH_MESSAGE = re.compile(r"\(#(\d+)\)\s*$")
COMPARE_LIMIT = 250
"""GitHub's compare lists at most this many commits."""


@dataclass(frozen=True)
class GroupContents:
    """The PRs a merge group contains: (PR, SHA), the SHA None when only the PR is known
    (a squash commit: its gates are read at its current head); and the commits that
    belong to no identifiable PR."""

    members: tuple[tuple[int, str | None], ...]
    unattributed: tuple[str, ...]


def group_contents(head_ref: str, commits: tuple[Commit, ...]) -> GroupContents:
    """Which PRs the commits of a merge group (base..head, oldest first) contain (pure)."""
    members: dict[tuple[int, str | None], None] = {}
    owned: set[str] = set()
    listed = {commit.sha: commit for commit in commits}

    def claim(sha: str) -> None:
        stack = [sha]
        while stack:
            current = stack.pop()
            if current in owned or current not in listed:
                continue
            owned.add(current)
            stack.extend(listed[current].parents)

    for commit in commits:
        first_line = commit.message.splitlines()[0] if commit.message else ""
        merged = _MERGE_MESSAGE.match(first_line)
        squashed = _SQUASH_MESSAGE.search(first_line)
        if merged and len(commit.parents) == 2:
            members.setdefault((int(merged.group(1)), commit.parents[1]), None)
            owned.add(commit.sha)
            claim(commit.parents[1])
        elif squashed:
            members.setdefault((int(squashed.group(1)), None), None)
            owned.add(commit.sha)
    for pr, sha in group_members(head_ref):
        members.setdefault((pr, sha), None)
        claim(sha)
    # A squash commit names its PR; keep (PR, None) only when no exact SHA is known for it.
    exact = {pr for pr, sha in members if sha is not None}
    kept = tuple(key for key in members if key[1] is not None or key[0] not in exact)
    return GroupContents(kept, tuple(c.sha for c in commits if c.sha not in owned))


def check_group(
    runner: GateRunner,
    github: GitHubPort,
    repo: str,
    head_ref: str,
    head_sha: str,
    base_sha: str,
) -> tuple[GroupMember, ...]:
    """Evaluate every PR the group contains and post `trunkline/gate` on `head_sha`."""
    problem: str | None = None
    try:
        commits = github.compare_commits(repo, base_sha, head_sha)
    except NotFoundError:
        commits = ()
        problem = f"the commits between {base_sha[:7]} and {head_sha[:7]} cannot be listed"
    contents = group_contents(head_ref, commits)
    members = []
    for pr, sha in contents.members:
        try:
            reading = runner.synced_read(github, repo, pr, sha)
            members.append(GroupMember(pr, reading.head_sha, reading.reports))
        except NotFoundError:
            reports = tuple(
                GateReport(g, False, f"pull request #{pr} not found") for g in ALL_GATES
            )
            members.append(GroupMember(pr, sha or head_sha, reports))
    if problem is None and len(commits) >= COMPARE_LIMIT:
        problem = (
            f"the merge group has {COMPARE_LIMIT} or more commits, more than GitHub lists; "
            "its pull requests cannot all be known"
        )
    if problem is None and contents.unattributed:
        shown = ", ".join(sha[:7] for sha in contents.unattributed[:10])
        problem = (
            f"commit(s) {shown} of the merge group belong to no pull request trunkline can "
            "identify (merge commits name their pull request, squash commits end with "
            '"(#N)"); trunkline cannot vouch for them'
        )
    if problem is None and not members:
        problem = f"the merge group ref {head_ref} names no pull request"
    post_check(github, repo, head_sha, render_group_check(members, problem), runner.bot_login)
    log.info(
        "merge group gate",
        extra={
            "repo": repo,
            "head_sha": head_sha,
            "prs": {m.pr: m.ok for m in members},
            "problem": problem,
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
            group.base_sha,
        )

    return handle


def register_merge_group(router: Router, runner: GateRunner, github_for: GitHubFor) -> None:
    router.add(merge_group_handler(runner, github_for), "merge_group", "checks_requested")
