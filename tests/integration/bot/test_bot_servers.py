"""Real `trunkline serve` processes (uvicorn) on loopback.

- Duplicates: 1,000 concurrent POSTs of ONE delivery, spread over two server processes sharing
  one PostgreSQL -> every response 2xx, exactly one delivery row and one job.
- Lifecycle: serve refuses an old database; a served delivery is processed by the in-process
  workers; SIGTERM shuts the server down cleanly (exit code 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from processes import free_port, stop_processes, wait_until
from sqlalchemy import Engine, text

from trunkline.bot.testing import encode, signed_headers
from trunkline.store.engine import make_engine
from trunkline.store.testing import migrated_engine, temporary_postgres

SECRET = "servers-secret"
PAYLOAD = {"action": "opened", "repository": {"full_name": "acme/widgets"}}


class Servers:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(
        self,
        database_url: str,
        data_dir: Path,
        *,
        workers: int = 1,
        host: str = "127.0.0.1",
        extra_env: dict[str, str] | None = None,
    ) -> tuple[int, subprocess.Popen[str]]:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TRUNKLINE_DATA_DIR": str(data_dir),
            "TRUNKLINE_WEBHOOK_SECRET": SECRET,
            "TRUNKLINE_LOG_LEVEL": "WARNING",
            "TRUNKLINE_WORKER_POLL_SECONDS": "0.1",
            **(extra_env or {}),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trunkline",
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return port, process

    def stop_all(self) -> None:
        stop_processes(self.processes)


@pytest.fixture
def servers() -> Iterator[Servers]:
    running = Servers()
    try:
        yield running
    finally:
        running.stop_all()


def _ready(port: int, process: subprocess.Popen[str]) -> Callable[[], bool]:
    def check() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.communicate()[1][-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


async def _post_concurrently(ports: list[int], body: bytes, total: int) -> list[int]:
    headers = signed_headers(SECRET, body, event="issues", delivery_id="the-one-delivery")
    limits = httpx.Limits(max_connections=total, max_keepalive_connections=total)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = asyncio.Event()

        async def post(index: int) -> int:
            await start.wait()
            port = ports[index % len(ports)]
            response = await client.post(
                f"http://127.0.0.1:{port}/webhooks", content=body, headers=headers
            )
            return response.status_code

        tasks = [asyncio.create_task(post(index)) for index in range(total)]
        await asyncio.sleep(0)
        start.set()
        return list(await asyncio.gather(*tasks))


@pytest.mark.slow
@pytest.mark.postgres
def test_1000_concurrent_posts_of_one_delivery_to_two_servers_store_it_once(
    servers: Servers, tmp_path: Path
) -> None:
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL) as url:
        engine = migrated_engine(url)
        try:
            started = [servers.start(url, tmp_path, workers=0) for _ in range(2)]
            for port, process in started:
                wait_until("the servers to be ready", _ready(port, process), 60)
            statuses = asyncio.run(
                _post_concurrently([port for port, _ in started], encode(PAYLOAD), 1000)
            )
            assert all(200 <= status < 300 for status in statuses), sorted(set(statuses))
            assert statuses.count(202) == 1
            assert statuses.count(200) == 999
            assert _count(engine, "deliveries") == 1
            assert _count(engine, "jobs") == 1
        finally:
            servers.stop_all()
            engine.dispose()


@pytest.mark.slow
def test_serve_processes_deliveries_refuses_old_databases_and_stops_on_sigterm(
    servers: Servers, tmp_path: Path
) -> None:
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    make_engine(old_url).dispose()
    _, refused = servers.start(old_url, tmp_path)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert "trunkline db upgrade" in err

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = migrated_engine(url)
    try:
        port, process = servers.start(url, tmp_path, workers=1)
        wait_until("the server to be ready", _ready(port, process), 60)
        body = encode({"zen": "Anything added dilutes everything else."})
        headers = signed_headers(SECRET, body, event="ping", delivery_id="served-1")
        response = httpx.post(f"http://127.0.0.1:{port}/webhooks", content=body, headers=headers)
        assert response.status_code == 202

        def processed() -> bool:
            listed = httpx.get(f"http://127.0.0.1:{port}/api/deliveries", timeout=5).json()
            return bool(listed) and listed[0]["state"] == "ignored"  # ping: nothing to do

        wait_until("the delivery to be processed", processed, 60)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT state FROM jobs")).scalar_one() == "done"
            holder = conn.execute(text("SELECT holder FROM scheduler_leases")).scalar_one()
        assert holder is not None  # the in-process scheduler took the leader lease
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert process.returncode == 0
        with engine.connect() as conn:
            released = conn.execute(text("SELECT holder FROM scheduler_leases")).scalar_one()
        assert released is None  # a clean stop gives the leader lease up
    finally:
        engine.dispose()


@pytest.mark.slow
def test_worker_command_processes_stored_deliveries_and_stops_on_sigterm(tmp_path: Path) -> None:
    from trunkline.store.deliveries import IncomingDelivery, record_batch

    url = f"sqlite:///{tmp_path / 'worker.db'}"
    engine = migrated_engine(url)
    with engine.begin() as conn:
        record_batch(
            conn,
            [
                IncomingDelivery(
                    delivery_id="queued-1",
                    event="ping",
                    action=None,
                    installation_id=None,
                    repo_full_name=None,
                    payload='{"zen": "Practicality beats purity."}',
                )
            ],
        )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TRUNKLINE_DATA_DIR": str(tmp_path),
        "TRUNKLINE_LOG_LEVEL": "WARNING",
        "TRUNKLINE_WORKER_POLL_SECONDS": "0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "trunkline", "worker", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def done() -> bool:
            if process.poll() is not None:
                raise AssertionError(process.communicate()[1][-3000:])
            with engine.connect() as conn:
                state: str = conn.execute(text("SELECT state FROM jobs")).scalar_one()
            return state == "done"

        wait_until("the worker to finish the job", done, 60)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert process.returncode == 0
        with engine.connect() as conn:
            state = conn.execute(text("SELECT state FROM deliveries")).scalar_one()
        assert state == "ignored"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        engine.dispose()


def test_serve_mounts_the_dashboard_and_metrics_on_loopback(
    servers: Servers, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    migrated_engine(url).dispose()
    port, process = servers.start(url, tmp_path)
    wait_until("the server to be ready", _ready(port, process), 60)
    page = httpx.get(f"http://127.0.0.1:{port}/dashboard/", timeout=10)
    assert page.status_code == 200
    assert "<main" in page.text
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "trunkline_" in metrics.text


def test_serve_exposes_the_dashboard_publicly_only_behind_a_token(
    servers: Servers, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'public.db'}"
    migrated_engine(url).dispose()
    open_port, open_process = servers.start(url, tmp_path, host="0.0.0.0")
    guarded_port, guarded_process = servers.start(
        url, tmp_path, host="0.0.0.0", extra_env={"TRUNKLINE_DASHBOARD_TOKEN": "dash-token"}
    )
    wait_until("the open server to be ready", _ready(open_port, open_process), 60)
    wait_until("the guarded server to be ready", _ready(guarded_port, guarded_process), 60)
    assert httpx.get(f"http://127.0.0.1:{open_port}/dashboard/", timeout=10).status_code == 404
    assert httpx.get(f"http://127.0.0.1:{open_port}/metrics", timeout=10).status_code == 404
    deliveries = f"http://127.0.0.1:{open_port}/api/deliveries"
    assert httpx.get(deliveries, timeout=10).status_code == 404
    guarded = f"http://127.0.0.1:{guarded_port}"
    assert httpx.get(f"{guarded}/dashboard/", timeout=10).status_code == 401
    bearer = {"Authorization": "Bearer dash-token"}
    assert httpx.get(f"{guarded}/dashboard/", headers=bearer, timeout=10).status_code == 200
    assert httpx.get(f"{guarded}/metrics", headers=bearer, timeout=10).status_code == 200
    assert httpx.get(f"{guarded}/api/deliveries", timeout=10).status_code == 401
    listed = httpx.get(f"{guarded}/api/deliveries", headers=bearer, timeout=10)
    assert listed.status_code == 200
    assert listed.json() == []
