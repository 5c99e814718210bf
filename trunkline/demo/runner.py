"""`run_demo(options) -> DemoResult`: the whole demo, from an empty directory to the facts.

Performs I/O: files, child processes, HTTP, the bot's SQLite store (read-only). Steps:
1. check the sandbox (bubblewrap, unless the caller explicitly chose `none`);
2. write the project (`trunkline.demo.scenario.PROJECT_FILES`) and the forge seed;
3. start the forge (`trunkline forge`, its own process group) with the project, users,
   issues, the App and simulated CI running the project's `unittest` suite;
4. start the scripted agents' Messages API in this process (or use the real Anthropic API);
5. migrate the bot's SQLite store and start the bot (`trunkline serve`, the production
   composition, its own process group) as the App;
6. the people label the issues; then every tick: read the store for the live view, let the
   people act on gated pull requests, redeliver webhooks that failed while the bot was down,
   call the caller's `hook` (the restart test kills and restarts the bot from there);
7. when every item has ended: read the facts back (`trunkline.demo.facts`), stop everything.

Every child is stopped on the way out, whatever the way out (an error, Ctrl-C), and a
temporary data directory is removed.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from sqlalchemy import Engine, func, select

from trunkline.demo.agents import API_KEY, ScriptedMessagesServer
from trunkline.demo.facts import (
    ItemFacts,
    LockFacts,
    MainFacts,
    item_facts,
    lock_facts,
    main_facts,
    read_items,
)
from trunkline.demo.forge_client import ForgeClient
from trunkline.demo.people import People
from trunkline.demo.processes import DemoProcessError, ManagedProcess, ProcessGroup, free_port
from trunkline.demo.scenario import (
    ISSUES,
    MODEL,
    OUTSIDER,
    OWNER,
    PROJECT_FILES,
    REPO,
    REPO_NAME,
    seed_spec,
)
from trunkline.errors import ConfigurationError
from trunkline.pipeline.model import WorkItem
from trunkline.pipeline.states import TERMINAL
from trunkline.store.engine import DEFERRED_OPTION, make_engine
from trunkline.store.schema import upgrade
from trunkline.store.tables import Lock, TimelineEvent

BOT_LOGIN = "trunkline[bot]"
WEBHOOK_SECRET = "demo-webhook-secret"  # noqa: S105 (a local demo, loopback only)
CI_CHECK = "ci"
TICK_SECONDS = 0.25
PEOPLE_EVERY_SECONDS = 0.75
CLOSE_WAIT_SECONDS = 5.0


class SandboxUnavailableError(ConfigurationError):
    """bubblewrap is missing or cannot create a sandbox here."""


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path | None = None  # None: a temporary directory, removed at the end
    provider: str = "scripted"  # or "anthropic" (needs anthropic_api_key)
    anthropic_api_key: str | None = None
    sandbox: str = "bubblewrap"  # "none" only when the user asked for it explicitly
    workers: int = 4
    timeout_seconds: float = 300.0
    timeline_issue: int = 5
    # Secrets the bot is given (tests pass canaries and scan every log for them)
    webhook_secret: str = WEBHOOK_SECRET
    scripted_api_key: str = API_KEY  # the bot's Anthropic key, checked by the scripted agents
    dashboard_token: str | None = None  # the bot's TRUNKLINE_DASHBOARD_TOKEN
    log_level: str = "INFO"  # the bot's TRUNKLINE_LOG_LEVEL


@dataclass
class DemoProgress:
    """What the live view shows; refreshed every tick."""

    elapsed: float
    items: dict[int, WorkItem]
    locks: list[tuple[str, str]]  # (subsystem, holder) held now
    log: list[str]
    bot_starts: int
    finished: bool = False
    dashboard_url: str = ""  # the bot's dashboard while the demo runs


class DemoObserver(Protocol):
    def update(self, progress: DemoProgress) -> None: ...


@dataclass
class DemoResult:
    items: list[ItemFacts]
    main: MainFacts
    locks: LockFacts
    wall_seconds: float
    bot_starts: int
    bot_kills: int
    redelivered: int
    log: list[str]
    timeline: Any = None  # (WorkItemDetail, entries) of options.timeline_issue, for printing
    web_base: str = ""
    problems: list[str] = field(default_factory=list)

    def item(self, issue: int) -> ItemFacts:
        return next(item for item in self.items if item.issue == issue)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": REPO,
            "items": [item.to_json() for item in self.items],
            "main": self.main.to_json(),
            "max_holders": self.locks.max_holders,
            "lock_overlaps": [list(pair) for pair in self.locks.overlaps],
            "wall_seconds": round(self.wall_seconds, 2),
            "bot_starts": self.bot_starts,
            "bot_kills": self.bot_kills,
            "webhooks_redelivered": self.redelivered,
            "problems": self.problems,
        }


class DemoControl:
    """What a hook may do during the run (the restart test kills the bot from here)."""

    def __init__(self, run: _Run) -> None:
        self._run = run

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._run.started

    @property
    def kills(self) -> int:
        return self._run.kills

    @property
    def dashboard_url(self) -> str:
        """The running bot's dashboard overview (`trunkline serve` mounts it at /dashboard)."""
        return self._run.dashboard_url

    @property
    def transitions(self) -> int:
        """Work item transitions the bot has recorded so far (its progress)."""
        with self._run.reader.connect() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(TimelineEvent)
                .where(TimelineEvent.kind == "transition")
            ).scalar_one()
        return int(count)

    def kill_bot(self) -> None:
        """SIGKILL the bot's process group, no warning (a crash)."""
        self._run.bot.kill()
        self._run.kills += 1
        self._run.log.append(f"{self.elapsed:5.1f}s bot killed (SIGKILL)")

    def restart_bot(self) -> None:
        self._run.bot.start()
        self._run.log.append(f"{self.elapsed:5.1f}s bot restarted")


