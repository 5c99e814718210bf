"""Shared test world of the queue runner tests: a forge, the bot's intake, a worker process.

Not a test module (no `test_` prefix): imported by the queue integration tests, which are
collected rootdir-style (this directory is put on `sys.path` by the importing module).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import Engine

from trunkline.bot.app import create_app
from trunkline.clock import SystemClock
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.queue.events import Enqueue, GateReport, GatesUpdated
from trunkline.queue.model import ALL_GATES, OutcomeKind, QueueConfig, QueueState
from trunkline.queue.service import QueueService
from trunkline.settings import Settings
from trunkline.store.testing import migrated_engine
from trunkline.web.testing import serve_in_thread

REPO = "alice/demo"
BASE = "main"
WEBHOOK_SECRET = "queue-test-secret"
CONFIG = QueueConfig(
    base=BASE,
    required_checks=("ci",),
    check_timeout=timedelta(minutes=30),
    check_start_timeout=timedelta(minutes=30),
)
QUEUE_MARK = "trunkline merge queue build"


def git(cwd: Path, *args: str, check: bool = True) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


def wait_until(
    what: str, predicate: Callable[[], bool], *, timeout: float = 120.0, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class QueueWorld:
    forge: ForgeHandle
    engine: Engine
    database_url: str
    tmp: Path
    clone: Path
    queues: QueueService
    worker_args: list[str]
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    mains_seen: set[str] = field(default_factory=set)
    pr_counter: int = 0
    ci_hold: Path | None = None

    def hold_ci(self) -> None:
        """Simulated CI runs wait (poll) until `release_ci`."""
        assert self.ci_hold is not None
        self.ci_hold.write_text("hold")

    def release_ci(self) -> None:
        assert self.ci_hold is not None
        self.ci_hold.unlink(missing_ok=True)

    # -- the bot's worker process ------------------------------------------------------------

    def start_worker(self, crash_at: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != "TRUNKLINE_TEST_CRASH_AT"}
        env = {k: v for k, v in env.items() if not k.startswith("TRUNKLINE_")}
        if crash_at is not None:
            env["TRUNKLINE_TEST_CRASH_AT"] = crash_at
        process = subprocess.Popen(
            [sys.executable, "-m", "trunkline.queue.testing", "worker", *self.worker_args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(20)
            if process.stdout is not None:
                process.stdout.close()
        self.workers.clear()

    # -- GitHub side -------------------------------------------------------------------------

    def api(self, method: str, path: str, token: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            f"{self.forge.api_url}{path}",
            json=body,
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def main_sha(self) -> str:
        sha = str(
            self.api("GET", f"/repos/{REPO}/git/ref/heads/{BASE}", self.alice)["object"]["sha"]
        )
        self.mains_seen.add(sha)
        return sha

    @property
    def alice(self) -> str:
        return self.forge.token("alice")

    def push(self, refspec: str, token: str) -> bool:
        url = self.forge.git_url("alice", "demo", token)
        result = subprocess.run(
            ["git", "push", "--quiet", url, refspec],
            cwd=self.clone,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.returncode == 0

    def fetch(self) -> None:
        url = self.forge.git_url("alice", "demo", self.alice)
        git(self.clone, "fetch", "--quiet", url, "+refs/heads/*:refs/remotes/forge/*")

    def open_pr(self, name: str, content: str = "ok\n") -> tuple[int, str]:
        """A branch from main adding `name`, and its PR; returns (number, head sha)."""
        self.fetch()
        self.pr_counter += 1
        branch = f"feature/{name}"
        git(self.clone, "checkout", "--quiet", "-B", branch, "forge/main")
        (self.clone / name).write_text(content)
        git(self.clone, "add", name)
        git(self.clone, "commit", "--quiet", "-m", f"add {name}")
        head = git(self.clone, "rev-parse", "HEAD")
        assert self.push(f"HEAD:refs/heads/{branch}", self.alice)
        pull = self.api(
            "POST",
            f"/repos/{REPO}/pulls",
            self.alice,
            {"title": f"add {name}", "head": branch, "base": BASE, "body": ""},
        )
        return int(pull["number"]), head

    def push_to_pr(self, name: str, extra: str) -> str:
        """A new commit on the PR branch of `name`; returns the new head."""
        branch = f"feature/{name}"
        git(self.clone, "checkout", "--quiet", branch)
        (self.clone / extra).write_text("more\n")
        git(self.clone, "add", extra)
        git(self.clone, "commit", "--quiet", "-m", f"add {extra}")
        head = git(self.clone, "rev-parse", "HEAD")
        assert self.push(f"HEAD:refs/heads/{branch}", self.alice)
        return head

    def outsider_push(self, name: str) -> str:
        """A direct fast-forward of main by the App's token (retried if main moves)."""
        for _ in range(20):
            self.fetch()
            git(self.clone, "checkout", "--quiet", "-B", "outsider", "forge/main")
            (self.clone / name).write_text("outsider\n")
            git(self.clone, "add", name)
            git(self.clone, "commit", "--quiet", "-m", f"outsider adds {name}")
            sha = git(self.clone, "rev-parse", "HEAD")
            if self.push(f"{sha}:refs/heads/{BASE}", self.forge.installation_token()):
                return sha
        raise AssertionError("the outsider could not push to main")

    def green_ci(self, sha: str) -> bool:
        runs = self.api("GET", f"/repos/{REPO}/commits/{sha}/check-runs", self.alice)
        return any(
            run["name"] == "ci" and run["status"] == "completed" and run["conclusion"] == "success"
            for run in runs["check_runs"]
        )

    # -- the queue, as the gates engineer's handlers drive it ---------------------------------

    def enqueue(self, pr: int, head: str, base_sha: str) -> None:
        self.queues.submit(REPO, BASE, Enqueue(pr, head), config=CONFIG, base_sha=base_sha)
        self.approve(pr, head)

    def approve(self, pr: int, head: str) -> None:
        reports = tuple(GateReport(gate, True, "test") for gate in ALL_GATES)
        self.queues.submit(REPO, BASE, GatesUpdated(pr, head, reports))

    def state(self) -> QueueState:
        state = self.queues.state(REPO, BASE)
        assert state is not None
        return state

    def merged(self, prs: set[int]) -> bool:
        self.main_sha()
        state = self.state()
        done = {o.pr for o in state.recent if o.kind is OutcomeKind.MERGED}
        return prs <= done

    def first_parent_chain(self, start: str) -> list[str]:
        """Commits on main's first-parent chain after `start` (newest first)."""
        self.fetch()
        listed = git(self.clone, "rev-list", "--first-parent", f"{start}..forge/main")
        return [line for line in listed.splitlines() if line]


