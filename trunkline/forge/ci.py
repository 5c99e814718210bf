"""Simulated CI: run a repository's command on a pushed commit and report a check run.

Performs I/O (git archive, subprocess, sleeps) on a worker pool; never on a request thread.
`CiRunner.schedule` is called after a push to a branch matching the repository's CI
patterns; it asks the `CheckSink` for a queued check run, then (on a worker) extracts the
commit into a temporary directory, marks the run in progress, waits the configured extra
duration, runs the command, and completes the run with the tail of the output as its
summary. `force_failure` fails every run; `flake_probability` fails a run at random with a
generator seeded by (`seed`, sha), so a benchmark is reproducible.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import random
import subprocess
import tarfile
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from trunkline.forge.models import CiConfig

log = logging.getLogger(__name__)

SUMMARY_LIMIT = 60_000


class CheckSink(Protocol):
    """Where CI reports (the forge runtime): creates and updates check runs."""

    def ci_created(self, repo_id: int, sha: str, branch: str, name: str) -> int: ...

    def ci_started(self, run_id: int) -> None: ...

    def ci_completed(self, run_id: int, conclusion: str, title: str, summary: str) -> None: ...


def branch_matches(config: CiConfig, branch: str) -> bool:
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in config.branches)


def flaked(config: CiConfig, sha: str, attempt: int = 1) -> bool:
    """Whether flake injection fails this run (deterministic for a seed, sha and attempt)."""
    if config.flake_probability <= 0:
        return False
    seed = f"{config.seed}:{sha}" if attempt == 1 else f"{config.seed}:{sha}:{attempt}"
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    return rng.random() < config.flake_probability


class CiRunner:
    def __init__(self, sink: CheckSink, workers: int = 2) -> None:
        self._sink = sink
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forge-ci")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def schedule(
        self,
        repo_id: int,
        git_dir: Path,
        sha: str,
        branch: str,
        config: CiConfig,
        *,
        attempt: int = 1,
    ) -> None:
        """Run CI on `sha` (a push to a matching branch; `attempt` > 1: a rerun of a run on
        that SHA, whatever its branch)."""
        if self._stopping or (attempt == 1 and not branch_matches(config, branch)):
            return
        run_id = self._sink.ci_created(repo_id, sha, branch, config.check_name)
        future = self._pool.submit(self._run, run_id, git_dir, sha, config, attempt)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def busy(self) -> int:
        with self._lock:
            return len(self._pending)

    def stop(self) -> None:
        self._stopping = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, run_id: int, git_dir: Path, sha: str, config: CiConfig, attempt: int) -> None:
        try:
            self._sink.ci_started(run_id)
            conclusion, title, summary = self._execute(git_dir, sha, config, attempt)
        except Exception as exc:  # a CI crash is reported, never lost
            log.exception("simulated CI crashed", extra={"run": run_id})
            conclusion, title, summary = "failure", "CI crashed", str(exc)
        self._sink.ci_completed(run_id, conclusion, title, summary[-SUMMARY_LIMIT:])

    def _execute(
        self, git_dir: Path, sha: str, config: CiConfig, attempt: int = 1
    ) -> tuple[str, str, str]:
        if config.duration_seconds > 0:
            time.sleep(config.duration_seconds)
        with tempfile.TemporaryDirectory(prefix="forge-ci-") as tmp:
            archive = subprocess.run(
                ["git", "-C", str(git_dir), "archive", "--format=tar", sha],
                capture_output=True,
                check=True,
            )
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
            try:
                done = subprocess.run(  # noqa: S602 - the command is the operator's CI config
                    config.command,
                    shell=True,
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=config.timeout_seconds,
                    check=False,
                )
                output = f"$ {config.command}\n{done.stdout}{done.stderr}"
                code: int | None = done.returncode
            except subprocess.TimeoutExpired as exc:
                output = f"$ {config.command}\ntimed out after {exc.timeout} s"
                return "timed_out", "CI timed out", output
        if config.force_failure:
            return "failure", "CI failed (forced failure)", output + "\nforced failure\n"
        if flaked(config, sha, attempt):
            return "failure", "CI failed (injected flake)", output + "\ninjected flake\n"
        if code == 0:
            return "success", "CI passed", output
        return "failure", f"CI failed (exit {code})", output
