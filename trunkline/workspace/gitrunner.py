"""Run one git command through GitPython and return its result as data.

Performs I/O (a git subprocess). The command line never carries secrets: credentials are
passed only through `env_extra`, which goes into that one subprocess's environment and is
neither logged (GitPython logs the argument list only) nor written anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import git

from trunkline.workspace.errors import GitCommandError

# Make every git run deterministic and non-interactive, whatever the user's setup.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


@dataclass(frozen=True)
class GitResult:
    status: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return os.fsdecode(self.stdout).strip()


def run_git(
    cwd: Path,
    *args: str,
    env_extra: Mapping[str, str] | None = None,
    check: bool = True,
) -> GitResult:
    """Run `git <args>` in `cwd`; raise `GitCommandError` on a non-zero exit if `check`."""
    env = dict(_BASE_ENV)
    if env_extra:
        env.update(env_extra)
    status, stdout, stderr = git.Git(str(cwd)).execute(
        ["git", *args],
        with_extended_output=True,
        with_exceptions=False,
        stdout_as_string=False,
        strip_newline_in_stdout=False,
        env=env,
    )
    result = GitResult(int(status), bytes(stdout), str(stderr))
    if check and result.status != 0:
        raise GitCommandError(tuple(args), result.status, result.stderr)
    return result
