"""Git plumbing for the forge's bare repositories (runs the `git` binary).

Performs I/O (subprocesses). Every function takes the bare repository path; none touches
forge state. Errors from git surface as `GitError` with git's stderr.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ZERO_SHA = "0" * 40

# A pre-receive hook enforcing protected branches for pushes that come through the forge's
# smart HTTP endpoint (which sets FORGE_PROTECTED). Pushes by file path are trusted.
PRE_RECEIVE_HOOK = """#!/bin/sh
# Installed by trunkline forge: protected branches accept only fast-forwards by the App.
[ -z "$FORGE_PROTECTED" ] && exit 0
status=0
while read old new ref; do
  for p in $FORGE_PROTECTED; do
    [ "$ref" = "$p" ] || continue
    if [ "$FORGE_MAY_PUSH_PROTECTED" != "1" ]; then
      echo "forge: $ref is a protected branch; only the App may update it" >&2; status=1
    elif [ "$new" = "0000000000000000000000000000000000000000" ]; then
      echo "forge: $ref is a protected branch and cannot be deleted" >&2; status=1
    elif [ "$old" != "0000000000000000000000000000000000000000" ] && \
         ! git merge-base --is-ancestor "$old" "$new"; then
      echo "forge: $ref is a protected branch; only fast-forward updates" >&2; status=1
    fi
  done
