"""Running the executor's allowlisted commands: the allowlist, the `Sandbox` port and runners.

`CommandAllowlist` is pure: a command string is split with shlex (never given to a shell) and
accepted only when its argv starts with one of the policy's commands, token for token.
`BubblewrapSandbox` runs argv under bubblewrap: read-only root, fresh /dev and /proc,
private /tmp, writable worktree (its `.git` read-only), hidden paths (a directory becomes an
empty tmpfs; a file, such as the GitHub App's private key, is covered by `/dev/null` bound
without device access, so opening it fails), every namespace unshared (no network),
`--die-with-parent`, a cleared environment holding no secrets, a time limit that kills the
whole process tree, and an output cap. `UnsandboxedRunner` exists only for an
operator who set the sandbox to "none". `RefusingSandbox` is what you get when bubblewrap is
missing and the sandbox was not explicitly "none": every command is refused, loudly.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Protocol

from trunkline.errors import TerminalError

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_TMP = "/tmp"  # noqa: S108 - a private tmpfs inside the sandbox
_SHELL_OPERATORS = frozenset({";", "&&", "||", "|", "&", ">", ">>", "<", "<<", "2>", "2>&1"})
_SHELL_SUBSTITUTIONS = ("$(", "`", "${")


class SandboxMode(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    NONE = "none"


class CommandRefusedError(TerminalError):
    """The command is not allowlisted, not parseable, or no sandbox can run it."""


@dataclass(frozen=True)
class CommandAllowlist:
    prefixes: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, commands: Iterable[str]) -> CommandAllowlist:
        parsed = tuple(tuple(shlex.split(c)) for c in commands)
        return cls(tuple(p for p in parsed if p))

    def parse(self, command: str) -> tuple[str, ...]:
        """The argv to run, or `CommandRefusedError` saying why not."""
        try:
            argv = tuple(shlex.split(command))
        except ValueError as error:
            raise CommandRefusedError(f"cannot parse the command: {error}") from None
        if not argv:
            raise CommandRefusedError("empty command")
        for token in argv:
            if token in _SHELL_OPERATORS or any(s in token for s in _SHELL_SUBSTITUTIONS):
                raise CommandRefusedError(
                    f"shell syntax {token!r} is not supported: commands run without a shell"
                )
        for prefix in self.prefixes:
            if argv[: len(prefix)] == prefix:
                return argv
        allowed = ", ".join(shlex.join(p) for p in self.prefixes) or "(none)"
        raise CommandRefusedError(
            f"command {shlex.join(argv)!r} is not allowlisted by the policy; allowed: {allowed}"
        )


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    output: str
    truncated: bool
    timed_out: bool


class Sandbox(Protocol):
    def run(self, argv: Sequence[str], time_limit: float | None = None) -> CommandResult:
        """Run `argv` in the worktree; raises `CommandRefusedError` when it cannot.

        `time_limit` may only shorten the runner's own limit (for the wall-time budget).
        """
        ...


def _limit(own: float, requested: float | None) -> float:
    return own if requested is None else max(0.0, min(own, requested))


def minimal_environment(path: str, home: str) -> dict[str, str]:
    """The whole environment a command gets: no inherited variable, so no secret."""
    return {
        "PATH": path,
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "CI": "1",
    }


def _drain(stream: IO[bytes], limit: int, sink: list[bytes]) -> None:
    """Read `stream` to its end, keeping at most `limit` bytes (the rest is discarded)."""
    kept = 0
    while chunk := stream.read(65536):
        if kept < limit:
            sink.append(chunk[: limit - kept])
            kept += len(sink[-1])
    stream.close()


def run_bounded(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    time_limit: float,
    output_cap: int,
) -> tuple[int, str, bool, bool]:
    """Run argv with a time limit (killing its process group) and an output cap.

    Returns (exit code, combined output, truncated, timed out).
    """
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=_drain, args=(process.stdout, output_cap + 1, chunks), daemon=True
    )
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if process.poll() is None or timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    reader.join(timeout=10)
    data = b"".join(chunks)
    truncated = len(data) > output_cap
    text = data[:output_cap].decode("utf-8", errors="replace")
    exit_code = process.returncode if not timed_out else -int(signal.SIGKILL)
    return exit_code, text, truncated, timed_out


def python_installation() -> tuple[Path, ...]:
    """The folders of the Python that runs trunkline (its virtual environment and base)."""
    found = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent}
    return tuple(sorted({path.resolve() for path in found}))


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass(frozen=True)
class BubblewrapSandbox:
    worktree: Path
    path: str = DEFAULT_PATH
    time_limit: float = 300.0
    output_cap: int = 64_000
    hidden_paths: tuple[Path, ...] = ()
    bwrap: str = "bwrap"
    # Read-only inside even when the private /tmp would hide them (a virtual environment made
    # under /tmp), never when they lie under a hidden path. They hold code, no secrets.
    readable_paths: tuple[Path, ...] = field(default_factory=python_installation)

    def command_line(self, argv: Sequence[str]) -> list[str]:
        root = self.worktree.resolve()
        line = [
            self.bwrap,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", SANDBOX_TMP,
        ]  # fmt: skip
        hidden_dirs = [hidden.resolve() for hidden in self.hidden_paths if hidden.is_dir()]
        for hidden in hidden_dirs:
            line += ["--tmpfs", str(hidden)]
        for readable in self.readable_paths:
            shadowed = _under(readable, Path(SANDBOX_TMP))
            if shadowed and readable.is_dir() and not any(_under(readable, h) for h in hidden_dirs):
                line += ["--ro-bind", str(readable), str(readable)]
        line += ["--bind", str(root), str(root)]
        if (root / ".git").exists():
            line += ["--ro-bind", str(root / ".git"), str(root / ".git")]
        # last, so no bind above re-exposes them; `--ro-bind` mounts without device access,
        # so the bound /dev/null cannot even be opened
        for hidden_file in self._hidden_files(hidden_dirs):
            line += ["--ro-bind", "/dev/null", str(hidden_file)]
        line += [
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--clearenv",
        ]  # fmt: skip
        for name, value in minimal_environment(self.path, SANDBOX_TMP).items():
            line += ["--setenv", name, value]
        line += ["--chdir", str(root), "--", *argv]
        return line

    def _hidden_files(self, hidden_dirs: Sequence[Path]) -> list[Path]:
        files = {hidden.resolve() for hidden in self.hidden_paths}
        return sorted(
            path
            for path in files
            if path.is_file() and not any(_under(path, folder) for folder in hidden_dirs)
        )

    def run(self, argv: Sequence[str], time_limit: float | None = None) -> CommandResult:
        code, output, truncated, timed_out = run_bounded(
            self.command_line(argv),
            cwd=self.worktree,
            env={"PATH": DEFAULT_PATH},
            time_limit=_limit(self.time_limit, time_limit),
            output_cap=self.output_cap,
        )
        return CommandResult(tuple(argv), code, output, truncated, timed_out)


@dataclass(frozen=True)
class UnsandboxedRunner:
    """Runs argv directly, still with a minimal environment. Only for sandbox = "none"."""

    worktree: Path
    path: str = DEFAULT_PATH
    time_limit: float = 300.0
    output_cap: int = 64_000

    def run(self, argv: Sequence[str], time_limit: float | None = None) -> CommandResult:
        with tempfile.TemporaryDirectory(prefix="trunkline-home-") as home:
            code, output, truncated, timed_out = run_bounded(
                argv,
                cwd=self.worktree,
                env=minimal_environment(self.path, home),
                time_limit=_limit(self.time_limit, time_limit),
                output_cap=self.output_cap,
            )
        return CommandResult(tuple(argv), code, output, truncated, timed_out)


@dataclass(frozen=True)
class RefusingSandbox:
    reason: str

    def run(self, argv: Sequence[str], time_limit: float | None = None) -> CommandResult:
        raise CommandRefusedError(self.reason)


def make_sandbox(
    mode: SandboxMode,
    worktree: Path,
    *,
    path: str = DEFAULT_PATH,
    time_limit: float = 300.0,
    output_cap: int = 64_000,
    hidden_paths: tuple[Path, ...] = (),
) -> Sandbox:
    """The runner the operator's sandbox mode asks for; refuses when bubblewrap is missing."""
    if mode is SandboxMode.NONE:
        return UnsandboxedRunner(worktree, path, time_limit, output_cap)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return RefusingSandbox(
            "run_command is disabled: bubblewrap (bwrap) is not installed and the sandbox "
            "is not explicitly set to 'none' (TRUNKLINE_SANDBOX=none runs commands "
            "unsandboxed; install bubblewrap instead)"
        )
    return BubblewrapSandbox(worktree, path, time_limit, output_cap, hidden_paths, bwrap)
