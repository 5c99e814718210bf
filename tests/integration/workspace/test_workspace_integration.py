"""Integration commits on real git: merge / squash / rebase, conflicts as data, no leftovers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trunkline.workspace.model import (
    Identity,
    IntegrationCommit,
    IntegrationConflict,
    MergeMethod,
    RepositorySpec,
)
from trunkline.workspace.workspace import Workspace

BOT = Identity("trunkline[bot]", "bot@example.com")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "--all")
    git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Workspace, RepositorySpec, Path]:
    """A remote (local path) with main and two PR branches: one clean, one conflicting."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "--quiet", "-b", "main", str(remote))
    work = tmp_path / "dev"
    git(tmp_path, "clone", "--quiet", str(remote), str(work))
    git(work, "checkout", "--quiet", "-B", "main")
    commit(work, {"f.txt": "a\nb\nc\n", "g.txt": "g\n"}, "base")
    git(work, "checkout", "--quiet", "-b", "clean")
    commit(work, {"h.txt": "h\n"}, "clean 1")
    commit(work, {"g.txt": "g\ng2\n"}, "clean 2")
    git(work, "checkout", "--quiet", "main")
    git(work, "checkout", "--quiet", "-b", "clash")
    commit(work, {"f.txt": "A\nb\nc\n", "k.txt": "k\n"}, "clash")
    git(work, "checkout", "--quiet", "main")
    commit(work, {"f.txt": "Z\nb\nc\n"}, "main moves")
    git(work, "push", "--quiet", "origin", "main", "clean", "clash")
    workspace = Workspace(tmp_path / "data", BOT)
    spec = RepositorySpec("acme/widgets", f"file://{remote}")
    workspace.ensure_mirror(spec, None)
    return workspace, spec, workspace.mirror_path(spec)


def state_of(mirror: Path, workspace: Workspace, spec: RepositorySpec) -> tuple[str, ...]:
    """Everything a half-finished operation could leave behind."""
    root = workspace.worktrees_root(spec)
    return (
        git(mirror, "for-each-ref"),
        git(mirror, "worktree", "list", "--porcelain"),
        " ".join(sorted(p.name for p in root.iterdir())) if root.exists() else "",
        " ".join(
            sorted(
                name
                for name in (
                    "MERGE_HEAD",
                    "CHERRY_PICK_HEAD",
                    "REBASE_HEAD",
                    "index",
                    "rebase-merge",
                )
                if (mirror / name).exists()
            )
        ),
    )


@pytest.mark.parametrize("method", list(MergeMethod))
def test_clean_integration(
    setup: tuple[Workspace, RepositorySpec, Path], method: MergeMethod
) -> None:
    workspace, spec, mirror = setup
    before = state_of(mirror, workspace, spec)
    result = workspace.build_integration(
        spec, "refs/remotes/origin/main", "refs/remotes/origin/clean", method, "Merge #7"
    )
    assert isinstance(result, IntegrationCommit)
    assert state_of(mirror, workspace, spec) == before
    base = git(mirror, "rev-parse", "refs/remotes/origin/main")
    head = git(mirror, "rev-parse", "refs/remotes/origin/clean")
    assert (result.base_sha, result.head_sha) == (base, head)
    files = git(mirror, "ls-tree", "--name-only", result.sha).split()
    assert files == ["f.txt", "g.txt", "h.txt"]
    assert git(mirror, "show", f"{result.sha}:f.txt") == "Z\nb\nc"
    assert git(mirror, "show", f"{result.sha}:g.txt") == "g\ng2"
    parents = git(mirror, "log", "-1", "--format=%P", result.sha).split()
    committer = git(mirror, "log", "-1", "--format=%cn <%ce>", result.sha)
    assert committer == f"{BOT.name} <{BOT.email}>"
    if method is MergeMethod.MERGE:
        assert parents == [base, head]
        assert git(mirror, "log", "-1", "--format=%s", result.sha) == "Merge #7"
    elif method is MergeMethod.SQUASH:
        assert parents == [base]
    else:
        history = git(mirror, "log", "--format=%s|%an", f"{base}..{result.sha}").splitlines()
        assert history == ["clean 2|Dev", "clean 1|Dev"]
        assert git(mirror, "rev-list", "--count", f"{base}..{result.sha}") == "2"


@pytest.mark.parametrize("method", list(MergeMethod))
def test_conflicting_integration_reports_paths_and_leaves_no_state(
    setup: tuple[Workspace, RepositorySpec, Path], method: MergeMethod
) -> None:
    workspace, spec, mirror = setup
    before = state_of(mirror, workspace, spec)
    result = workspace.build_integration(
        spec, "refs/remotes/origin/main", "refs/remotes/origin/clash", method, "Merge #8"
    )
    assert isinstance(result, IntegrationConflict)
    assert result.paths == ("f.txt",)
    if method is MergeMethod.REBASE:
        assert result.failed_commit == git(mirror, "rev-parse", "refs/remotes/origin/clash")
    assert state_of(mirror, workspace, spec) == before
    # The mirror still works: the clean PR integrates right after.
    clean = workspace.build_integration(
        spec, "refs/remotes/origin/main", "refs/remotes/origin/clean", method, "Merge #7"
    )
    assert isinstance(clean, IntegrationCommit)