done
exit $status
"""


class GitError(Exception):
    """A git command failed."""


def git(repo: Path, *args: str, input_bytes: bytes | None = None, check: bool = True) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=input_bytes,
        capture_output=True,
        check=False,
        env=_clean_env(),
    )
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode(errors="replace")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="forge",
        GIT_AUTHOR_EMAIL="forge@localhost",
        GIT_COMMITTER_NAME="forge",
        GIT_COMMITTER_EMAIL="forge@localhost",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def init_bare(path: Path, default_branch: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--bare", "-q", "-b", default_branch)
    git(path, "config", "http.receivepack", "true")
    git(path, "config", "receive.denyNonFastForwards", "false")
    hook = path / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE_HOOK, encoding="utf-8")
    hook.chmod(0o755)


def import_directory(bare: Path, source: Path | None, branch: str, message: str) -> str:
    """Commit the files of `source` (or an empty README) as the first commit of `branch`."""
    with tempfile.TemporaryDirectory(prefix="forge-import-") as tmp:
        work = Path(tmp) / "work"
        if source is not None:
            shutil.copytree(source, work, ignore=shutil.ignore_patterns(".git"))
        else:
            work.mkdir()
            (work / "README.md").write_text("# repository\n", encoding="utf-8")
        git(work, "init", "-q", "-b", branch)
        git(work, "add", "-A")
        git(work, "commit", "-q", "--allow-empty", "-m", message)
        git(work, "push", "-q", str(bare), f"HEAD:refs/heads/{branch}")
        return git(work, "rev-parse", "HEAD").strip()


def list_refs(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "--format=%(objectname) %(refname)")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        refs[name] = sha
    return refs


_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def resolve(bare: Path, rev: str) -> str | None:
    """The commit sha `rev` names, or None (a full sha that exists is remembered)."""
    if _FULL_SHA.match(rev):
        return _resolve_sha(bare, rev)
    return _resolve(bare, rev)


@functools.lru_cache(maxsize=4096)
def _resolve_sha_cached(bare: Path, sha: str) -> str:
    found = _resolve(bare, sha)
    if found is None:
        raise LookupError(sha)
    return found


def _resolve_sha(bare: Path, sha: str) -> str | None:
    try:
        return _resolve_sha_cached(bare, sha)
    except LookupError:
        return None


def _resolve(bare: Path, rev: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"],
        capture_output=True,
        check=False,
        env=_clean_env(),
    )
    return done.stdout.decode().strip() if done.returncode == 0 else None


def is_ancestor(bare: Path, ancestor: str, descendant: str) -> bool:
    done = subprocess.run(
        ["git", "-C", str(bare), "merge-base", "--is-ancestor", ancestor, descendant],
        capture_output=True,
        check=False,
        env=_clean_env(),
    )
    return done.returncode == 0


def update_ref(bare: Path, ref: str, new: str, old: str | None = None) -> None:
    args = ["update-ref", ref, new] + ([old] if old is not None else [])
    git(bare, *args)


def delete_ref(bare: Path, ref: str) -> None:
    git(bare, "update-ref", "-d", ref)


def merge_base(bare: Path, a: str, b: str) -> str | None:
    out = git(bare, "merge-base", a, b, check=False).strip()
    return out or None


def count_commits(bare: Path, rng: str) -> int:
    return int(git(bare, "rev-list", "--count", rng).strip() or "0")


def list_commits(bare: Path, rng: str, limit: int = 250) -> list[str]:
    out = git(bare, "rev-list", "--reverse", f"--max-count={limit}", rng)
    return out.split()


def merge_tree(bare: Path, base: str, head: str) -> str | None:
    """The tree of merging `head` into `base`, or None when they conflict."""
    done = subprocess.run(
        ["git", "-C", str(bare), "merge-tree", "--write-tree", base, head],
        capture_output=True,
        check=False,
        env=_clean_env(),
    )
    if done.returncode != 0:
        return None
    return done.stdout.decode().split()[0]


def commit_tree(bare: Path, tree: str, parents: list[str], message: str, author: str) -> str:
    args = ["commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    env = _clean_env()
    env.update(GIT_AUTHOR_NAME=author, GIT_COMMITTER_NAME="GitHub")
    done = subprocess.run(
        ["git", "-C", str(bare), *args], capture_output=True, check=False, env=env
    )
    if done.returncode != 0:
        raise GitError(done.stderr.decode(errors="replace"))
    return done.stdout.decode().strip()


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: int
    committer_name: str
    committer_email: str
    committer_date: int
    message: str


@functools.lru_cache(maxsize=4096)
def commit_info(bare: Path, sha: str) -> CommitInfo:
    """Metadata of commit `sha` (a full sha; cached, commits never change)."""
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%at%x00%cn%x00%ce%x00%ct%x00%B"
    out = git(bare, "show", "-s", f"--format={fmt}", sha)
    parts = out.split("\x00", 9)
    return CommitInfo(
        sha=parts[0],
        tree=parts[1],
        parents=tuple(parts[2].split()),
        author_name=parts[3],
        author_email=parts[4],
        author_date=int(parts[5]),
        committer_name=parts[6],
        committer_email=parts[7],
        committer_date=int(parts[8]),
        message=parts[9].rstrip("\n"),
    )


@dataclass(frozen=True)
class FileChange:
    filename: str
    status: str  # added, removed, modified, renamed
    additions: int
    deletions: int
    patch: str
    previous_filename: str | None = None


_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "T": "changed"}


def diff_files(bare: Path, old: str | None, new: str) -> list[FileChange]:
    """Files changed from `old` (None: the empty tree) to `new`, with patches (cached)."""
    return list(_diff_files(bare, old, new))


@functools.lru_cache(maxsize=1024)
def _diff_files(bare: Path, old: str | None, new: str) -> tuple[FileChange, ...]:
    base = old or git(bare, "hash-object", "-t", "tree", "/dev/null").strip()
    names = git(bare, "diff", "--name-status", "-M", "-z", base, new).split("\x00")
    numstat = git(bare, "diff", "--numstat", "-M", "-z", base, new)
    stats = _parse_numstat(numstat)
    changes: list[FileChange] = []
    i = 0
    while i < len(names) and names[i]:
        code = names[i][0]
        if code == "R":
            previous, filename = names[i + 1], names[i + 2]
            i += 3
        else:
            previous, filename = None, names[i + 1]
            i += 2
        adds, dels = stats.get(filename, (0, 0))
        patch = git(bare, "diff", base, new, "--", filename)
        hunk_start = patch.find("\n@@")
        changes.append(
            FileChange(
                filename=filename,
                status=_STATUS.get(code, "modified"),
                additions=adds,
                deletions=dels,
                patch=patch[hunk_start + 1 :] if hunk_start >= 0 else "",
                previous_filename=previous,
            )
        )
    return tuple(changes)


def _parse_numstat(out: str) -> dict[str, tuple[int, int]]:
    stats: dict[str, tuple[int, int]] = {}
    fields = out.split("\x00")
    i = 0
    while i < len(fields) and fields[i]:
        head = fields[i].split("\t")
        adds = int(head[0]) if head[0].isdigit() else 0
        dels = int(head[1]) if head[1].isdigit() else 0
        if len(head) >= 3 and head[2]:
            stats[head[2]] = (adds, dels)
            i += 1
        else:  # rename: "adds\tdels\t" then old NUL new
            stats[fields[i + 2]] = (adds, dels)
            i += 3
    return stats


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str  # blob or tree
    sha: str
    size: int
    path: str


def tree_entries(bare: Path, rev: str, path: str) -> list[TreeEntry] | None:
    """Entries at `path` (a file yields one entry, a directory its children), or None."""
    spec = f"{rev}:{path}" if path else f"{rev}^{{tree}}"
    kind = git(bare, "cat-file", "-t", spec, check=False).strip()
    if kind == "blob":
        out = git(bare, "ls-tree", "-l", rev, "--", path)
        return [_tree_line(line, "") for line in out.splitlines()]
    if kind == "tree":
        out = git(bare, "ls-tree", "-l", spec)
        prefix = f"{path.rstrip('/')}/" if path else ""
        return [_tree_line(line, prefix) for line in out.splitlines()]
    return None


def _tree_line(line: str, prefix: str) -> TreeEntry:
    meta, _, name = line.partition("\t")
    mode, kind, sha, size = meta.split()
    return TreeEntry(mode, kind, sha, int(size) if size.isdigit() else 0, prefix + name)


def read_blob(bare: Path, sha: str) -> bytes:
    done = subprocess.run(
        ["git", "-C", str(bare), "cat-file", "blob", sha],
        capture_output=True,
        check=True,
        env=_clean_env(),
    )
    return done.stdout
