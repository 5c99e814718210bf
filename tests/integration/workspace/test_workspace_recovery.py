"""Crash recovery on real git: a worker SIGKILLed mid-operation, then the next start cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from trunkline.workspace.errors import MirrorBusyError
from trunkline.workspace.model import Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

BOT = Identity("trunkline[bot]", "bot@example.com")

# Run in a child process: take the mirror lock, create item 7's worktree, then crash "between
# steps" with git lock files, a half-made worktree directory and an integration scratch dir
# lying around. The parent SIGKILLs it while it still holds the lock.
CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from trunkline.workspace.model import Identity, RepositorySpec
    from trunkline.workspace.workspace import Workspace

    data, url = Path(sys.argv[1]), sys.argv[2]
    ws = Workspace(data, Identity("bot", "bot@example.com"))
    spec = RepositorySpec("acme/widgets", url)
    tree = ws.create_worktree(spec, 7, "crash", "main", None)
    (tree.path / "partial.txt").write_text("unfinished")
    mirror = ws.mirror_path(spec)
    with ws.locked(spec):
        admin = mirror / "worktrees" / "issue-7"
        (admin / "index.lock").write_text("")
        (mirror / "refs" / "heads" / "trunkline" / "issue-7-crash.lock").write_text("")
        (mirror / "packed-refs.lock").write_text("")
        root = ws.worktrees_root(spec)
        (root / "issue-8").mkdir()
        (root / "issue-8" / "junk.txt").write_text("half made")
        subprocess.run(["git", "-C", str(mirror), "worktree", "add", "--quiet", "--detach",
                        str(root / ".integration-dead"), "refs/remotes/origin/main"], check=True)
        scratch = [p for p in (mirror / "worktrees").iterdir() if "integration" in p.name]
        (scratch[0] / "locked").write_text("initializing")
        print("ready", flush=True)
        time.sleep(600)
    """
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> str:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "--quiet", "-b", "main", str(bare))
    work = tmp_path / "dev"
    git(tmp_path, "clone", "--quiet", str(bare), str(work))
    git(work, "checkout", "--quiet", "-B", "main")
    (work / "a.txt").write_text("a\n")
    git(work, "add", "--all")
    git(work, "-c", "user.name=D", "-c", "user.email=d@example.com", "commit", "-qm", "base")
    git(work, "push", "--quiet", "origin", "main")
    return f"file://{bare}"


@contextmanager
def crashed_child(data: Path, url: str) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read() if child.stderr else ""
        yield child
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def test_a_live_holder_blocks_another_process_and_a_killed_one_does_not(
    tmp_path: Path, remote: str
) -> None:
    data = tmp_path / "data"
    spec = RepositorySpec("acme/widgets", remote)
    with crashed_child(data, remote) as child:
        waiting = Workspace(data, BOT, lock_timeout_seconds=0.3)
        with pytest.raises(MirrorBusyError):
            waiting.fetch(spec, None)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    Workspace(data, BOT, lock_timeout_seconds=30).fetch(spec, None)


def test_next_start_cleans_up_after_a_killed_worker(tmp_path: Path, remote: str) -> None:
    data = tmp_path / "data"
    spec = RepositorySpec("acme/widgets", remote)
    with crashed_child(data, remote) as child:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    restarted = Workspace(data, BOT, lock_timeout_seconds=30)
    mirror = restarted.mirror_path(spec)
    root = restarted.worktrees_root(spec)

    # Item 7 is still active (the store says so): its worktree is kept, the junk goes.
    report = restarted.recover(spec, active_items={7})
    assert {path.name for path in report.removed_lock_files} == {
        "index.lock",
        "issue-7-crash.lock",
        "packed-refs.lock",
        "locked",
    }
    assert [path.name for path in report.removed_worktrees] == [".integration-dead"]
    assert [path.name for path in report.removed_directories] == ["issue-8"]
    assert sorted(p.name for p in root.iterdir()) == ["issue-7"]
    assert list(mirror.rglob("*.lock")) == []
    assert (root / "issue-7" / "partial.txt").read_text() == "unfinished"

    # The mirror is usable: the kept worktree commits, a new item gets a worktree.
    kept = restarted.create_worktree(spec, 7, "crash", "main", None)
    assert restarted.commit_all(spec, kept, "finish") is not None
    fresh = restarted.create_worktree(spec, 8, "next", "main", None)
    assert (fresh.path / "a.txt").read_text() == "a\n"
    assert not (fresh.path / "junk.txt").exists()

    # Item 7 ends while the process is down: the next start removes it and its branch.
    later = Workspace(data, BOT)
    second = later.recover_all({"acme/widgets": [8]})
    assert [path.name for report in second for path in report.removed_worktrees] == ["issue-7"]
    assert [b for report in second for b in report.deleted_branches] == ["trunkline/issue-7-crash"]
    assert git(mirror, "branch", "--list", "trunkline/*").split() == ["+", "trunkline/issue-8-next"]
    assert later.recover(spec, active_items={8}).clean


def test_recover_command_cleans_every_mirror(
    tmp_path: Path, remote: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trunkline.cli import main

    data = tmp_path / "data"
    workspace = Workspace(data, BOT)
    spec = RepositorySpec("acme/widgets", remote)
    tree = workspace.create_worktree(spec, 3, "left over", "main", None)
    monkeypatch.setenv("TRUNKLINE_DATA_DIR", str(data))
    assert main(["workspace", "recover", "--keep-worktrees"]) == 0
    assert tree.path.exists()
    assert main(["workspace", "recover"]) == 0
    assert not tree.path.exists()
    assert "1 worktrees" in capsys.readouterr().out


def test_benchmark_runs_and_finds_the_planted_conflicts() -> None:
    from trunkline.workspace.bench import run_benchmark

    results = run_benchmark(files=10, branches=5)
    assert results["conflicts_found"] == 3.0  # branch 0 conflicts, for each of 3 methods
    assert all(value > 0 for key, value in results.items() if key.endswith("_per_second"))


def test_a_worktree_whose_head_names_nothing_is_removed_and_the_mirror_fetches_again(
    tmp_path: Path, remote: str
) -> None:
    """A process killed while a worktree was being made can leave a HEAD naming an object the
    mirror never got; every fetch then fails ("bad object worktrees/.../HEAD")."""
    data = tmp_path / "data"
    spec = RepositorySpec("acme/widgets", remote)
    workspace = Workspace(data, BOT)
    tree = workspace.create_worktree(spec, 2, "broken", "main", None)
    admin = workspace.mirror_path(spec) / "worktrees" / tree.path.name
    (admin / "HEAD").write_text("1234567890abcdef1234567890abcdef12345678\n")
    report = workspace.recover(spec, active_items={2})
    assert [path.name for path in report.removed_worktrees] == [tree.path.name]
    again = workspace.create_worktree(spec, 2, "broken", "main", None)
    assert (again.path / "a.txt").read_text() == "a\n"