@contextlib.contextmanager
def queue_world(tmp: Path) -> Iterator[QueueWorld]:
    source = tmp / "source"
    source.mkdir()
    (source / "README.md").write_text("demo\n")
    hold = tmp / "ci-hold"
    database_url = f"sqlite:///{tmp / 'bot.db'}"
    engine = migrated_engine(database_url)
    settings = Settings(
        database_url=database_url,
        data_dir=tmp / "bot-data",
        webhook_secret=SecretStr(WEBHOOK_SECRET),
        job_lease_seconds=2.0,
    )
    app = create_app(settings, engine=engine)
    with (
        serve_in_thread(app) as bot_url,
        running_forge(default_spec(source), data_dir=tmp / "forge", ci_workers=4) as forge,
    ):
        forge.admin("PUT", "webhook", {"url": f"{bot_url}/webhooks", "secret": WEBHOOK_SECRET})
        forge.admin(
            "PUT",
            "repos/alice/demo/ci",
            {
                # CI waits while the test holds it (a file outside the repository), so a
                # test can act while a build is being tested; a PR adding BROKEN fails.
                "command": f"while [ -e {hold} ]; do sleep 0.05; done; test ! -e BROKEN",
                "branches": ["trunkline/queue/**"],
                "check_name": "ci",
                "duration_seconds": 0.2,
            },
        )
        clone = tmp / "clone"
        clone.mkdir()
        git(clone, "init", "--quiet")
        git(clone, "config", "user.name", "Test")
        git(clone, "config", "user.email", "test@example.com")
        worker_args = [
            "--database-url",
            database_url,
            "--data-dir",
            str(tmp / "worker-data"),
            "--api-url",
            forge.api_url,
            "--web-url",
            forge.base_url,
            "--app-id",
            str(forge.app_id),
            "--key-path",
            str(forge.private_key_path),
            "--lease",
            "2",
        ]
        world = QueueWorld(
            forge=forge,
            engine=engine,
            database_url=database_url,
            tmp=tmp,
            clone=clone,
            queues=QueueService(engine, SystemClock()),
            worker_args=worker_args,
            ci_hold=hold,
        )
        try:
            yield world
        finally:
            world.stop_workers()
            engine.dispose()
