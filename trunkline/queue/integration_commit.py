"""One integration commit per build: the base plus exactly the build's PRs.

Performs I/O (git, in the workspace's mirror of the repository, under its lock). A build of
one PR is the workspace's integration commit of that PR (merge: parents base and head;
squash: one parent). A batch is ONE commit on the base, never a chain: the PRs are merged one
after the other (`Workspace.build_integration`, `git merge-tree` + `commit-tree`) only to
compute the batch's tree and to find a conflict; the commit that is pushed and tested is then
made with `git commit-tree` from that tree:

- merge: parents base, head 1, ..., head N (the base is the first parent, so the base's
  first-parent history holds only tested commits, and every head is reachable from the base
  after the fast-forward, which is how GitHub marks the PRs merged);
- squash: one parent, the base.

The intermediate commits are unreferenced objects in the mirror (never pushed). Rebase is not
built as a batch (`config_from_policy` refuses it: each replayed commit would land untested).
"""

from __future__ import annotations

from dataclasses import dataclass

from trunkline.queue.model import MergeMethod
from trunkline.workspace.gitrunner import run_git
from trunkline.workspace.model import IntegrationConflict, RepositorySpec
from trunkline.workspace.model import MergeMethod as WorkspaceMergeMethod
from trunkline.workspace.workspace import Workspace

BUILD_MARK = "trunkline merge queue build"
"""Every integration commit message ends with this and the build id."""


@dataclass(frozen=True)
class Built:
    sha: str


@dataclass(frozen=True)
class Conflicted:
    pr: int
    paths: tuple[str, ...]


def commit_message(base: str, build_id: str, prs: tuple[tuple[int, str], ...]) -> str:
    """The integration commit's message: the PRs at their heads, and the build."""
    if len(prs) == 1:
        pr, head = prs[0]
        title = f"Merge #{pr} ({head[:12]}) into {base}"
        listed = ""
    else:
        title = f"Merge {', '.join(f'#{pr}' for pr, _ in prs)} into {base}"
        listed = "".join(f"- #{pr} at {head}\n" for pr, head in prs) + "\n"
    return f"{title}\n\n{listed}{BUILD_MARK} {build_id}"


def build_integration_commit(
    workspace: Workspace,
    spec: RepositorySpec,
    *,
    base: str,
    build_id: str,
    base_sha: str,
    prs: tuple[tuple[int, str], ...],
    method: MergeMethod,
) -> Built | Conflicted:
    """The build's integration commit in the mirror (not pushed), or the first conflict."""
    message = commit_message(base, build_id, prs)
    git_method = WorkspaceMergeMethod(method.value)
    sha = base_sha
    for pr, head in prs:
        result = workspace.build_integration(spec, sha, head, git_method, message)
        if isinstance(result, IntegrationConflict):
            return Conflicted(pr, result.paths)
        sha = result.sha
    if len(prs) == 1:
        return Built(sha)
    if method is MergeMethod.REBASE:
        raise ValueError("a batch cannot be integrated by rebase")
    parents = [base_sha, *(head for _, head in prs)] if method is MergeMethod.MERGE else [base_sha]
    identity = workspace.identity
    env = {
        "GIT_AUTHOR_NAME": identity.name,
        "GIT_AUTHOR_EMAIL": identity.email,
        "GIT_COMMITTER_NAME": identity.name,
        "GIT_COMMITTER_EMAIL": identity.email,
    }
    with workspace.locked(spec) as mirror:
        tree = run_git(mirror, "rev-parse", f"{sha}^{{tree}}").text
        arguments = [arg for parent in parents for arg in ("-p", parent)]
        commit = run_git(
            mirror,
            "commit-tree",
            "--no-gpg-sign",
            tree,
            *arguments,
            "-m",
            message,
            env_extra=env,
        ).text
    return Built(commit)
