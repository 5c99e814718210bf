"""Start a forge for tests, demos and benchmarks: `running_forge(...)`.

Performs I/O (a uvicorn server in a thread, or a `trunkline forge` subprocess; files in a
temporary or given data directory). The context manager binds 127.0.0.1 on a free port,
seeds the forge, yields a `ForgeHandle` with its URLs, the App's id and private key path,
the installation id, personal tokens, and helpers; on exit it stops the server, the webhook
thread and the CI pool (and the subprocess), and removes a temporary data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import yaml

from trunkline.forge.seed import SeedResult, SeedSpec, apply_seed

if TYPE_CHECKING:
    from trunkline.agents.redaction import Redactor
    from trunkline.clock import Clock
    from trunkline.github.installations import InstallationClients


def default_spec(source: Path | None = None, webhook_url: str | None = None) -> SeedSpec:
    """A small world: owner `alice` (admin), `bob` (write), `carol` (read), `dave` (no
    access), the App `trunkline` installed on `alice/demo`, protected `main`."""
    return SeedSpec.model_validate(
        {
            "users": [{"login": x} for x in ("alice", "bob", "carol", "dave")],
            "app": {
                "owner": "alice",
                "webhook_url": webhook_url,
                "webhook_secret": "forge-webhook-secret",
            },
            "repositories": [
                {
                    "owner": "alice",
                    "name": "demo",
                    "source": str(source) if source else None,
                    "protected_branches": ["main"],
                    "collaborators": {"bob": "write", "carol": "read"},
                    "labels": [{"name": "bug", "color": "d73a4a"}, {"name": "queue"}],
                }
            ],
            "installation": {"account": "alice"},
        }
    )


@dataclass
class ForgeHandle:
    """A running forge. `base_url` is the web root; `api_url` ends in /api/v3."""

    base_url: str
    data_dir: Path
    seed: SeedResult
    webhook_secret: str | None = None

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def app_id(self) -> int:
        assert self.seed.app_id is not None, "the seed spec has no app"
        return self.seed.app_id

    @property
    def private_key_path(self) -> Path:
        assert self.seed.private_key_path is not None, "the seed spec has no app"
        return Path(self.seed.private_key_path)

    @property
    def installation_id(self) -> int:
        assert self.seed.installation_id is not None, "the seed spec has no installation"
        return self.seed.installation_id

    def token(self, login: str) -> str:
        """The personal token of a seeded user."""
        return self.seed.tokens[login]

    def app_clients(
        self,
        clock: Clock,
        http: httpx.Client,
        bot_login: str = "trunkline[bot]",
        redactor: Redactor | None = None,
    ) -> InstallationClients:
        """The App's installation clients on this forge (no write spacing: tests go fast;
        default redactor: token shapes only)."""
        from trunkline.agents.redaction import Redactor
        from trunkline.github.adapter import AdapterOptions
        from trunkline.github.installations import InstallationClients

        return InstallationClients(
            api_url=self.api_url,
            app_id=str(self.app_id),
            private_key=self.private_key_path.read_text(),
            clock=clock,
            http=http,
            redactor=redactor if redactor is not None else Redactor(),
            bot_login=bot_login,
            options=AdapterOptions(min_write_interval=0.0),
        )

    def app_jwt(self, lifetime: int = 540) -> str:
        now = int(time.time())  # App JWTs are checked against the wall clock
        claims = {"iat": now - 30, "exp": now + lifetime, "iss": str(self.app_id)}
        return jwt.encode(claims, self.private_key_path.read_text(), algorithm="RS256")

    def installation_token(self) -> str:
        response = httpx.post(
            f"{self.api_url}/app/installations/{self.installation_id}/access_tokens",
            headers={"Authorization": f"Bearer {self.app_jwt()}"},
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def git_url(self, owner: str, repo: str, token: str | None = None) -> str:
        """The smart-HTTP clone URL, with `x-access-token:TOKEN@` when a token is given."""
        host = self.base_url.split("://", 1)[1]
        creds = f"x-access-token:{token}@" if token else ""
        return f"http://{creds}{host}/{owner}/{repo}.git"

    def git_path(self, owner: str, repo: str) -> Path:
        """The bare repository on disk (file-path access; call `rescan` after pushing)."""
        return self.data_dir / "git" / owner / f"{repo}.git"

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}/_forge/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def rescan(self, owner: str, repo: str, pusher: str | None = None) -> Any:
        return self.admin("POST", f"repos/{owner}/{repo}/rescan", {"pusher": pusher or ""})

    def advance_clock(self, seconds: float) -> None:
        self.admin("POST", "clock", {"advance_seconds": seconds})

    def clock_offset(self) -> float:
        now = self.admin("GET", "health")["now"]
        from datetime import datetime

        return datetime.fromisoformat(now).timestamp() - time.time()

    def deliveries(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin("GET", "deliveries")
        return result

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", f"deliveries/{delivery_id}")
        return result

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Wait until webhooks are delivered and simulated CI is done (polls)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.admin("GET", "idle")
            if status["webhooks_idle"] and status["ci_busy"] == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("the forge did not become idle")


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def _data_dir(data_dir: Path | None) -> Iterator[Path]:
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        yield data_dir
        return
    tmp = Path(tempfile.mkdtemp(prefix="forge-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def running_forge(
    spec: SeedSpec | None = None,
    *,
    data_dir: Path | None = None,
    base_dir: Path | None = None,
    subprocess_mode: bool = False,
    ci_workers: int = 2,
) -> Iterator[ForgeHandle]:
    """Run a seeded forge on a free loopback port; see the module docstring."""
    spec = spec if spec is not None else default_spec()
    with _data_dir(data_dir) as data:
        if subprocess_mode:
            with _subprocess_forge(spec, data, base_dir) as handle:
                yield handle
        else:
            with _thread_forge(spec, data, base_dir, ci_workers) as handle:
                yield handle


@contextlib.contextmanager
def _thread_forge(
    spec: SeedSpec, data: Path, base_dir: Path | None, ci_workers: int
) -> Iterator[ForgeHandle]:
    import uvicorn

    from trunkline.forge.runtime import Forge
    from trunkline.forge.server import create_app
    from trunkline.forge.state import ForgeState

    sock = _free_socket()
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    forge = Forge(ForgeState.open(data), base_url, ci_workers=ci_workers)
    forge.start()
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        result = apply_seed(forge, spec, base_dir)
        config = uvicorn.Config(
            create_app(forge), log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="forge-http", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the forge did not start")
            time.sleep(0.01)
        secret = spec.app.webhook_secret if spec.app else None
        yield ForgeHandle(base_url=base_url, data_dir=data, seed=result, webhook_secret=secret)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=30)
        forge.stop()
        sock.close()


@contextlib.contextmanager
def _subprocess_forge(spec: SeedSpec, data: Path, base_dir: Path | None) -> Iterator[ForgeHandle]:
    sock = _free_socket()
    port = sock.getsockname()[1]
    sock.close()
    spec_path = data / "seed-spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec.model_dump(mode="json")), encoding="utf-8")
    command = [
        sys.executable, "-m", "trunkline", "forge",
        "--host", "127.0.0.1", "--port", str(port), "--data", str(data), "--seed", str(spec_path),
    ]  # fmt: skip
    env = dict(os.environ)
    process = subprocess.Popen(
        command, cwd=str(base_dir or Path.cwd()), env=env, stdout=subprocess.DEVNULL
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"trunkline forge exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{base_url}/_forge/health", timeout=2).status_code == 200
                if ready and (data / "seed-result.json").exists():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the forge subprocess did not start")
            time.sleep(0.05)
        raw = json.loads((data / "seed-result.json").read_text(encoding="utf-8"))
        secret = spec.app.webhook_secret if spec.app else None
        yield ForgeHandle(
            base_url=base_url, data_dir=data, seed=SeedResult(**raw), webhook_secret=secret
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class ReceivedWebhook:
    event: str
    delivery: str
    signature: str | None
    body: bytes

    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


class WebhookReceiver:
    """A loopback HTTP server that records every POST (for webhook tests and demos)."""

    def __init__(self, status: int = 200) -> None:
        import http.server

        received: list[ReceivedWebhook] = []
        lock = threading.Lock()
        self.received = received
        self._lock = lock
        answer = status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with lock:
                    received.append(
                        ReceivedWebhook(
                            event=self.headers.get("x-github-event", ""),
                            delivery=self.headers.get("x-github-delivery", ""),
                            signature=self.headers.get("x-hub-signature-256"),
                            body=body,
                        )
                    )
                self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def snapshot(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[ReceivedWebhook]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise TimeoutError(f"expected {count} webhooks, got {len(self.snapshot())}")
