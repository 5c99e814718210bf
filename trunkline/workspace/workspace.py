"""The workspace: one bare mirror per repository, one worktree per work item.

Performs I/O (git subprocesses, files under the data directory). Layout:

    <data_dir>/mirrors/<owner>/<name>.git      bare mirror, remote `origin` (URL without secrets)
    <data_dir>/mirrors/<owner>/<name>.lock     flock file serializing work on that mirror
    <data_dir>/worktrees/<owner>/<name>/issue-<n>         the worktree of work item n
    <data_dir>/worktrees/<owner>/<name>/.integration-*    temporary (rebase integrations only)

Every operation on a mirror (fetch, worktree add/remove, commit, push, integration, diff)
holds that mirror's lock. Network operations take the installation token as an argument and
hand it to that one git process's environment (`credentials.credential_env`). Crash recovery
lives in `recovery.py` and runs under the same lock.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from trunkline.workspace import integration, recovery
from trunkline.workspace.credentials import credential_env
from trunkline.workspace.diffparse import combine, parse_name_status, parse_numstat
from trunkline.workspace.errors import GitCommandError, GitTransportError, PushRejectedError
from trunkline.workspace.gitrunner import run_git
from trunkline.workspace.locking import MirrorLocks
from trunkline.workspace.model import (
    DiffDescription,
    Identity,
    IntegrationResult,
    MergeMethod,
    RepositorySpec,
    Worktree,
    work_branch,
)
from trunkline.workspace.recovery import RecoveryReport

FETCH_REFSPECS = (
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/pull/*/head:refs/remotes/origin/pull/*",
)
_REJECTION_MARKERS = ("rejected", "non-fast-forward", "fetch first", "protected", "declined")


class Workspace:
    """Mirrors and worktrees under one data directory, committing as `identity`."""

    def __init__(
        self,
        data_dir: Path,
        identity: Identity,
        *,
        lock_timeout_seconds: float = 300.0,
        started_at: float | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.identity = identity
        # Git lock files older than this instance belong to a dead process (see recovery.py).
        self.started_at = time.time() if started_at is None else started_at
        self._locks = MirrorLocks(lock_timeout_seconds)

    # -- layout -----------------------------------------------------------------------------

    def mirror_path(self, spec: RepositorySpec) -> Path:
        return self.data_dir / "mirrors" / spec.owner / f"{spec.name}.git"

    def lock_path(self, spec: RepositorySpec) -> Path:
        return self.data_dir / "mirrors" / spec.owner / f"{spec.name}.lock"

    def worktrees_root(self, spec: RepositorySpec) -> Path:
        return self.data_dir / "worktrees" / spec.owner / spec.name

    def worktree_path(self, spec: RepositorySpec, item_number: int) -> Path:
        return self.worktrees_root(spec) / f"issue-{item_number}"

    @contextmanager
    def locked(self, spec: RepositorySpec) -> Iterator[Path]:
        """Hold the mirror's lock; yields the mirror path (which may not exist yet)."""
        with self._locks.hold(self.lock_path(spec)):
            yield self.mirror_path(spec)

    # -- mirror -----------------------------------------------------------------------------

    def ensure_mirror(self, spec: RepositorySpec, token: str | None) -> Path:
        """Create the mirror if missing, then fetch it. Returns the mirror path."""
        with self.locked(spec) as mirror:
            self._ensure_mirror_locked(spec, mirror, token)
            return mirror

    def fetch(self, spec: RepositorySpec, token: str | None) -> None:
        """Fetch every branch (and GitHub's refs/pull/*/head) into the mirror."""
        with self.locked(spec) as mirror:
            self._ensure_mirror_locked(spec, mirror, token)

    def _ensure_mirror_locked(self, spec: RepositorySpec, mirror: Path, token: str | None) -> None:
        if not (mirror / "HEAD").is_file():
            if mirror.exists():
                shutil.rmtree(mirror)  # a half-made mirror from a crash
            mirror.parent.mkdir(parents=True, exist_ok=True)
            staging = mirror.with_name(f"{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
            staging.mkdir()
            try:
                run_git(staging, "init", "--bare", "--quiet", ".")
                run_git(staging, "remote", "add", "origin", spec.url)
                run_git(staging, "config", "--unset-all", "remote.origin.fetch", check=False)
                for refspec in FETCH_REFSPECS:
                    run_git(staging, "config", "--add", "remote.origin.fetch", refspec)
                run_git(staging, "config", "gc.auto", "0")
                staging.rename(mirror)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        self._fetch_locked(spec, mirror, token)

    def _fetch_locked(self, spec: RepositorySpec, mirror: Path, token: str | None) -> None:
        result = run_git(
            mirror,
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "origin",
            env_extra=credential_env(spec.url, token),
            check=False,
        )
        if result.status != 0:
            raise GitTransportError(f"fetching {spec.full_name} failed: {result.stderr.strip()}")

    def resolve(self, spec: RepositorySpec, revision: str) -> str:
        """The commit SHA `revision` names in the mirror (e.g. `origin/main` or a SHA)."""
        with self.locked(spec) as mirror:
            return _resolve(mirror, revision)

    # -- worktrees --------------------------------------------------------------------------

    def create_worktree(
        self,
        spec: RepositorySpec,
        item_number: int,
        slug: str,
        base_branch: str,
        token: str | None,
        *,
        resume_pushed_branch: bool = True,
    ) -> Worktree:
        """Fetch, then give work item `item_number` its worktree on `trunkline/issue-<n>-<slug>`.

        The branch starts from the current `base_branch`, or, if `resume_pushed_branch` and the
        branch was pushed before, from the pushed branch. Calling again for an item that has a
        worktree returns the existing one untouched.
        """
        branch = work_branch(item_number, slug)
        path = self.worktree_path(spec, item_number)
        with self.locked(spec) as mirror:
            self._ensure_mirror_locked(spec, mirror, token)
            base_sha = _resolve(mirror, f"refs/remotes/origin/{base_branch}")
            registered = recovery.registered_worktrees(mirror)
            if path in registered and (path / ".git").is_file():
                return Worktree(
                    spec.full_name, item_number, registered[path] or branch, path, base_sha
                )
            if path.exists():
                shutil.rmtree(path)
            run_git(mirror, "worktree", "prune")
            start = base_sha
            if resume_pushed_branch:
                pushed = run_git(
                    mirror,
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    f"refs/remotes/origin/{branch}^{{commit}}",
                    check=False,
                )
                if pushed.status == 0:
                    start = pushed.text
            path.parent.mkdir(parents=True, exist_ok=True)
            run_git(
                mirror, "worktree", "add", "--quiet", "--no-track", "-B", branch, str(path), start
            )
            return Worktree(spec.full_name, item_number, branch, path, base_sha)

    def remove_worktree(self, spec: RepositorySpec, item_number: int) -> None:
        """Remove the item's worktree and its local branch (the pushed branch stays)."""
        path = self.worktree_path(spec, item_number)
        with self.locked(spec) as mirror:
            if not mirror.exists():
                return
            branch = recovery.registered_worktrees(mirror).get(path)
            recovery.remove_worktree_locked(mirror, path)
            if branch:
                run_git(mirror, "branch", "--quiet", "-D", branch, check=False)

    def commit_all(self, spec: RepositorySpec, worktree: Worktree, message: str) -> str | None:
        """Commit every change in the worktree as the bot identity; None if nothing changed."""
        with self.locked(spec):
            return commit_worktree(worktree.path, message, self.identity)

    def push_branch(
        self, spec: RepositorySpec, worktree: Worktree, token: str | None, *, force: bool = False
    ) -> str:
        """Push the worktree's HEAD to its branch on the remote; returns the pushed SHA."""
        sha = _resolve(worktree.path, "HEAD")
        self.push_commit(spec, sha, worktree.branch, token, force=force)
        return sha

    def push_commit(
        self, spec: RepositorySpec, sha: str, branch: str, token: str | None, *, force: bool = False
    ) -> None:
        """Point the remote branch `branch` at `sha` (a fast-forward unless `force`)."""
        refspec = f"{'+' if force else ''}{sha}:refs/heads/{branch}"
        with self.locked(spec) as mirror:
            result = run_git(
                mirror,
                "push",
                "--quiet",
                "--porcelain",
                "origin",
                refspec,
                env_extra=credential_env(spec.url, token),
                check=False,
            )
            if result.status == 0:
                run_git(mirror, "update-ref", f"refs/remotes/origin/{branch}", sha, check=False)
                return
            output = (result.text + "\n" + result.stderr).lower()
            if any(marker in output for marker in _REJECTION_MARKERS):
                raise PushRejectedError(f"push of {branch} to {spec.full_name} was rejected")
            raise GitTransportError(
                f"push of {branch} to {spec.full_name} failed: {result.stderr.strip()}"
            )

    # -- integration and diffs --------------------------------------------------------------

    def build_integration(
        self,
        spec: RepositorySpec,
        base: str,
        head: str,
        method: MergeMethod,
        message: str,
    ) -> IntegrationResult:
        """Integrate `head` onto `base` by `method`, leaving no half-finished state anywhere.

        Merge and squash use `git merge-tree --write-tree` + `commit-tree` (no working tree);
        rebase replays the commits in a temporary worktree that is always removed.
        """
        with self.locked(spec) as mirror:
            return integration.integrate(
                mirror,
                _resolve(mirror, base),
                _resolve(mirror, head),
                method,
                message,
                self._identity_env(),
                self.worktrees_root(spec),
            )

    def describe_diff(
        self, spec: RepositorySpec, base: str, head: str, *, since_merge_base: bool = True
    ) -> DiffDescription:
        """Paths and lines changed from `base` to `head` (from their merge base by default)."""
        with self.locked(spec) as mirror:
            base_sha = _resolve(mirror, base)
            head_sha = _resolve(mirror, head)
            start = base_sha
            if since_merge_base:
                start = run_git(mirror, "merge-base", base_sha, head_sha).text
            common = ("diff", "-z", "-M", "--no-ext-diff", "--no-textconv", start, head_sha)
            name_status = run_git(mirror, *common[:3], "--name-status", *common[3:]).stdout
            numstat = run_git(mirror, *common[:3], "--numstat", *common[3:]).stdout
            files = combine(parse_name_status(name_status), parse_numstat(numstat))
            return DiffDescription(base_sha=base_sha, head_sha=head_sha, files=files)

    # -- recovery ---------------------------------------------------------------------------

    def recover(
        self, spec: RepositorySpec, active_items: Collection[int] | None = None
    ) -> RecoveryReport:
        """Clean what a crashed process left in this mirror (run at start, before work).

        Removes git lock files older than this workspace instance, half-made and unregistered
        worktree directories, temporary integration worktrees and their branches; with
        `active_items`, also the worktrees of items not in it.
        """
        with self.locked(spec) as mirror:
            return recovery.recover_locked(
                mirror, self.worktrees_root(spec), self.started_at, active_items
            )

    def recover_all(
        self, active_items: Mapping[str, Collection[int]] | None = None
    ) -> list[RecoveryReport]:
        """`recover` every mirror on disk; `active_items` maps `owner/name` to live items."""
        reports: list[RecoveryReport] = []
        for full_name in self.known_repositories():
            url = run_git(
                self.mirror_path(_local_spec(full_name)), "config", "remote.origin.url", check=False
            ).text
            spec = RepositorySpec(full_name, url or "file:///dev/null")
            live = None if active_items is None else active_items.get(full_name, ())
            reports.append(self.recover(spec, live))
        return reports

    def known_repositories(self) -> list[str]:
        """`owner/name` of every mirror present on disk."""
        root = self.data_dir / "mirrors"
        if not root.is_dir():
            return []
        return sorted(
            f"{owner.name}/{mirror.name.removesuffix('.git')}"
            for owner in root.iterdir()
            if owner.is_dir()
            for mirror in owner.iterdir()
            if mirror.is_dir() and mirror.name.endswith(".git")
        )

    def _identity_env(self) -> dict[str, str]:
        return {
            "GIT_AUTHOR_NAME": self.identity.name,
            "GIT_AUTHOR_EMAIL": self.identity.email,
            "GIT_COMMITTER_NAME": self.identity.name,
            "GIT_COMMITTER_EMAIL": self.identity.email,
        }


def commit_worktree(
    path: Path,
    message: str,
    identity: Identity,
    *,
    git_options: Sequence[str] = (),
    env_extra: Mapping[str, str] | None = None,
) -> str | None:
    """Stage everything in the checkout at `path` and commit it as `identity` (author and
    committer, unsigned, no pre-commit/commit-msg hooks); the new SHA, or None when nothing
    changed. `git_options` (e.g. `-c core.hooksPath=/dev/null`) go before every subcommand
    and `env_extra` into every git process. Takes no lock: `Workspace.commit_all` holds the
    mirror's; other callers (the agent runtime) own their checkout.
    """
    env = dict(env_extra or {})
    run_git(path, *git_options, "add", "--all", env_extra=env)
    staged = run_git(path, *git_options, "diff", "--cached", "--quiet", env_extra=env, check=False)
    if staged.status == 0:
        return None
    run_git(
        path,
        *git_options,
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--no-verify",
        "-m",
        message,
        env_extra={
            **env,
            "GIT_AUTHOR_NAME": identity.name,
            "GIT_AUTHOR_EMAIL": identity.email,
            "GIT_COMMITTER_NAME": identity.name,
            "GIT_COMMITTER_EMAIL": identity.email,
        },
    )
    return _resolve(path, "HEAD")


def _resolve(repository: Path, revision: str) -> str:
    try:
        return run_git(
            repository, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"
        ).text
    except GitCommandError as error:
        raise GitCommandError(
            error.git_args, error.status, f"unknown revision {revision!r}"
        ) from None


def _local_spec(full_name: str) -> RepositorySpec:
    return RepositorySpec(full_name, "file:///dev/null")
