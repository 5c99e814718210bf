"""The command runners: bubblewrap isolation, time limit, output cap, refusal without bwrap."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents_testkit import SANDBOX_PATH
from prerequisites import require_bwrap

from trunkline.agents.composition import build_sandbox
from trunkline.agents.roles import EXECUTOR_TOOLS
from trunkline.agents.sandbox import (
    BubblewrapSandbox,
    CommandAllowlist,
    CommandRefusedError,
    RefusingSandbox,
    SandboxMode,
    UnsandboxedRunner,
    make_sandbox,
)
from trunkline.agents.tools import Toolbox
from trunkline.settings import load_settings

PY = sys.executable


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="trunkline-sbx-", dir="/var/tmp"))
    (directory / "data.txt").write_text("visible unless hidden")
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_agents_bwrap_runs_in_the_worktree_with_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_bwrap()
    monkeypatch.setenv("SOME_PARENT_SECRET", "parent-secret-value")
    sandbox = BubblewrapSandbox(tmp_path, path=SANDBOX_PATH, time_limit=60)
    code = "import os; open('made.txt', 'w').write('ok'); print(sorted(os.environ))"
    result = sandbox.run([PY, "-c", code])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "made.txt").read_text() == "ok"
    assert "SOME_PARENT_SECRET" not in result.output
    names = set(eval(result.output.strip()))  # noqa: S307 - a list literal we printed
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
    assert names <= allowed | {"CI", "PWD"}


def test_agents_bwrap_hidden_paths_are_empty_inside(tmp_path: Path, outside_tmp: Path) -> None:
    require_bwrap()
    read = [PY, "-c", f"print(open('{outside_tmp}/data.txt').read())"]
    visible = BubblewrapSandbox(tmp_path, path=SANDBOX_PATH).run(read)
    assert "visible unless hidden" in visible.output
    hidden = BubblewrapSandbox(tmp_path, path=SANDBOX_PATH, hidden_paths=(outside_tmp,)).run(read)
    assert hidden.exit_code != 0
    assert "No such file" in hidden.output


def test_agents_bwrap_time_limit_kills_the_process_tree(tmp_path: Path) -> None:
    require_bwrap()
    marker = f"trunkline_sleeper_{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; {marker} = 1; time.sleep(600)'])\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    result = BubblewrapSandbox(tmp_path, path=SANDBOX_PATH, time_limit=2).run([PY, "-c", code])
    assert result.timed_out
    assert result.exit_code != 0
    assert "started" in result.output
    deadline = time.monotonic() + 30
    while processes_mentioning(marker):
        assert time.monotonic() < deadline, "the grandchild outlived the time limit"
        time.sleep(0.1)


def processes_mentioning(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(entry.name)
            except OSError:
                continue
    return found


def test_agents_output_is_capped(tmp_path: Path) -> None:
    require_bwrap()
    code = "import sys; sys.stdout.write('x' * 500_000)"
    result = BubblewrapSandbox(tmp_path, path=SANDBOX_PATH, output_cap=1000).run([PY, "-c", code])
    assert result.truncated
    assert len(result.output) == 1000
    assert result.exit_code == 0


def test_agents_unsandboxed_runner_still_clears_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_PARENT_SECRET", "parent-secret-value")
    runner = make_sandbox(SandboxMode.NONE, tmp_path, path=SANDBOX_PATH, time_limit=60)
    assert isinstance(runner, UnsandboxedRunner)
    result = runner.run([PY, "-c", "import os; print(dict(os.environ))"])
    assert result.exit_code == 0
    assert "parent-secret-value" not in result.output


def test_agents_missing_bwrap_refuses_run_command_unless_sandbox_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    sandbox = make_sandbox(SandboxMode.BUBBLEWRAP, tmp_path)
    assert isinstance(sandbox, RefusingSandbox)
    with pytest.raises(CommandRefusedError, match="bubblewrap"):
        sandbox.run(["pytest"])
    toolbox = Toolbox(
        tmp_path, EXECUTOR_TOOLS, sandbox=sandbox, allowlist=CommandAllowlist.of(["pytest -q"])
    )
    outcome = toolbox.execute("run_command", {"command": "pytest -q"})
    assert outcome.refused
    assert outcome.refusal_reason is not None
    assert "bubblewrap" in outcome.refusal_reason
    assert "TRUNKLINE_SANDBOX=none" in outcome.refusal_reason
    assert os.environ["PATH"] == str(empty)


def test_agents_commands_never_outlive_the_wall_budget(tmp_path: Path) -> None:
    require_bwrap()
    sandbox = BubblewrapSandbox(tmp_path, path=SANDBOX_PATH, time_limit=600)
    allow = CommandAllowlist.of([f"{PY} -c"])
    spent = Toolbox(tmp_path, EXECUTOR_TOOLS, sandbox, allow, remaining_seconds=lambda: 0.5)
    refused = spent.execute("run_command", {"command": f"{PY} -c 'print(1)'"})
    assert refused.refused
    assert refused.refusal_reason == "the wall-time budget of this work item is spent"
    short = Toolbox(tmp_path, EXECUTOR_TOOLS, sandbox, allow, remaining_seconds=lambda: 2.0)
    killed = short.execute("run_command", {"command": f"{PY} -c 'import time; time.sleep(600)'"})
    assert "killed: time limit reached" in killed.content
    assert short.commands[-1].exit_code != 0


def test_agents_data_dir_is_hidden_but_its_worktree_stays_writable(outside_tmp: Path) -> None:
    require_bwrap()
    worktree = outside_tmp / "worktrees" / "item-9"
    worktree.mkdir(parents=True)
    (worktree / "f.txt").write_text("in the worktree")
    settings = load_settings(data_dir=outside_tmp, sandbox_path=SANDBOX_PATH)
    sandbox = build_sandbox(settings, worktree)
    code = (
        "import os\n"
        "print(open('f.txt').read())\n"
        f"print(sorted(os.listdir('{outside_tmp}')))\n"
        "open('g.txt', 'w').write('written')\n"
    )
    result = sandbox.run([PY, "-c", code])
    assert result.exit_code == 0, result.output
    assert "in the worktree" in result.output
    assert "['worktrees']" in result.output  # data.txt is invisible
    assert (worktree / "g.txt").read_text() == "written"


def test_agents_the_app_private_key_is_unreadable_in_the_sandbox(
    tmp_path: Path, outside_tmp: Path
) -> None:
    require_bwrap()
    key = outside_tmp / "keys" / "app.pem"
    key.parent.mkdir()
    key.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nsecret-key-body\n-----END RSA PRIVATE KEY-----\n"
    )
    (outside_tmp / "keys" / "README").write_text("a neighbour stays readable")
    link = outside_tmp / "current.pem"
    link.symlink_to(key)
    worktree = tmp_path / "wt"
    worktree.mkdir()
    settings = load_settings(
        data_dir=tmp_path / "data", sandbox_path=SANDBOX_PATH, github_private_key_path=link
    )
    sandbox = build_sandbox(settings, worktree)
    for path in (key, link):
        result = sandbox.run(["cat", str(path)])
        assert result.exit_code != 0
        assert "secret-key-body" not in result.output
    assert "neighbour" in sandbox.run(["cat", str(outside_tmp / "keys" / "README")]).output
    # outside the sandbox the bot itself still reads it
    assert "secret-key-body" in key.read_text()
