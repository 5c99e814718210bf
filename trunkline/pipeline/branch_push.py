"""Pushing a work item's branch as a compare-and-swap: never forced, never over a surprise.

Performs I/O: git in the workspace's mirror (under its lock), one network push with a fresh
installation token in that one process's environment. Contract:

- `observed_branch_sha(workspace, spec, branch)` is what the mirror last saw of the remote
  branch (`refs/remotes/origin/<branch>`, None when absent). A job reads it right after
  `Workspace.create_worktree` (which fetches), so it is the branch as the job found it.
- `push_expecting(workspace, spec, worktree, token, expected)` points the remote branch at
  the worktree's HEAD only if (1) the remote branch is still exactly `expected` (None: it
  must not exist) — `git push --force-with-lease=refs/heads/<branch>:<expected>`, checked
  against the remote's advertisement and applied by the server as a compare-and-swap on the
  old value — and (2) `expected` is an ancestor of HEAD, so the update is a fast-forward.
  Anything else raises `PushRejectedError` and changes nothing: a push is never forced,
  and someone else's commits pushed meanwhile (a human who took the item over, another
  replica) are never overwritten, not even by a descendant of what this job saw.
- Pushing the SHA the branch already has is a no-op that returns it.
"""

from __future__ import annotations

from trunkline.workspace.credentials import credential_env
from trunkline.workspace.errors import GitTransportError, PushRejectedError
from trunkline.workspace.gitrunner import run_git
from trunkline.workspace.model import RepositorySpec, Worktree
from trunkline.workspace.workspace import Workspace

_REJECTED = ("rejected", "stale info", "non-fast-forward", "fetch first", "declined", "protected")


def observed_branch_sha(workspace: Workspace, spec: RepositorySpec, branch: str) -> str | None:
    """The remote branch as the mirror last fetched it (None: it did not exist)."""
    with workspace.locked(spec) as mirror:
        found = run_git(
            mirror,
            "rev-parse",
            "--verify",
            "--quiet",
            f"refs/remotes/origin/{branch}^{{commit}}",
            check=False,
        )
    return found.text if found.status == 0 and found.text else None


def push_expecting(
    workspace: Workspace,
    spec: RepositorySpec,
    worktree: Worktree,
    token: str | None,
    expected: str | None,
) -> str:
    """Push HEAD to the worktree's branch if the remote is still at `expected` and HEAD
    descends from it; returns the pushed SHA (see the module docstring)."""
    head = run_git(worktree.path, "rev-parse", "--verify", "HEAD^{commit}").text
    branch = worktree.branch
    if head == expected:
        return head
    with workspace.locked(spec) as mirror:
        if expected is not None:
            ancestor = run_git(mirror, "merge-base", "--is-ancestor", expected, head, check=False)
            if ancestor.status != 0:
                raise PushRejectedError(
                    f"push of {branch} to {spec.full_name} refused: {head[:12]} does not "
                    f"descend from {expected[:12]} (it would not be a fast-forward)"
                )
        result = run_git(
            mirror,
            "push",
            "--quiet",
            "--porcelain",
            f"--force-with-lease=refs/heads/{branch}:{expected or ''}",
            "origin",
            f"{head}:refs/heads/{branch}",
            env_extra=credential_env(spec.url, token),
            check=False,
        )
        if result.status == 0:
            run_git(mirror, "update-ref", f"refs/remotes/origin/{branch}", head, check=False)
            return head
    output = (result.text + "\n" + result.stderr).lower()
    if any(marker in output for marker in _REJECTED):
        raise PushRejectedError(
            f"push of {branch} to {spec.full_name} refused: the remote branch is no longer "
            f"{(expected or 'absent')[:12]}"
        )
    raise GitTransportError(f"push of {branch} to {spec.full_name} failed: {result.stderr.strip()}")
