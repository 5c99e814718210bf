"""POST /webhooks and the read endpoints over HTTP (in-process ASGI), on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from trunkline.bot.app import create_app
from trunkline.bot.testing import encode, signed_headers
from trunkline.errors import ConfigurationError
from trunkline.settings import Settings
from trunkline.store.engine import make_engine
from trunkline.store.schema import SchemaOutOfDateError
from trunkline.store.testing import migrated_engine

SECRET = "intake-test-secret"
PAYLOAD = {
    "action": "opened",
    "installation": {"id": 9},
    "repository": {"full_name": "acme/widgets"},
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET)
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def _post(client: TestClient, body: bytes, **headers: str):  # type: ignore[no-untyped-def]
    options = {"event": "issues", "delivery_id": "d-1"}
    options.update(headers)
    return client.post(
        "/webhooks",
        content=body,
        headers=signed_headers(SECRET, body, **options),
    )


def test_a_signed_delivery_is_stored_with_its_job_and_acknowledged(
    client: TestClient, engine: Engine
) -> None:
    response = _post(client, encode(PAYLOAD))
    assert response.status_code == 202
    assert _count(engine, "deliveries") == 1
    with engine.connect() as conn:
        job = conn.execute(text("SELECT kind, key, state FROM jobs")).one()
    assert tuple(job) == ("process_delivery", "delivery:d-1", "queued")
    listed = client.get("/api/deliveries", params={"limit": 5}).json()
    assert listed[0]["id"] == "d-1"
    assert listed[0]["event"] == "issues"
    assert listed[0]["action"] == "opened"
    assert listed[0]["repo"] == "acme/widgets"
    assert listed[0]["state"] == "pending"
    assert listed[0]["error"] is None
    assert listed[0]["received_at"]


def test_a_repeated_delivery_id_is_acknowledged_and_adds_nothing(
    client: TestClient, engine: Engine
) -> None:
    assert _post(client, encode(PAYLOAD)).status_code == 202
    for _ in range(3):
        assert _post(client, encode(PAYLOAD)).status_code == 200
    assert (_count(engine, "deliveries"), _count(engine, "jobs")) == (1, 1)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "sha1=2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        "sha256=" + "0" * 64,
        "mutated",
    ],
)
def test_unsigned_forged_or_mutated_requests_get_401_and_store_nothing(
    client: TestClient, engine: Engine, signature: str | None
) -> None:
    body = encode(PAYLOAD)
    headers = signed_headers(SECRET, body, event="issues", delivery_id="d-x")
    if signature is None:
        del headers["X-Hub-Signature-256"]
    elif signature == "mutated":
        body = body.replace(b"opened", b"closed")
    else:
        headers["X-Hub-Signature-256"] = signature
    response = client.post("/webhooks", content=body, headers=headers)
    assert response.status_code == 401
    assert (_count(engine, "deliveries"), _count(engine, "jobs")) == (0, 0)


def test_malformed_json_with_a_valid_signature_is_rejected_and_kept(
    client: TestClient, engine: Engine
) -> None:
    response = _post(client, b'{"action": "opened",', delivery_id="bad-1")
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["error"]
    (record,) = client.get("/api/deliveries").json()
    assert (record["id"], record["state"]) == ("bad-1", "rejected")
    assert "malformed JSON" in record["error"]
    assert _count(engine, "jobs") == 0


def test_unknown_events_are_stored_and_acknowledged(client: TestClient, engine: Engine) -> None:
    body = encode({"action": "starred", "zen": "Keep it logically awesome."})
    assert _post(client, body, event="sponsorship_party", delivery_id="u-1").status_code == 202
    assert _count(engine, "jobs") == 1


def test_health_readiness_and_limit_validation(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    for bad in ("0", "1001", "many"):
        assert client.get("/api/deliveries", params={"limit": bad}).status_code == 422


def test_readyz_reports_an_unmigrated_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    settings = Settings(data_dir=tmp_path, webhook_secret=SECRET)
    try:
        with pytest.raises(SchemaOutOfDateError, match="trunkline db upgrade"):
            create_app(settings, engine=engine)
        with TestClient(create_app(settings, engine=engine, require_schema=False)) as client:
            response = client.get("/readyz")
        assert response.status_code == 503
        assert "trunkline db upgrade" in response.json()["reason"]
    finally:
        engine.dispose()


def test_an_app_without_a_webhook_secret_refuses_to_start(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="TRUNKLINE_WEBHOOK_SECRET"):
        create_app(Settings(data_dir=tmp_path), engine=engine)


def test_oversized_bodies_are_refused_before_reading(client: TestClient, engine: Engine) -> None:
    headers = signed_headers(SECRET, b"{}", event="push", delivery_id="big")
    headers["Content-Length"] = str(26 * 1024 * 1024)
    response = client.post("/webhooks", content=b"{}", headers=headers)
    assert response.status_code in (400, 413)
    assert _count(engine, "deliveries") == 0
    assert json.loads(response.content)
