"""Workspace on real git: mirrors, worktrees, commits, pushes over authenticated HTTP."""

from __future__ import annotations

import base64
import logging
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from workspace_git_http import GitHttpServer, serve_git_http

from trunkline.workspace.errors import GitTransportError, PushRejectedError
from trunkline.workspace.model import ChangeKind, Identity, RepositorySpec
from trunkline.workspace.workspace import Workspace

TOKEN = "ghs_workspaceTestToken0123456789abcdef"
BOT = Identity("trunkline[bot]", "12345+trunkline[bot]@users.noreply.github.com")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def seed(bare: Path, scratch: Path, files: dict[str, str]) -> str:
    """Push one commit with `files` to `bare`'s main branch, directly on disk."""
    git(scratch.parent, "clone", "--quiet", str(bare), str(scratch))
    git(scratch, "checkout", "--quiet", "-B", "main")
    for name, text in files.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(text)
    git(scratch, "add", "--all")
    git(
        scratch,
        "-c",
        "user.name=Seed",
        "-c",
        "user.email=seed@example.com",
        "commit",
        "-qm",
        "seed",
    )
    git(scratch, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    return git(scratch, "rev-parse", "HEAD")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitHttpServer]:
    with serve_git_http(tmp_path / "remote", TOKEN) as running:
        yield running


@pytest.fixture
def spec(server: GitHttpServer, tmp_path: Path) -> RepositorySpec:
    bare = server.create_repository("acme/widgets")
    seed(bare, tmp_path / "seed", {"README.md": "hello\n", "src/app.py": "print('a')\n"})
    return RepositorySpec("acme/widgets", server.url("acme/widgets"))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "data", BOT, lock_timeout_seconds=60)


def test_worktree_commit_push_and_removal(
    workspace: Workspace, spec: RepositorySpec, server: GitHttpServer
) -> None:
    tree = workspace.create_worktree(spec, 12, "Fix the Widget!", "main", TOKEN)
    assert tree.branch == "trunkline/issue-12-fix-the-widget"
    assert tree.path == workspace.worktree_path(spec, 12)
    assert (tree.path / "README.md").read_text() == "hello\n"
    assert workspace.commit_all(spec, tree, "nothing yet") is None

    (tree.path / "src" / "new.py").write_text("x = 1\n")
    sha = workspace.commit_all(spec, tree, "Add new.py")
    assert sha is not None
    assert git(tree.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        f"{BOT.name} <{BOT.email}>|{BOT.name} <{BOT.email}>"
    )
    assert workspace.push_branch(spec, tree, TOKEN) == sha
    remote = server.root / "acme/widgets.git"
    assert git(remote, "rev-parse", f"refs/heads/{tree.branch}") == sha

    # Asking again for the same item returns the same worktree, untouched.
    again = workspace.create_worktree(spec, 12, "Fix the Widget!", "main", TOKEN)
    assert again.path == tree.path
    assert git(again.path, "rev-parse", "HEAD") == sha

    workspace.remove_worktree(spec, 12)
    assert not tree.path.exists()
    mirror = workspace.mirror_path(spec)
    assert git(mirror, "branch", "--list", "trunkline/*") == ""

    # A new worktree for the item resumes from the pushed branch.
    resumed = workspace.create_worktree(spec, 12, "Fix the Widget!", "main", TOKEN)
    assert git(resumed.path, "rev-parse", "HEAD") == sha
    assert server.authorized_requests > 0


def test_two_items_get_separate_worktrees_concurrently(
    workspace: Workspace, spec: RepositorySpec
) -> None:
    workspace.ensure_mirror(spec, TOKEN)
    results: dict[int, Path] = {}
    errors: list[BaseException] = []

    def work(item: int) -> None:
        try:
            tree = workspace.create_worktree(spec, item, f"item {item}", "main", TOKEN)
            (tree.path / f"item{item}.txt").write_text(str(item))
            assert workspace.commit_all(spec, tree, f"item {item}") is not None
            results[item] = tree.path
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(item,)) for item in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(set(results.values())) == 3
    for item, path in results.items():
        assert sorted(p.name for p in path.glob("item*.txt")) == [f"item{item}.txt"]


