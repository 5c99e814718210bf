"""A whole dispatch world on one machine: the forge, role-playing agents, bot processes.

Performs I/O: files in a given directory, the local forge (a uvicorn thread), the
role-playing Messages API (a uvicorn thread), `trunkline db upgrade` / `serve` / `worker`
subprocesses. Used by `trunkline bench dispatch` and the multi-replica tests; the bot
processes are configured only through the environment, exactly as in production
(docs/deploy.md), with the forge as GitHub and `RolePlayingMessagesServer` as the Messages API.

The seeded repository `alice/demo` has subsystems `s1..sK` (`sN/**`, capacity
`subsystem_capacity`), `dispatch.max_active`, the forge's CI (`true`, check `ci`, required by
the queue) and one issue per target file, each assigned to a subsystem round robin; `bob`
(write access) labels them with the dispatch label `agent`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from trunkline.forge.seed import SeedSpec
from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.pipeline.role_play_agents import RolePlayingMessagesServer, issue_body

REPO = "alice/demo"
LABEL = "agent"
LABELLER = "bob"
BOT_LOGIN = "trunkline[bot]"


@dataclass(frozen=True)
class WorldShape:
    issues: int
    subsystems: int
    subsystem_capacity: int = 1
    max_active: int = 4

    def target(self, index: int) -> str:
        """The file issue `index` (0-based) creates, in subsystem s((index % K) + 1)."""
        return f"s{index % self.subsystems + 1}/issue-{index + 1}.txt"


def policy_yaml(shape: WorldShape) -> str:
    policy = {
        "version": 1,
        "dispatch": {"label": LABEL, "max_active": shape.max_active},
        "subsystems": {
            f"s{n}": {"paths": [f"s{n}/**"], "max_active": shape.subsystem_capacity}
            for n in range(1, shape.subsystems + 1)
        },
        "queue": {"required_checks": ["ci"]},
    }
    return yaml.safe_dump(policy, sort_keys=False)


def write_project(source: Path, shape: WorldShape) -> None:
    (source / ".github").mkdir(parents=True, exist_ok=True)
    (source / ".github" / "trunkline.yml").write_text(policy_yaml(shape), encoding="utf-8")
    (source / "README.md").write_text("# demo\n", encoding="utf-8")
    for n in range(1, shape.subsystems + 1):
        (source / f"s{n}").mkdir(exist_ok=True)
        (source / f"s{n}" / "README.md").write_text(f"Subsystem s{n}.\n", encoding="utf-8")


def seed_spec(source: Path, shape: WorldShape) -> SeedSpec:
    spec = default_spec(source=source).model_dump(mode="json")
    repository = spec["repositories"][0]
    repository["labels"].append({"name": LABEL, "color": "0e8a16"})
    repository["issues"] = [
        {
            "title": f"Add {shape.target(index)}",
            "body": issue_body(shape.target(index)),
            "author": "alice",
        }
        for index in range(shape.issues)
    ]
    repository["ci"] = {"command": "true", "branches": ["main", "trunkline/*"]}
    return SeedSpec.model_validate(spec)


@dataclass
class BotProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-characters:]
        except OSError:
            return ""


@dataclass
class DispatchWorld:
    root: Path
    shape: WorldShape
    forge: ForgeHandle
    agents: RolePlayingMessagesServer
    bots: list[BotProcess] = field(default_factory=list)

    def issue_numbers(self) -> dict[str, int]:
        """Target file -> the number of the seeded issue that creates it."""
        response = httpx.get(
            f"{self.forge.api_url}/repos/{REPO}/issues",
            params={"state": "all", "per_page": "100"},
            headers={"Authorization": f"token {self.forge.token('alice')}"},
            timeout=30,
        )
        response.raise_for_status()
        titles = {item["title"]: int(item["number"]) for item in response.json()}
        return {
            self.shape.target(index): titles[f"Add {self.shape.target(index)}"]
            for index in range(self.shape.issues)
        }

    def environment(self, database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
        """The environment of a bot process: the App on the forge, the role-playing agents."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("TRUNKLINE_") and key != "DATABASE_URL"
        }
        return {
            **inherited,
            "DATABASE_URL": database_url,
            "TRUNKLINE_DATA_DIR": str(data_dir),
            "TRUNKLINE_WEBHOOK_SECRET": self.forge.webhook_secret or "",
            "TRUNKLINE_GITHUB_API_URL": self.forge.api_url,
            "TRUNKLINE_GITHUB_WEB_URL": self.forge.base_url,
            "TRUNKLINE_GITHUB_APP_ID": str(self.forge.app_id),
            "TRUNKLINE_GITHUB_PRIVATE_KEY_PATH": str(self.forge.private_key_path),
            "TRUNKLINE_GITHUB_BOT_LOGIN": BOT_LOGIN,
            "TRUNKLINE_AGENT_PROVIDER": "anthropic",
            "TRUNKLINE_ANTHROPIC_API_KEY": self.agents.api_key,
            "TRUNKLINE_ANTHROPIC_BASE_URL": self.agents.url,
            "TRUNKLINE_LOG_LEVEL": "WARNING",
            **extra,
        }

    def upgrade_database(self, database_url: str) -> None:
        env = self.environment(database_url, self.root / "migrate")
        subprocess.run(
            [sys.executable, "-m", "trunkline", "db", "upgrade"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_bot(
        self, name: str, arguments: list[str], env: dict[str, str], url: str | None = None
    ) -> BotProcess:
        log_path = self.root / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "trunkline", *arguments],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        bot = BotProcess(name, process, log_path, url)
        self.bots.append(bot)
        return bot

    def hook_webhooks_to(self, url: str) -> None:
        """Point the forge's App webhook at a bot's intake."""
        self.forge.admin(
            "PUT", "webhook", {"url": f"{url}/webhooks", "secret": self.forge.webhook_secret}
        )

    def label(self, issue: int, login: str = LABELLER) -> None:
        response = httpx.post(
            f"{self.forge.api_url}/repos/{REPO}/issues/{issue}/labels",
            json={"labels": [LABEL]},
            headers={"Authorization": f"token {self.forge.token(login)}"},
            timeout=30,
        )
        response.raise_for_status()

    def stop_bots(self, grace: float = 20.0) -> None:
        for bot in self.bots:
            if bot.process.poll() is None:
                bot.process.terminate()
        for bot in self.bots:
            try:
                bot.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                bot.process.kill()
                bot.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(bot: BotProcess, timeout: float = 60.0) -> None:
    """Until the bot's /readyz answers 200 (raises with its log if it exits)."""
    import time

    assert bot.url is not None
    deadline = time.monotonic() + timeout
    while True:
        if bot.process.poll() is not None:
            raise RuntimeError(f"{bot.name} exited: {bot.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{bot.url}/readyz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{bot.name} did not become ready: {bot.log_tail()}")
        time.sleep(0.05)


@contextlib.contextmanager
def dispatch_world(root: Path, shape: WorldShape) -> Iterator[DispatchWorld]:
    """The forge seeded for `shape` and the role-playing agents; stops every bot on exit."""
    source = root / "source"
    write_project(source, shape)
    agents = RolePlayingMessagesServer()
    with running_forge(seed_spec(source, shape), data_dir=root / "forge") as forge, agents:
        world = DispatchWorld(root, shape, forge, agents)
        try:
            yield world
        finally:
            world.stop_bots()
