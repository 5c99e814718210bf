"""`trunkline bench workspace`: integration commits, diffs and worktrees on a synthetic repo.

Performs I/O (git in a temporary directory, removed afterwards). Builds a repository with
`files` files and `branches` PR branches (every fifth conflicts with main), mirrors it, then
times each workspace operation and prints operations per second.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from trunkline.workspace.model import Identity, IntegrationConflict, MergeMethod, RepositorySpec
from trunkline.workspace.workspace import Workspace


def _git(cwd: Path, *args: str) -> str:
    env_args = ("-c", "user.name=Bench", "-c", "user.email=bench@example.com")
    done = subprocess.run(
        ["git", "-C", str(cwd), *env_args, *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _build_remote(root: Path, files: int, branches: int) -> Path:
    remote = root / "remote.git"
    _git(root, "init", "--bare", "--quiet", "-b", "main", str(remote))
    work = root / "work"
    _git(root, "clone", "--quiet", str(remote), str(work))
    _git(work, "checkout", "--quiet", "-B", "main")
    for index in range(files):
        path = work / f"src/module{index // 50}/file{index}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"line {line}\n" for line in range(40)))
    _git(work, "add", "--all")
    _git(work, "commit", "--quiet", "-m", "base")
    for branch in range(branches):
        _git(work, "checkout", "--quiet", "-b", f"pr{branch}", "main")
        target = work / f"src/module0/file{branch % files}.py"
        target.write_text(target.read_text().replace("line 1\n", f"changed by pr{branch}\n"))
        (work / f"new{branch}.txt").write_text("new\n")
        _git(work, "add", "--all")
        _git(work, "commit", "--quiet", "-m", f"pr {branch}")
    _git(work, "checkout", "--quiet", "main")
    for branch in range(0, branches, 5):
        target = work / f"src/module0/file{branch % files}.py"
        target.write_text(target.read_text().replace("line 1\n", "main moved\n"))
    _git(work, "commit", "--quiet", "-am", "main moves")
    _git(work, "push", "--quiet", "origin", "--all")
    return remote


def run_benchmark(files: int = 500, branches: int = 20) -> dict[str, float]:
    """Operations per second for each workspace operation (plus the conflict count)."""
    root = Path(tempfile.mkdtemp(prefix="trunkline-bench-"))
    try:
        remote = _build_remote(root, files, branches)
        workspace = Workspace(root / "data", Identity("bench[bot]", "bench@example.com"))
        spec = RepositorySpec("bench/repo", f"file://{remote}")
        results: dict[str, float] = {}

        def timed(name: str, count: int, action: Callable[[int], object]) -> None:
            start = time.perf_counter()
            for index in range(count):
                action(index)
            results[f"{name}_per_second"] = count / (time.perf_counter() - start)

        timed("fetch", 3, lambda _: workspace.fetch(spec, None))
        conflicts = 0

        def integrate(method: MergeMethod) -> Callable[[int], object]:
            def run(index: int) -> object:
                nonlocal conflicts
                result = workspace.build_integration(
                    spec, "origin/main", f"origin/pr{index}", method, f"Merge pr{index}"
                )
                conflicts += isinstance(result, IntegrationConflict)
                return result

            return run

        for method in MergeMethod:
            timed(f"integration_{method}", branches, integrate(method))
        timed(
            "describe_diff",
            branches,
            lambda index: workspace.describe_diff(spec, "origin/main", f"origin/pr{index}"),
        )
        timed(
            "worktree_create",
            min(branches, 10),
            lambda index: workspace.create_worktree(spec, index + 1, "bench", "main", None),
        )
        timed(
            "worktree_remove",
            min(branches, 10),
            lambda index: workspace.remove_worktree(spec, index + 1),
        )
        timed("recover", 3, lambda _: workspace.recover(spec, ()))
        results["conflicts_found"] = float(conflicts)
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)
