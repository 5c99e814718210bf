"""`trunkline bench intake`: webhook acknowledgement throughput and latency, against a ceiling.

Performs I/O (subprocess servers on loopback, sockets, a temporary PostgreSQL database).
For each target (the bare 202 endpoint, intake on SQLite, intake on PostgreSQL) it starts a
server process, then `clients` concurrent keep-alive connections send signed deliveries (each
with a fresh delivery id) for `seconds`. A request counts when its response arrived; latency is
from the first byte sent to the last byte of the response. The client is a minimal raw-socket
HTTP/1.1 client so that it costs little of the machine's CPU next to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trunkline.bot.signature import sign

BENCH_SECRET = "bench-secret"  # noqa: S105 - a throwaway secret for a loopback benchmark
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

SAMPLE_PAYLOAD: dict[str, Any] = {
    "action": "opened",
    "issue": {
        "number": 42,
        "title": "Add retries to the importer",
        "body": "The importer gives up on the first 502. " * 20,
        "state": "open",
        "user": {"login": "octocat", "id": 1, "type": "User"},
        "labels": [{"name": "agent"}],
    },
    "repository": {
        "id": 1296269,
        "name": "hello-world",
        "full_name": "octocat/hello-world",
        "owner": {"login": "octocat", "id": 1, "type": "User"},
        "private": False,
        "default_branch": "main",
    },
    "installation": {"id": 1234},
    "sender": {"login": "octocat", "id": 1, "type": "User"},
}


@dataclass(frozen=True)
class Figures:
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int

    def as_json(self) -> dict[str, float | int]:
        return {
            "deliveries_per_s": round(self.deliveries_per_s, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.requests,
            "errors": self.errors,
        }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server(kind: str, env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "trunkline.bot.bench_server", kind, str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"bench server {kind} exited: {error[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bench server {kind} did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_ids = itertools.count()
_RUN = uuid.uuid4().hex[:12]


def _request(port: int, body: bytes, secret: bytes) -> bytes:
    headers = [
        "POST /webhooks HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "X-GitHub-Event: issues",
        f"X-GitHub-Delivery: {_RUN}-{next(_ids)}",
        f"X-Hub-Signature-256: {sign(secret, body)}",
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(headers).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def _client(
    port: int, body: bytes, secret: bytes, until: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            request = _request(port, body, secret)
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            if status >= 300:
                errors.append(status)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class _Tally:
    latencies: list[float]
    errors: list[int]
    seconds: float = 0.0

    def figures(self) -> Figures:
        ordered = sorted(self.latencies)
        ok = len(ordered) - len(self.errors)
        return Figures(
            deliveries_per_s=ok / self.seconds if self.seconds else 0.0,
            p50_ms=statistics.median(ordered) * 1000 if ordered else 0.0,
            p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
            if ordered
            else 0.0,
            requests=len(ordered),
            errors=len(self.errors),
        )


async def _load(port: int, clients: int, seconds: float, tally: _Tally) -> None:
    body = json.dumps(SAMPLE_PAYLOAD).encode()
    secret = BENCH_SECRET.encode()
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_client(port, body, secret, until, tally.latencies, tally.errors) for _ in range(clients))
    )
    tally.seconds += time.perf_counter() - started


def _measure_interleaved(
    ports: dict[str, int], clients: int, seconds: float, rounds: int
) -> dict[str, Figures]:
    """Load one target at a time, alternating in `rounds` slices, so that background noise on
    a shared machine falls on every target alike. A short warm-up precedes each target."""
    tallies = {name: _Tally([], []) for name in ports}
    for port in ports.values():
        asyncio.run(_load(port, clients, min(0.5, seconds / 4), _Tally([], [])))
    for _ in range(rounds):
        for name, port in ports.items():
            asyncio.run(_load(port, clients, seconds / rounds, tallies[name]))
    return {name: tally.figures() for name, tally in tallies.items()}


def _upgrade(url: str) -> None:
    from trunkline.store.testing import migrated_engine

    migrated_engine(url).dispose()


@contextlib.contextmanager
def postgres_or_none(admin_url: str) -> Iterator[str | None]:
    """A scratch database on the server of `admin_url` (dropped afterwards), or None."""
    from trunkline.store.testing import temporary_postgres

    scratch = temporary_postgres(admin_url)
    try:
        url = scratch.__enter__()
    except Exception:
        yield None
        return
    try:
        yield url
    finally:
        scratch.__exit__(None, None, None)


def run_intake_bench(
    *, seconds: float, clients: int, postgres_admin_url: str, rounds: int = 5
) -> dict[str, dict[str, float | int] | None]:
    """Start the three servers, then measure them interleaved; `seconds` per target."""
    base_env = {"TRUNKLINE_WEBHOOK_SECRET": BENCH_SECRET, "TRUNKLINE_LOG_LEVEL": "WARNING"}
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="trunkline-bench-"))
        sqlite_url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        _upgrade(sqlite_url)
        ports = {
            "bare": stack.enter_context(running_server("bare", base_env)),
            "sqlite": stack.enter_context(
                running_server(
                    "intake",
                    {**base_env, "DATABASE_URL": sqlite_url, "TRUNKLINE_DATA_DIR": scratch},
                )
            ),
        }
        pg_url = stack.enter_context(postgres_or_none(postgres_admin_url))
        if pg_url is not None:
            _upgrade(pg_url)
            ports["postgres"] = stack.enter_context(
                running_server("intake", {**base_env, "DATABASE_URL": pg_url})
            )
        figures = _measure_interleaved(ports, clients, seconds, max(1, rounds))
    return {
        name: figures[name].as_json() if name in figures else None
        for name in ("sqlite", "postgres", "bare")
    }


def format_report(results: dict[str, dict[str, float | int] | None]) -> str:
    lines = [f"{'target':<10} {'deliveries/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"]
    for name, figures in results.items():
        if figures is None:
            lines.append(f"{name:<10} {'unreachable':>13}")
            continue
        lines.append(
            f"{name:<10} {figures['deliveries_per_s']:>13.1f} {figures['p50_ms']:>8.2f} "
            f"{figures['p99_ms']:>8.2f} {figures['errors']:>7}"
        )
    bare, sqlite = results.get("bare"), results.get("sqlite")
    if bare and sqlite and bare["deliveries_per_s"]:
        share = 100 * sqlite["deliveries_per_s"] / bare["deliveries_per_s"]
        lines.append(f"sqlite intake reaches {share:.0f}% of the bare endpoint")
    return "\n".join(lines)