Hook = Callable[[DemoControl], None]


@dataclass
class BotKiller:
    """A hook that SIGKILLs the bot `kills` times at seeded random moments and restarts it.

    The moments are drawn in the run's progress, not in seconds, so they always fall inside
    the run: each kill happens once the store has recorded a drawn number of transitions
    (distinct, between `earliest` and `latest`; an uninterrupted run records about 65), plus
    a random delay of up to `jitter` seconds, so a kill lands at any point of a step.
    """

    kills: int = 5
    seed: int = 0
    earliest: int = 2
    latest: int = 50
    jitter: float = 1.0
    _rng: random.Random | None = None
    _marks: list[int] = field(default_factory=list)
    _due_at: float | None = None

    def __call__(self, control: DemoControl) -> None:
        if self._rng is None:
            self._rng = random.Random(self.seed)  # noqa: S311 (test moments, not secrets)
            span = range(self.earliest, self.latest + 1)
            self._marks = sorted(self._rng.sample(span, min(self.kills, len(span))))
        if control.kills >= len(self._marks):
            return
        if self._due_at is None:
            if control.transitions < self._marks[control.kills]:
                return
            self._due_at = control.elapsed + self._rng.uniform(0, self.jitter)
        if control.elapsed >= self._due_at:
            control.kill_bot()
            control.restart_bot()
            self._due_at = None


