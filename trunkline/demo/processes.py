"""Child processes of the demo (the forge, the bot), each in its own process group.

Performs process I/O. A process is started with `start_new_session=True`, so stopping it
signals the whole group: the forge's CI runs and the bot's git and sandbox children go with
it (bubblewrap also dies with its parent). `stop` sends SIGTERM, then SIGKILL after a grace
period; `kill` is SIGKILL at once (the restart test's crash). `ProcessGroup` remembers every
process it started and stops them all, in reverse order, on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from trunkline.errors import TerminalError


class DemoProcessError(TerminalError):
    """A child process did not start, or died while the demo needed it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One long-running child (its own process group), its log file and how to tell it is up."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    health_url: str
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0, ready: Callable[[], bool] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                cwd=str(self.cwd) if self.cwd else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                code = self.process.returncode if self.process else None
                raise DemoProcessError(
                    f"{self.name} exited with {code} while starting; its log "
                    f"({self.log_path}) ends with:\n{_log_tail(self.log_path)}"
                )
            if self._healthy() and (ready is None or ready()):
                return
            if time.monotonic() > deadline:
                self.stop(grace=2)
                raise DemoProcessError(f"{self.name} did not start within {timeout:.0f}s")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group now (a crash) and reap the process."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the group, SIGKILL it after `grace` seconds; leaves nothing running."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # whatever the leader left in its group (CI runs, git) goes too
        self._signal_group(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        return _log_tail(self.log_path, lines)


@dataclass
class ProcessGroup:
    """Every process the demo started; all stopped on exit, whatever the exit."""

    processes: list[ManagedProcess] = field(default_factory=list)

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # Ctrl-C while stopping must not leave a child behind: finish stopping first
        previous = signal.getsignal(signal.SIGINT)
        main_thread = _in_main_thread()
        if main_thread:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
