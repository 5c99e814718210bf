"""Simulated CI on pushed commits, and a forge restart that keeps its state."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trunkline.forge.testing import ForgeHandle, default_spec, running_forge

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bob",
    "GIT_AUTHOR_EMAIL": "bob@example.com",
    "GIT_COMMITTER_NAME": "Bob",
    "GIT_COMMITTER_EMAIL": "bob@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
CHECK = f"{shlex.quote(sys.executable)} check.py"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForgeHandle]:
    source = tmp_path_factory.mktemp("ci-source")
    (source / "check.py").write_text("import sys\nprint('checked', sys.argv)\n")
    with running_forge(default_spec(source)) as handle:
        yield handle


def push(forge: ForgeHandle, tmp: Path, branch: str, content: str) -> str:
    work = tmp / branch.replace("/", "-")
    git(tmp, "clone", "-q", forge.git_url("alice", "demo", forge.token("bob")), str(work))
    (work / "change.txt").write_text(content)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", content)
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD")


def ci_runs(forge: ForgeHandle, sha: str) -> list[dict[str, Any]]:
    forge.wait_idle()
    response = httpx.get(
        f"{forge.api_url}/repos/alice/demo/commits/{sha}/check-runs",
        headers={"Authorization": f"token {forge.token('carol')}"},
    )
    runs: list[dict[str, Any]] = response.json()["check_runs"]
    return runs


@pytest.mark.parametrize(
    ("config", "conclusion", "words"),
    [
        ({}, "success", "checked"),
        ({"force_failure": True}, "failure", "forced failure"),
        ({"flake_probability": 1.0, "seed": 3}, "failure", "injected flake"),
        ({"command": "exit 3"}, "failure", "exit 3"),
    ],
    ids=["passes", "forced-failure", "flake", "failing-command"],
)
def test_ci_reports_a_check_run_per_pushed_commit(
    forge: ForgeHandle, tmp_path: Path, config: dict[str, Any], conclusion: str, words: str
) -> None:
    forge.admin(
        "PUT",
        "repos/alice/demo/ci",
        {"command": CHECK, "branches": ["agent/*"], **config},
    )
    sha = push(forge, tmp_path, f"agent/{conclusion}-{len(config)}-{time.time_ns()}", words)
    [run] = ci_runs(forge, sha)
    assert (run["name"], run["status"], run["conclusion"]) == ("ci", "completed", conclusion)
    assert words in (run["output"]["title"] + run["output"]["summary"])
    assert run["app"]["slug"] == "forge-ci"


def test_ci_ignores_branches_outside_its_patterns(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.admin("PUT", "repos/alice/demo/ci", {"command": CHECK, "branches": ["main"]})
    sha = push(forge, tmp_path, "elsewhere", "no ci here")
    assert ci_runs(forge, sha) == []


def test_a_restart_keeps_the_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_forge(data_dir=data) as first:
        token = first.token("bob")
        created = httpx.post(
            f"{first.api_url}/repos/alice/demo/issues",
            headers={"Authorization": f"token {token}"},
            json={"title": "survives"},
        )
        assert created.status_code == 201
        first.advance_clock(60)
    with running_forge(data_dir=data, subprocess_mode=True) as second:
        issue = httpx.get(
            f"{second.api_url}/repos/alice/demo/issues/1",
            headers={"Authorization": f"token {token}"},
        )
        assert issue.json()["title"] == "survives"
        assert second.clock_offset() >= 59
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", second.git_url("alice", "demo", token), str(clone))
        assert (clone / "README.md").exists()


def test_a_push_by_file_path_takes_effect_on_rescan(forge: ForgeHandle, tmp_path: Path) -> None:
    work = tmp_path / "by-path"
    git(tmp_path, "clone", "-q", str(forge.git_path("alice", "demo")), str(work))
    (work / "path.txt").write_text("pushed by path\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "by path")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/by-path")
    sha = git(work, "rev-parse", "HEAD")
    changes = forge.rescan("alice", "demo", pusher="bob")["changes"]
    assert changes == [
        {"ref": "refs/heads/by-path", "before": "0" * 40, "after": sha},
    ]
    ref = httpx.get(
        f"{forge.api_url}/repos/alice/demo/git/ref/heads/by-path",
        headers={"Authorization": f"token {forge.token('carol')}"},
    )
    assert ref.json()["object"]["sha"] == sha
    assert forge.rescan("alice", "demo")["changes"] == []