def test_token_is_never_stored_or_logged(
    workspace: Workspace,
    spec: RepositorySpec,
    server: GitHttpServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tree = workspace.create_worktree(spec, 3, "secret check", "main", TOKEN)
    (tree.path / "a.txt").write_text("a\n")
    workspace.commit_all(spec, tree, "a")
    workspace.push_branch(spec, tree, TOKEN)
    workspace.fetch(spec, TOKEN)
    assert server.authorized_requests > 0

    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode())
    needles = (TOKEN.encode(), encoded)
    data_dir = tmp_path / "data"
    leaks = [
        path
        for path in data_dir.rglob("*")
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    ]
    assert leaks == []
    config = git(workspace.mirror_path(spec), "config", "--list", "--show-origin")
    reflog = git(workspace.mirror_path(spec), "reflog", "show", "--all")
    for text in (config, reflog, caplog.text, "\n".join(server.request_lines)):
        assert TOKEN not in text
        assert encoded.decode() not in text
    assert "remote.origin.url=" + spec.url in config


def test_wrong_token_is_a_retryable_transport_error(
    workspace: Workspace, spec: RepositorySpec
) -> None:
    with pytest.raises(GitTransportError) as caught:
        workspace.ensure_mirror(spec, "ghs_wrong")
    assert "ghs_wrong" not in str(caught.value)


def test_non_fast_forward_push_is_rejected(
    workspace: Workspace, spec: RepositorySpec, server: GitHttpServer, tmp_path: Path
) -> None:
    tree = workspace.create_worktree(spec, 4, "race", "main", TOKEN)
    (tree.path / "mine.txt").write_text("mine\n")
    workspace.commit_all(spec, tree, "mine")
    # Someone else moves main first.
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(server.root / "acme/widgets.git"), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "--all")
    git(other, "-c", "user.name=O", "-c", "user.email=o@example.com", "commit", "-qm", "theirs")
    git(other, "push", "--quiet", "origin", "HEAD:main")
    sha = git(tree.path, "rev-parse", "HEAD")
    with pytest.raises(PushRejectedError):
        workspace.push_commit(spec, sha, "main", TOKEN)
    assert git(server.root / "acme/widgets.git", "rev-parse", "main") == git(
        other, "rev-parse", "HEAD"
    )


def test_describe_diff_lists_every_kind_of_change(
    workspace: Workspace, spec: RepositorySpec
) -> None:
    base = workspace.create_worktree(spec, 5, "diff", "main", TOKEN)
    (base.path / "src" / "app.py").write_text("print('b')\nprint('c')\n")
    (base.path / "README.md").unlink()
    (base.path / "docs").mkdir()
    (base.path / "docs" / "guide.md").write_text("guide\n")
    (base.path / "blob.bin").write_bytes(bytes(range(256)))
    first = workspace.commit_all(spec, base, "changes")
    assert first is not None
    diff = workspace.describe_diff(spec, "refs/remotes/origin/main", "refs/heads/" + base.branch)
    kinds = {change.path: change.kind for change in diff.files}
    assert kinds == {
        "src/app.py": ChangeKind.MODIFIED,
        "README.md": ChangeKind.DELETED,
        "docs/guide.md": ChangeKind.ADDED,
        "blob.bin": ChangeKind.ADDED,
    }
    binary = next(change for change in diff.files if change.path == "blob.bin")
    assert binary.binary
    assert diff.lines_added == 3
    assert diff.lines_deleted == 2

    (base.path / "src" / "app.py").rename(base.path / "src" / "main.py")
    second = workspace.commit_all(spec, base, "rename")
    assert second is not None
    renamed = workspace.describe_diff(spec, first, second, since_merge_base=False)
    assert [change.kind for change in renamed.files] == [ChangeKind.RENAMED]
    assert ("src/app.py", "src/main.py") in renamed.renamed
    assert "src/app.py" in renamed.touched_paths
