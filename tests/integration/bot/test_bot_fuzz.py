"""Fuzz: 5,000 random and mutated deliveries (signed and unsigned) never produce a 5xx, and the
stored ones are processed to a final state without crashing a worker."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from trunkline.bot.app import create_app
from trunkline.bot.events import EVENT_MODELS
from trunkline.bot.service import build_service, worker_pool
from trunkline.bot.signature import sign
from trunkline.settings import Settings
from trunkline.store.testing import migrated_engine

SECRET = "fuzz-secret"
REQUESTS = 5000
EVENTS = [*EVENT_MODELS, "ping", "sponsorship"]
BAD_EVENTS = ["", "x" * 150, "weird event", "issues\x7f", "ïssues"]

SEED_PAYLOADS: list[dict[str, Any]] = [
    {
        "action": "opened",
        "issue": {"number": 1, "title": "t", "labels": [{"name": "agent"}, None]},
        "repository": {
            "id": 1,
            "name": "w",
            "full_name": "acme/w",
            "private": False,
            "owner": {"login": "acme", "id": 2},
        },
        "installation": {"id": 3},
    },
    {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": "1" * 40,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {"id": 1, "name": "w", "full_name": "acme/w", "private": True},
    },
    {"action": "checks_requested", "merge_group": {"head_sha": "a" * 40}},
    {"zen": "Speak like a human.", "hook_id": 1},
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 2**63, 2**64 + 7, rng.randrange(-(10**6), 10**6)])
    if choice == 3:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if choice in (4, 5):
        alphabet = "abc\x00\u202e\ufeff\U0001f600\\\"'é\n\t"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 20)))
    if choice == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    keys = ["action", "installation", "repository", "id", "full_name", "issue", "number", "sender"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def _mutate_json(rng: random.Random, payload: dict[str, Any]) -> bytes:
    data = json.loads(json.dumps(payload))
    for _ in range(rng.randrange(1, 4)):
        target: Any = data
        while isinstance(target, dict) and target and rng.random() < 0.6:
            key = rng.choice(list(target))
            if not isinstance(target[key], dict):
                break
            target = target[key]
        if isinstance(target, dict):
            key = rng.choice([*target, "action", "extra"]) if target else "action"
            target[key] = _random_value(rng)
    return json.dumps(data).encode()


def _mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    raw = bytearray(body)
    for _ in range(rng.randrange(1, 6)):
        operation = rng.randrange(4)
        position = rng.randrange(len(raw) + 1)
        if operation == 0 and raw:
            raw[min(position, len(raw) - 1)] = rng.randrange(256)
        elif operation == 1:
            raw[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        elif operation == 2:
            del raw[position : position + rng.randrange(1, 10)]
        else:
            raw = raw[:position]
    return bytes(raw)


def _body(rng: random.Random) -> bytes:
    generators: list[Callable[[], bytes]] = [
        lambda: _mutate_json(rng, rng.choice(SEED_PAYLOADS)),
        lambda: _mutate_bytes(rng, json.dumps(rng.choice(SEED_PAYLOADS)).encode()),
        lambda: json.dumps(_random_value(rng)).encode(),
        lambda: b"[" * rng.randrange(1, 5000) + b"]" * rng.randrange(0, 5000),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))),
        lambda: json.dumps(rng.choice(SEED_PAYLOADS)).encode(),
    ]
    return rng.choice(generators)()


def _headers(rng: random.Random, body: bytes, index: int) -> dict[bytes, bytes]:
    headers = {"X-GitHub-Event": rng.choice(EVENTS if rng.random() < 0.9 else BAD_EVENTS)}
    delivery = f"fuzz-{index}"
    if rng.random() < 0.2:
        delivery = rng.choice([f"fuzz-{index % 50}", "", "é" * 3, "a" * 200])
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    signing = rng.randrange(5)
    if signing <= 2:
        headers["X-Hub-Signature-256"] = sign(SECRET.encode(), body)
    elif signing == 3:
        headers["X-Hub-Signature-256"] = sign(b"wrong", body)
    if rng.random() < 0.1:
        headers["X-Hub-Signature"] = "sha1=" + "0" * 40
    return {key.encode(): value.encode("utf-8") for key, value in headers.items()}


@pytest.mark.slow
def test_random_and_mutated_deliveries_never_cause_a_server_error(tmp_path: Path) -> None:
    rng = random.Random(20_260_521)
    engine = migrated_engine(f"sqlite:///{tmp_path / 'fuzz.db'}")
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET)
    statuses: dict[int, int] = {}
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            for index in range(REQUESTS):
                body = _body(rng)
                response = client.post(
                    "/webhooks", content=body, headers=_headers(rng, body, index)
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (index, body[:200], response.text)
            assert client.get("/api/deliveries", params={"limit": 1000}).status_code == 200
        assert set(statuses) <= {200, 202, 400, 401}, statuses
        # Every outcome was exercised many times.
        assert min(statuses.get(code, 0) for code in (200, 202, 400, 401)) > 20, statuses

        service = build_service(settings, engine=engine)
        for event in EVENT_MODELS:
            service.router.add(lambda routed: None, event)
        pool = worker_pool(service, threads=1)
        while pool.run_once("fuzz-worker"):
            pass
        counts = service.jobs.counts()
        assert set(counts) <= {"done", "dead"}, counts
        with engine.connect() as conn:
            pending = conn.execute(
                text("SELECT count(*) FROM deliveries WHERE state = 'pending'")
            ).scalar_one()
        assert pending == 0
    finally:
        engine.dispose()
