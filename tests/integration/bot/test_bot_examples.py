"""Every example payload of every handled event goes through signed HTTP intake, the job
runner and the router, and reaches its handler as the right typed model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prerequisites import require_shared_github
from sqlalchemy import Engine

from trunkline.bot.app import create_app
from trunkline.bot.events import EVENT_MODELS, PullRequestEvent
from trunkline.bot.router import RoutedEvent
from trunkline.bot.service import build_service, worker_pool
from trunkline.bot.testing import signed_headers
from trunkline.settings import Settings
from trunkline.store.deliveries import list_deliveries
from trunkline.store.testing import migrated_engine

SECRET = "examples-secret"


def _examples() -> list[tuple[str, dict[str, Any]]]:
    path = require_shared_github() / "webhook-examples.json"
    found = []
    for entry in json.loads(path.read_text()):
        if entry["name"] in EVENT_MODELS:
            found += [(entry["name"], example) for example in entry["examples"]]
    return found


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'examples.db'}")
    yield engine
    engine.dispose()


def test_every_example_of_every_handled_event_is_accepted_parsed_and_routed(
    engine: Engine, tmp_path: Path
) -> None:
    examples = _examples()
    assert {name for name, _ in examples} == set(EVENT_MODELS)
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET)
    service = build_service(settings, engine=engine)
    received: list[RoutedEvent] = []
    for event in EVENT_MODELS:
        service.router.add(received.append, event)
    pr_opened: list[str] = []

    @service.router.register("pull_request", action="opened")
    def on_opened(routed: RoutedEvent) -> None:
        assert isinstance(routed.payload, PullRequestEvent)
        pr_opened.append(routed.payload.pull_request.head.sha)

    with TestClient(create_app(settings, engine=engine)) as client:
        for index, (event, example) in enumerate(examples):
            body = json.dumps(example).encode()
            headers = signed_headers(SECRET, body, event=event, delivery_id=f"ex-{index}")
            response = client.post("/webhooks", content=body, headers=headers)
            assert response.status_code == 202, (event, response.text)

    pool = worker_pool(service, threads=1)
    while pool.run_once("test-worker"):
        pass

    records = list_deliveries(engine, limit=1000)
    assert len(records) == len(examples)
    states = {record.delivery_id: (record.state, record.error) for record in records}
    assert all(state == ("processed", None) for state in states.values()), states
    assert len(received) == len(examples)
    for routed, (event, example) in zip(
        sorted(received, key=lambda item: int(item.delivery_id.split("-")[1])),
        examples,
        strict=True,
    ):
        assert routed.event == event
        assert isinstance(routed.payload, EVENT_MODELS[event])
        assert routed.action == example.get("action")
        assert routed.raw == example
    opened = [ex for name, ex in examples if name == "pull_request" and ex["action"] == "opened"]
    assert pr_opened == [ex["pull_request"]["head"]["sha"] for ex in opened]
    assert service.jobs.counts() == {"done": len(examples)}


def test_processing_outcomes_ignored_failed_and_idempotent(engine: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET)
    service = build_service(settings, engine=engine)
    calls: list[str] = []
    service.router.add(lambda routed: calls.append(routed.delivery_id), "issues")
    deliveries = [
        ("ping", {"zen": "Design for failure."}, "ping-1"),  # no model: ignored
        ("push", {"ref": "refs/heads/main"}, "push-1"),  # modelled, does not fit: failed
        ("check_run", _check_run(), "check-1"),  # modelled, no handler: ignored
        ("issues", _issue(), "issue-1"),  # routed: processed
    ]
    with TestClient(create_app(settings, engine=engine)) as client:
        for event, payload, delivery_id in deliveries:
            body = json.dumps(payload).encode()
            headers = signed_headers(SECRET, body, event=event, delivery_id=delivery_id)
            assert client.post("/webhooks", content=body, headers=headers).status_code == 202
    pool = worker_pool(service, threads=1)
    while pool.run_once("test-worker"):
        pass
    states = {r.delivery_id: r for r in list_deliveries(engine, limit=10)}
    assert states["ping-1"].state == "ignored"
    assert states["push-1"].state == "failed"
    assert "push payload does not match" in (states["push-1"].error or "")
    assert states["check-1"].state == "ignored"
    assert states["issue-1"].state == "processed"
    assert calls == ["issue-1"]
    assert service.jobs.counts() == {"done": 3, "dead": 1}
    # Re-running a processed delivery's job (a worker died before marking it done) is a no-op.
    (dead,) = service.jobs.list(state="dead")
    handler = service.handlers.handlers["process_delivery"]
    from trunkline.store.jobs import ClaimedJob

    rerun = ClaimedJob(
        id=0,
        key="delivery:issue-1",
        kind="process_delivery",
        payload={"delivery_id": "issue-1"},
        attempts=2,
        max_attempts=8,
        claimed_by="again",
        lease_expires_at=dead.updated_at,
    )
    handler(rerun)
    assert calls == ["issue-1"]


def _issue() -> dict[str, Any]:
    return {
        "action": "opened",
        "issue": {"number": 1, "title": "t", "user": {"login": "u", "id": 1}},
        "repository": {
            "id": 1,
            "name": "w",
            "full_name": "acme/w",
            "private": False,
            "owner": {"login": "acme", "id": 2},
        },
    }


def _check_run() -> dict[str, Any]:
    return {
        "action": "completed",
        "check_run": {"id": 1, "name": "ci", "head_sha": "a" * 40, "status": "completed"},
        "repository": _issue()["repository"],
    }
