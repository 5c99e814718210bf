"""Integration commits for the merge queue: base + PR by merge, squash or rebase.

Performs I/O (git subprocesses in a mirror the caller has locked). Merge and squash never
touch a working tree: `git merge-tree --write-tree` computes the merged tree (or the
conflicting paths) and `git commit-tree` records it. Rebase replays the PR's commits with
`git cherry-pick` in a temporary detached worktree (git 2.39's merge-tree has no
`--merge-base`), which is removed in every outcome. Conflicts come back as data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

from trunkline.workspace.errors import GitCommandError
from trunkline.workspace.gitrunner import run_git
from trunkline.workspace.model import (
    IntegrationCommit,
    IntegrationConflict,
    IntegrationResult,
    MergeMethod,
)
from trunkline.workspace.recovery import INTEGRATION_PREFIX, remove_worktree_locked


def parse_merge_tree(status: int, stdout: bytes) -> tuple[str, tuple[str, ...]]:
    """Parse `git merge-tree --write-tree -z --name-only --no-messages` output.

    Returns (tree SHA, conflicting paths). Pure.
    """
    if status not in (0, 1):
        raise ValueError(f"merge-tree failed with status {status}")
    fields = os.fsdecode(stdout).split("\0")
    tree = fields[0].strip()
    if not tree:
        raise ValueError("merge-tree printed no tree")
    paths: list[str] = []
    if status == 1:
        for field in fields[1:]:
            if not field:
                break
            paths.append(field)
    return tree, tuple(sorted(set(paths)))


def integrate(
    mirror: Path,
    base_sha: str,
    head_sha: str,
    method: MergeMethod,
    message: str,
    identity_env: Mapping[str, str],
    scratch_root: Path,
) -> IntegrationResult:
    if method is MergeMethod.REBASE:
        return _rebase(mirror, base_sha, head_sha, message, identity_env, scratch_root)
    result = run_git(
        mirror,
        "merge-tree",
        "--write-tree",
        "-z",
        "--name-only",
        "--no-messages",
        base_sha,
        head_sha,
        check=False,
    )
    if result.status not in (0, 1):
        raise GitCommandError(("merge-tree",), result.status, result.stderr)
    tree, conflicts = parse_merge_tree(result.status, result.stdout)
    if conflicts or result.status == 1:
        return IntegrationConflict(method, base_sha, head_sha, conflicts)
    parents = ["-p", base_sha] + (["-p", head_sha] if method is MergeMethod.MERGE else [])
    sha = run_git(
        mirror,
        "commit-tree",
        "--no-gpg-sign",
        tree,
        *parents,
        "-m",
        message,
        env_extra=identity_env,
    ).text
    return IntegrationCommit(method, base_sha, head_sha, sha, tree)


def _rebase(
    mirror: Path,
    base_sha: str,
    head_sha: str,
    message: str,
    identity_env: Mapping[str, str],
    scratch_root: Path,
) -> IntegrationResult:
    del message  # a rebase keeps each commit's own message
    listed = run_git(mirror, "rev-list", "--reverse", "--no-merges", f"{base_sha}..{head_sha}")
    commits = listed.text.split()
    if not commits:
        tree = run_git(mirror, "rev-parse", f"{base_sha}^{{tree}}").text
        return IntegrationCommit(MergeMethod.REBASE, base_sha, head_sha, base_sha, tree)
    committer = {key: value for key, value in identity_env.items() if "COMMITTER" in key}
    scratch = scratch_root / f"{INTEGRATION_PREFIX}{uuid.uuid4().hex[:12]}"
    scratch_root.mkdir(parents=True, exist_ok=True)
    run_git(mirror, "worktree", "add", "--quiet", "--detach", str(scratch), base_sha)
    try:
        for commit in commits:
            picked = run_git(
                scratch,
                "-c",
                "commit.gpgsign=false",
                "cherry-pick",
                "--allow-empty",
                "--keep-redundant-commits",
                commit,
                env_extra=committer,
                check=False,
            )
            if picked.status != 0:
                unmerged = run_git(
                    scratch, "diff", "--name-only", "-z", "--diff-filter=U", check=False
                )
                paths = tuple(sorted({p for p in os.fsdecode(unmerged.stdout).split("\0") if p}))
                if not paths:
                    raise GitCommandError(("cherry-pick", commit), picked.status, picked.stderr)
                return IntegrationConflict(MergeMethod.REBASE, base_sha, head_sha, paths, commit)
        sha = run_git(scratch, "rev-parse", "HEAD").text
        tree = run_git(scratch, "rev-parse", "HEAD^{tree}").text
        return IntegrationCommit(MergeMethod.REBASE, base_sha, head_sha, sha, tree)
    finally:
        remove_worktree_locked(mirror, scratch)