def check_sandbox(mode: str) -> None:
    """bubblewrap must be installed and able to run a command, unless `mode` is none."""
    if mode == "none":
        return
    if mode != "bubblewrap":
        raise SandboxUnavailableError(f"unknown sandbox {mode!r}: bubblewrap or none")
    binary = shutil.which("bwrap")
    if binary is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed: the agents' commands run in it. Install it "
            "(apt-get install bubblewrap, dnf install bubblewrap) or run "
            "`trunkline demo --sandbox none` to run them unsandboxed"
        )
    done = subprocess.run(
        [binary, "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-all", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxUnavailableError(
            f"bubblewrap cannot create a sandbox here ({done.stderr.strip() or done.returncode}); "
            "user namespaces may be disabled. Run `trunkline demo --sandbox none` to run the "
            "agents' commands unsandboxed"
        )


@contextlib.contextmanager
def _data_directory(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path = path.resolve()
        if path.exists() and any(path.iterdir()):
            raise ConfigurationError(f"--data {path} is not empty: give a new or empty directory")
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="trunkline-demo-") as temporary:
        yield Path(temporary)


def _write_project(target: Path) -> None:
    for relative, content in PROJECT_FILES.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without trunkline settings of its own, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TRUNKLINE_") and key not in ("DATABASE_URL",)
    }
    env.update(extra)
    return env


@dataclass
class _Run:
    options: DemoOptions
    data: Path
    group: ProcessGroup
    started: float = field(default_factory=time.monotonic)
    log: list[str] = field(default_factory=list)
    kills: int = 0
    redelivered: set[str] = field(default_factory=set)  # delivery guids sent again
    before_bot: set[str] = field(default_factory=set)  # failed before the bot first started
    dashboard_url: str = ""
    bot: ManagedProcess = field(init=False)
    reader: Engine = field(init=False)


def run_demo(
    options: DemoOptions,
    *,
    observer: DemoObserver | None = None,
    hook: Hook | None = None,
) -> DemoResult:
    """Run the whole demo and return its facts; see the module docstring."""
    if options.provider == "anthropic" and not options.anthropic_api_key:
        raise ConfigurationError("--provider anthropic needs an API key (ANTHROPIC_API_KEY)")
    if options.provider not in ("scripted", "anthropic"):
        raise ConfigurationError(f"unknown provider {options.provider!r}: scripted or anthropic")
    check_sandbox(options.sandbox)
    with (
        _data_directory(options.data_dir) as data,
        ProcessGroup() as group,
        contextlib.ExitStack() as stack,
    ):
        run = _Run(options, data, group)
        return _run(run, stack, observer, hook)


def _run(
    run: _Run, stack: contextlib.ExitStack, observer: DemoObserver | None, hook: Hook | None
) -> DemoResult:
    options, data, group = run.options, run.data, run.group
    python = sys.executable
    project = data / "project"
    _write_project(project)
    bot_port, forge_port = free_port(), free_port()
    forge_url = f"http://127.0.0.1:{forge_port}"
    spec_path = data / "seed.yaml"
    spec = seed_spec(str(project), f"http://127.0.0.1:{bot_port}/webhooks", options.webhook_secret)
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    forge_data = data / "forge"
    forge = group.add(
        ManagedProcess(
            "forge",
            [python, "-m", "trunkline", "forge", "--host", "127.0.0.1", "--port",
             str(forge_port), "--data", str(forge_data), "--seed", str(spec_path)],
            _child_env({}),
            data / "logs" / "forge.log",
            f"{forge_url}/_forge/health",
        )
    )  # fmt: skip
    forge.start(ready=lambda: (forge_data / "seed-result.json").exists())
    seeded = yaml.safe_load((forge_data / "seed-result.json").read_text(encoding="utf-8"))
    client = ForgeClient(forge_url, dict(seeded["tokens"]), reader=OWNER)
    stack.callback(client.close)
    run.log.append(f"forge on {forge_url}: {REPO}, @{OWNER} (maintainer), @{OUTSIDER} (outside)")

    agent_env: dict[str, str] = {"TRUNKLINE_AGENT_PROVIDER": "anthropic"}
    if options.provider == "scripted":
        agents = stack.enter_context(ScriptedMessagesServer(options.scripted_api_key))
        agent_env |= {
            "TRUNKLINE_ANTHROPIC_API_KEY": options.scripted_api_key,
            "TRUNKLINE_ANTHROPIC_BASE_URL": agents.url,
            "TRUNKLINE_AGENT_MODEL": MODEL,
            "TRUNKLINE_AGENT_MAX_RETRIES": "2",
            "TRUNKLINE_AGENT_REQUEST_TIMEOUT": "60",
        }
    else:
        agent_env |= {"TRUNKLINE_ANTHROPIC_API_KEY": str(options.anthropic_api_key)}
    bot_data = data / "bot"
    database_url = f"sqlite:///{bot_data / 'trunkline.db'}"
    bot_env = _child_env(
        {
            "TRUNKLINE_DATA_DIR": str(bot_data),
            "TRUNKLINE_DATABASE_URL": database_url,
            "TRUNKLINE_WEBHOOK_SECRET": options.webhook_secret,
            "TRUNKLINE_GITHUB_APP_ID": str(seeded["app_id"]),
            "TRUNKLINE_GITHUB_PRIVATE_KEY_PATH": str(seeded["private_key_path"]),
            "TRUNKLINE_GITHUB_API_URL": f"{forge_url}/api/v3",
            "TRUNKLINE_GITHUB_WEB_URL": forge_url,
            "TRUNKLINE_GITHUB_BOT_LOGIN": BOT_LOGIN,
            "TRUNKLINE_GITHUB_MIN_WRITE_INTERVAL": "0",
            "TRUNKLINE_SANDBOX": options.sandbox,
            "TRUNKLINE_SANDBOX_COMMAND_TIMEOUT": "120",
            "TRUNKLINE_JOB_LEASE_SECONDS": "5",
            "TRUNKLINE_WORKER_POLL_SECONDS": "0.2",
            "TRUNKLINE_WORKER_THREADS": str(options.workers),
            "TRUNKLINE_LOG_FORMAT": "json",
            "TRUNKLINE_LOG_LEVEL": options.log_level,
            **agent_env,
        }
    )
    if options.dashboard_token:
        bot_env["TRUNKLINE_DASHBOARD_TOKEN"] = options.dashboard_token
    engine = make_engine(database_url)
    stack.callback(engine.dispose)
    upgrade(engine)
    reader = run.reader = engine.execution_options(**{DEFERRED_OPTION: True})
    run.bot = group.add(
        ManagedProcess(
            "bot",
            [python, "-m", "trunkline", "serve", "--host", "127.0.0.1", "--port", str(bot_port)],
            bot_env,
            data / "logs" / "bot.log",
            f"http://127.0.0.1:{bot_port}/healthz",
            cwd=data,
        )
    )
    run.bot.start()
    run.dashboard_url = f"http://127.0.0.1:{bot_port}/dashboard/"
    run.before_bot = {
        str(s["guid"]) for s in client.admin("GET", "deliveries") if s.get("status") == "failed"
    }
    run.log.append(
        f"bot (trunkline serve) on 127.0.0.1:{bot_port}, SQLite, {options.provider} agents"
    )
    people = People(client, BOT_LOGIN)
    people.start()
    items = _wait_for_the_end(run, reader, client, people, observer, hook)
    _wait_for_closed_issues(client, items)
    wall = time.monotonic() - run.started
    result = _collect(run, reader, client, forge_data, items, wall, people)
    result.redelivered = len(run.redelivered)
    result.web_base = forge_url
    result.timeline = _timeline_of(reader, options.timeline_issue, forge_url)
    if observer is not None:
        observer.update(_progress(run, reader, items, people, finished=True))
    return result


def _redeliver_failed(run: _Run, client: ForgeClient) -> None:
    """Webhooks the forge gave up on while the bot was down are sent again (as an operator
    does with GitHub's "redeliver"); the bot's intake ignores a delivery id it already has."""
    done = run.redelivered
    summaries = client.admin("GET", "deliveries")
    delivered = {s["guid"] for s in summaries if s.get("status") in ("delivered", "pending")}
    for summary in summaries:
        guid = str(summary.get("guid"))
        if guid in done or guid in delivered or guid in run.before_bot:
            continue
        if summary.get("status") == "failed":
            client.redeliver(int(summary["id"]))
            done.add(guid)


def _wait_for_the_end(
    run: _Run,
    reader: Engine,
    client: ForgeClient,
    people: People,
    observer: DemoObserver | None,
    hook: Hook | None,
) -> dict[int, WorkItem]:
    control = DemoControl(run)
    deadline = run.started + run.options.timeout_seconds
    next_people = 0.0
    while True:
        items = read_items(reader, REPO)
        if observer is not None:
            observer.update(_progress(run, reader, items, people))
        if _all_ended(items):
            return items
        if time.monotonic() > deadline:
            states = {n: item.state.value for n, item in sorted(items.items())}
            raise DemoProcessError(
                f"the demo did not finish within {run.options.timeout_seconds:.0f}s: {states}; "
                f"the bot's log ({run.bot.log_path}) ends with:\n{run.bot.log_tail()}"
            )
        if not run.bot.running():
            raise DemoProcessError(
                f"the bot exited with {run.bot.process.returncode if run.bot.process else None}; "
                f"its log ({run.bot.log_path}) ends with:\n{run.bot.log_tail()}"
            )
        if time.monotonic() >= next_people:
            people.step()
            _redeliver_failed(run, client)
            next_people = time.monotonic() + PEOPLE_EVERY_SECONDS
        if hook is not None:
            hook(control)
        time.sleep(TICK_SECONDS)


def _all_ended(items: dict[int, WorkItem]) -> bool:
    return len(items) >= len(ISSUES) and all(item.state in TERMINAL for item in items.values())


def _wait_for_closed_issues(client: ForgeClient, items: dict[int, WorkItem]) -> None:
    merged = [n for n, item in items.items() if item.state.value == "merged"]
    deadline = time.monotonic() + CLOSE_WAIT_SECONDS
    while merged and time.monotonic() < deadline:
        if all(client.issue_state(REPO, n) == "closed" for n in merged):
            return
        time.sleep(TICK_SECONDS)


def _progress(
    run: _Run,
    reader: Engine,
    items: dict[int, WorkItem],
    people: People,
    *,
    finished: bool = False,
) -> DemoProgress:
    with reader.connect() as conn:
        held = conn.execute(
            select(Lock.subsystem, Lock.holder)
            .where(Lock.repo_full_name == REPO, Lock.holder.is_not(None))
            .order_by(Lock.subsystem, Lock.slot)
        ).all()
    return DemoProgress(
        elapsed=time.monotonic() - run.started,
        items=items,
        locks=[(str(subsystem), str(holder)) for subsystem, holder in held],
        log=[*run.log, *people.log],
        bot_starts=run.bot.starts,
        finished=finished,
        dashboard_url=run.dashboard_url,
    )


def _collect(
    run: _Run,
    reader: Engine,
    client: ForgeClient,
    forge_data: Path,
    items: dict[int, WorkItem],
    wall: float,
    people: People,
) -> DemoResult:
    git_dir = forge_data / "git" / REPO.split("/")[0] / f"{REPO_NAME}.git"
    facts = [
        item_facts(
            client,
            reader,
            git_dir,
            REPO,
            issue.number,
            issue.title,
            items.get(issue.number),
            BOT_LOGIN,
        )
        for issue in ISSUES
    ]
    main = main_facts(client, git_dir, REPO, CI_CHECK)
    problems = []
    for item in facts:
        if item.state == "merged" and item.merged_sha is None:
            problems.append(f"#{item.issue} is merged without a merged SHA")
    return DemoResult(
        items=facts,
        main=main,
        locks=lock_facts(reader, REPO),
        wall_seconds=wall,
        bot_starts=run.bot.starts,
        bot_kills=run.kills,
        redelivered=0,
        log=[*run.log, *people.log],
        problems=problems,
    )


def _timeline_of(reader: Engine, issue: int, web_base: str) -> Any:
    from trunkline.web.queries import load_work_item
    from trunkline.web.timeline import Links, build_entries

    detail = load_work_item(reader, REPO, issue)
    if detail is None:
        return None
    return detail, build_entries(detail.events, detail.steps, Links(web_base, REPO))
