"""`trunkline serve` wires every area when the GitHub App is configured.

A real `trunkline serve` process talks to the local forge as its GitHub: the forge's signed
webhooks reach the bot's intake, the job workers route them to the queue/gate and takeover
handlers, and the handlers answer through the App's installation token over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import free_port, stop_processes, wait_until

from trunkline.forge.testing import ForgeHandle, default_spec, running_forge
from trunkline.store.testing import migrated_engine


@pytest.fixture(scope="module")
def forge() -> Iterator[ForgeHandle]:
    with running_forge(default_spec()) as handle:
        yield handle


@pytest.fixture(scope="module")
def bot(forge: ForgeHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("bot")
    url = f"sqlite:///{data / 'bot.db'}"
    migrated_engine(url).dispose()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TRUNKLINE_DATA_DIR": str(data),
        "TRUNKLINE_WEBHOOK_SECRET": forge.webhook_secret or "",
        "TRUNKLINE_GITHUB_API_URL": forge.api_url,
        "TRUNKLINE_GITHUB_WEB_URL": forge.base_url,
        "TRUNKLINE_GITHUB_APP_ID": str(forge.app_id),
        "TRUNKLINE_GITHUB_PRIVATE_KEY_PATH": str(forge.private_key_path),
        "TRUNKLINE_GITHUB_BOT_LOGIN": "trunkline[bot]",
        "TRUNKLINE_GITHUB_MIN_WRITE_INTERVAL": "0",
        "TRUNKLINE_WORKER_POLL_SECONDS": "0.1",
        "TRUNKLINE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "trunkline", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.communicate()[1][-3000:]}")
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until("the bot to be ready", ready)
        hooked = httpx.put(
            f"{forge.base_url}/_forge/webhook",
            json={"url": f"{base}/webhooks", "secret": forge.webhook_secret},
            timeout=10,
        )
        assert hooked.status_code < 300, hooked.text
        yield base
    finally:
        stop_processes([process])


def _api(forge: ForgeHandle, login: str) -> httpx.Client:
    return httpx.Client(
        base_url=forge.api_url,
        headers={"Authorization": f"token {forge.token(login)}"},
        timeout=30,
    )


def _bot_replies(forge: ForgeHandle, number: int) -> list[str]:
    with _api(forge, "alice") as api:
        comments = api.get(f"/repos/alice/demo/issues/{number}/comments").json()
    return [c["body"] for c in comments if c["user"]["login"].endswith("[bot]")]


def _push_branch(forge: ForgeHandle, tmp_path: Path, branch: str) -> None:
    remote = f"{forge.base_url}/alice/demo.git".replace(
        "http://", f"http://bob:{forge.token('bob')}@"
    )
    work = tmp_path / "clone"
    git = ["git", "-c", "user.name=bob", "-c", "user.email=bob@example.com"]
    subprocess.run([*git, "clone", "-q", remote, str(work)], check=True)
    (work / "NOTES.md").write_text("a change by bob\n", encoding="utf-8")
    subprocess.run([*git, "-C", str(work), "checkout", "-q", "-b", branch], check=True)
    subprocess.run([*git, "-C", str(work), "add", "NOTES.md"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "notes"], check=True)
    subprocess.run([*git, "-C", str(work), "push", "-q", "origin", branch], check=True)


def test_explain_on_a_pull_request_is_answered_by_the_served_bot(
    forge: ForgeHandle, bot: str, tmp_path: Path
) -> None:
    _push_branch(forge, tmp_path, "bob-notes")
    with _api(forge, "bob") as api:
        pr = api.post(
            "/repos/alice/demo/pulls",
            json={"title": "Notes", "head": "bob-notes", "base": "main", "body": ""},
        ).json()
        api.post(
            f"/repos/alice/demo/issues/{pr['number']}/comments",
            json={"body": "/trunkline explain"},
        ).raise_for_status()
    replies = wait_until(
        "the bot's explain reply",
        lambda: [r for r in _bot_replies(forge, pr["number"]) if "Gates of" in r],
        timeout=90,
    )
    assert isinstance(replies, list)
    assert any("scope" in reply.lower() and "approval" in reply.lower() for reply in replies)


def test_takeover_by_a_read_only_user_is_refused_by_the_served_bot(
    forge: ForgeHandle, bot: str
) -> None:
    with _api(forge, "alice") as api:
        issue = api.post("/repos/alice/demo/issues", json={"title": "Some work"}).json()
    with _api(forge, "carol") as api:
        api.post(
            f"/repos/alice/demo/issues/{issue['number']}/comments",
            json={"body": "/trunkline takeover"},
        ).raise_for_status()
    replies = wait_until(
        "the polite refusal", lambda: _bot_replies(forge, issue["number"]), timeout=90
    )
    assert isinstance(replies, list)
    assert any("carol" in reply and "write" in reply for reply in replies), replies


def test_composing_the_bot_cleans_what_a_crash_left_in_the_workspace(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    from trunkline.bot.service import build_service
    from trunkline.bot.wiring import configure_bot
    from trunkline.settings import Settings
    from trunkline.workspace.model import Identity, RepositorySpec
    from trunkline.workspace.workspace import Workspace

    spec = RepositorySpec("alice/demo", f"{forge.base_url}/alice/demo.git")
    mirror = Workspace(tmp_path, Identity("t", "t@example.com")).ensure_mirror(
        spec, forge.token("alice")
    )
    stale = mirror / "packed-refs.lock"
    stale.write_text("")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    migrated_engine(url).dispose()
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        github_api_url=forge.api_url,
        github_web_url=forge.base_url,
        github_app_id=str(forge.app_id),
        github_private_key_path=forge.private_key_path,
    )
    service = build_service(settings, configure=configure_bot)
    try:
        assert not stale.exists()
        assert (mirror / "HEAD").is_file()
    finally:
        service.engine.dispose()
