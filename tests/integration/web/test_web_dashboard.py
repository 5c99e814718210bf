"""The dashboard, /metrics and the terminal views over a real store (SQLite and PostgreSQL).

Rows are written by `trunkline.web.testing.seed_store` through the store's tables, as the
dispatch pipeline will write them; pages are fetched over ASGI (TestClient) and the live feed
over a real uvicorn on loopback.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prerequisites import POSTGRES_ADMIN_URL, require_postgres
from pydantic import SecretStr
from sqlalchemy import Engine, event

from trunkline.cli import main
from trunkline.clock import FakeClock
from trunkline.settings import load_settings
from trunkline.store.testing import migrated_engine, temporary_postgres
from trunkline.web.app import create_dashboard_app
from trunkline.web.testing import (
    HOSTILE_TITLE,
    PLAN,
    Seeded,
    add_event,
    seed_store,
    serve_in_thread,
)

NOW = datetime(2026, 5, 4, 15, 30, tzinfo=UTC)
DEADLINE_SECONDS = 30.0


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine, Seeded]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'store.db'}"
        engine = migrated_engine(url)
        try:
            yield url, engine, seed_store(engine, NOW)
        finally:
            engine.dispose()
        return
    require_postgres()
    with temporary_postgres(POSTGRES_ADMIN_URL) as url:
        engine = migrated_engine(url)
        try:
            yield url, engine, seed_store(engine, NOW)
        finally:
            engine.dispose()


def client(engine: Engine, **settings: Any) -> TestClient:
    app = create_dashboard_app(
        engine,
        load_settings(daily_budget_usd=5.0, **settings),
        FakeClock(NOW + timedelta(minutes=1)),
    )
    return TestClient(app)


def no_writes(engine: Engine) -> list[str]:
    """Record every statement that is not a read (the dashboard must issue none)."""
    writes: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def check(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb not in ("SELECT", "BEGIN", "PRAGMA", "SHOW", "WITH"):
            writes.append(statement)

    return writes


def test_overview_shows_items_queues_locks_and_spend(store: tuple[str, Engine, Seeded]) -> None:
    _, engine, _ = store
    writes = no_writes(engine)
    with client(engine) as http:
        page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    html = page.text
    assert "<h1>Overview</h1>" in html
    assert re.search(r"escalated</span> <strong>1</strong>", html)
    assert "acme/api → main (2 in queue)" in html
    assert re.search(r"<td>1</td>\s*<td><a href=\"https://github.com/acme/api/pull/40\"", html)
    assert "review: pending" in html
    assert "acme/api#12" in html  # the lock holder
    assert "150 s" in html  # the waiter (90 s before NOW, the clock is 1 min later)
    assert "$0.15</strong>" in html
    assert "of $5.00 daily budget" in html
    assert 'href="/items/acme/api/12"' in html
    assert writes == []


def test_untrusted_text_is_escaped(store: tuple[str, Engine, Seeded]) -> None:
    _, engine, _ = store
    with client(engine) as http:
        overview = http.get("/").text
        hostile = http.get("/items/acme/api/13").text
    for html in (overview, hostile):
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in html
    assert "<img src=x" not in hostile
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in hostile
    assert HOSTILE_TITLE not in overview


def test_work_item_page_has_timeline_plan_review_and_links(
    store: tuple[str, Engine, Seeded],
) -> None:
    _, engine, _ = store
    with client(engine) as http:
        page = http.get("/items/acme/api/12")
        missing = http.get("/items/acme/api/999")
    assert page.status_code == 200
    assert missing.status_code == 404
    html = page.text
    for step in PLAN["steps"]:
        assert step in html
    assert "Validation is complete and tested." in html  # the review, in full
    assert "Rename" in html  # ...with its comments
    assert "https://github.com/acme/api/issues/12" in html
    assert "https://github.com/acme/api/pull/40" in html
    assert "https://github.com/acme/api/commit/3f5e1c2a9b7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f" in html
    assert "queued → planning" in html
    assert "pr_open → reviewing" in html
    assert "check ci: success" in html
    assert "gate approval: passed" in html
    assert "alice: approve" in html
    assert "planner step 1 (claude-sonnet-4-5)" in html
    assert "reviewer step 1 (claude-opus-4-1): approve" in html
    assert "refused: curl is not an allowed command" in html
    assert "1200 in / 300 out" in html
    assert "(result capped)" in html
    assert "more characters]" in html
    assert 'aria-live="polite"' in html
    # Timeline order is chronological.
    assert (
        html.index("queued → planning")
        < html.index("planner step 1")
        < html.index("reviewer step 1")
    )


def test_token_protects_every_route(store: tuple[str, Engine, Seeded]) -> None:
    _, engine, _ = store
    with client(engine, dashboard_token=SecretStr("tok-123")) as http:
        for path in ("/", "/items/acme/api/12", "/events", "/metrics", "/static/dashboard.js"):
            denied = http.get(path)
            assert denied.status_code == 401, path
            assert denied.headers["www-authenticate"].startswith("Basic")
        assert http.get("/", headers={"Authorization": "Bearer tok-123"}).status_code == 200
        basic = base64.b64encode(b"me:tok-123").decode()
        assert http.get("/metrics", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert http.get("/", headers={"Authorization": "Bearer tok-12"}).status_code == 401


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if found == labels:
            return float(value)
    raise AssertionError(f"no sample {name}{labels}")


def test_metrics_from_the_store(store: tuple[str, Engine, Seeded]) -> None:
    _, engine, _ = store
    with client(engine) as http:
        response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert (
        metric(text, "trunkline_deliveries_total", event="pull_request", outcome="processed") == 5
    )
    assert metric(text, "trunkline_deliveries_total", event="pull_request", outcome="rejected") == 1
    assert metric(text, "trunkline_job_failures_total", kind="process_delivery") == 9
    assert metric(text, "trunkline_jobs", kind="process_delivery", state="dead") == 1
    latency = {"kind": "process_delivery"}
    assert metric(text, "trunkline_job_latency_seconds_count", **latency) == 2
    assert metric(text, "trunkline_job_latency_seconds_bucket", le="0.5", **latency) == 1
    assert metric(text, "trunkline_job_latency_seconds_bucket", le="5", **latency) == 2
    assert metric(text, "trunkline_job_latency_seconds_sum", **latency) == pytest.approx(
        3.4, abs=0.01
    )
    assert metric(text, "trunkline_queue_depth", repo="acme/api", base="main", state="waiting") == 1
    merge = {"repo": "acme/web"}
    assert metric(text, "trunkline_time_to_merge_seconds_bucket", le="300", **merge) == 0
    assert metric(text, "trunkline_time_to_merge_seconds_bucket", le="900", **merge) == 1
    assert metric(text, "trunkline_time_to_merge_seconds_sum", **merge) == pytest.approx(720, abs=1)
    assert metric(text, "trunkline_lock_waiters", repo="acme/web", subsystem="ui") == 1
    wait = metric(text, "trunkline_lock_wait_seconds_max", repo="acme/web", subsystem="ui")
    assert wait == pytest.approx(150, abs=1)
    agent = {"role": "planner", "model": "claude-sonnet-4-5"}
    assert metric(text, "trunkline_agent_tokens_total", direction="input", **agent) == 2700
    assert metric(text, "trunkline_agent_tokens_total", direction="output", **agent) == 800
    assert metric(text, "trunkline_agent_cost_usd_total", **agent) == pytest.approx(0.0201)
    assert metric(text, "trunkline_escalations_total", reason="turn_cap") == 1
    assert metric(text, "trunkline_work_items", repo="acme/web", state="merged") == 1
    assert metric(text, "trunkline_metrics_scrapes_total") == 1


def read_entries(response: httpx.Response, wanted: int) -> list[dict[str, Any]]:
    """Parse SSE `entry` events from a streaming response until `wanted` arrived."""
    found: list[dict[str, Any]] = []
    event_name, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event_name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and event_name:
            if event_name == "entry":
                found.append(json.loads(data))
                if len(found) >= wanted:
                    return found
            event_name, data = "", ""
    raise AssertionError(f"the stream ended after {len(found)} entries")


def test_live_feed_streams_new_rows(store: tuple[str, Engine, Seeded]) -> None:
    _, engine, seeded = store
    item = seeded.item_ids["locks"]
    app = create_dashboard_app(engine, load_settings(), FakeClock(NOW), poll_seconds=0.05)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as http:
        with http.stream("GET", f"/events?item={item}") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            first = add_event(
                engine,
                work_item_id=item,
                repo="acme/web",
                kind="transition",
                from_state="waiting_for_locks",
                to_state="executing",
                at=NOW,
                message="got ui",
            )
            # A row of another work item is not part of this item's feed.
            add_event(
                engine,
                work_item_id=seeded.item_ids["merged"],
                repo="acme/web",
                kind="note",
                at=NOW,
                message="other item",
            )
            second = add_event(
                engine,
                work_item_id=item,
                repo="acme/web",
                kind="escalation",
                at=NOW,
                message="stuck",
                data={"reason": "lock_timeout"},
            )
            entries = read_entries(response, 2)
        assert [e["key"] for e in entries] == [f"e{first}", f"e{second}"]
        assert entries[0]["title"] == "waiting_for_locks → executing"
        assert entries[0]["item_url"] == "/items/acme/web/4"
        assert entries[1]["category"] == "escalation"
        # A reconnecting browser sends Last-Event-ID and gets only what it missed.
        third = add_event(
            engine,
            work_item_id=item,
            repo="acme/web",
            kind="note",
            at=NOW,
            message="after reconnect",
        )
        headers = {"Last-Event-ID": f"{second}:0"}
        with http.stream("GET", f"/events?item={item}", headers=headers) as response:
            resumed = read_entries(response, 1)
        assert resumed[0]["key"] == f"e{third}"


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TRUNKLINE_DAILY_BUDGET_USD", "5")
    monkeypatch.setenv("COLUMNS", "200")
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_and_timeline_commands(
    store: tuple[str, Engine, Seeded],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _, _ = store
    code, out, _ = run_cli(monkeypatch, capsys, url, "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert status["work_items"]["acme/api"] == {"escalated": 1, "planning": 1, "reviewing": 1}
    assert [e["pr_number"] for e in status["queues"][0]["entries"]] == [40, 41]
    assert status["spend_today"]["budget_usd"] == 5.0
    assert {w["holder"] for w in status["waiters"]} == {"acme/web#4"}
    code, out, _ = run_cli(monkeypatch, capsys, url, "status")
    assert code == 0
    assert "Merge queue acme/api → main" in out
    assert "waiting_for_locks" in out

    code, out, _ = run_cli(monkeypatch, capsys, url, "timeline", "acme/api#12", "--json")
    assert code == 0
    timeline = json.loads(out)
    assert timeline["plan"] == PLAN
    assert timeline["review"]["verdict"] == "approve"
    titles = [e["title"] for e in timeline["timeline"]]
    assert titles[0] == "queued → planning"
    assert "reviewer step 1 (claude-opus-4-1): approve" in titles
    code, out, _ = run_cli(monkeypatch, capsys, url, "timeline", "acme/api#12")
    assert code == 0
    assert "alice: approve" in out
    assert "https://github.com/acme/api/pull/40" in out

    # Untrusted titles are printed as they are, never parsed as rich markup.
    code, out, _ = run_cli(monkeypatch, capsys, url, "timeline", "acme/api#13")
    assert code == 0
    assert HOSTILE_TITLE in out

    assert run_cli(monkeypatch, capsys, url, "timeline", "acme/api#404")[0] == 1
    code, _, err = run_cli(monkeypatch, capsys, url, "timeline", "nonsense")
    assert code == 2
    assert "OWNER/REPO#NUMBER" in err


def test_dashboard_refuses_public_address_without_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRUNKLINE_DASHBOARD_TOKEN", raising=False)
    code, _, err = run_cli(
        monkeypatch, capsys, f"sqlite:///{tmp_path / 'x.db'}", "dashboard", "--host", "0.0.0.0"
    )
    assert code == 2
    assert "TRUNKLINE_DASHBOARD_TOKEN" in err


def test_router_mounts_under_a_prefix(store: tuple[str, Engine, Seeded]) -> None:
    from fastapi import FastAPI

    from trunkline.web.dashboard import create_dashboard

    _, engine, _ = store
    app = FastAPI()
    app.include_router(
        create_dashboard(engine, load_settings(), FakeClock(NOW)), prefix="/dashboard"
    )
    with TestClient(app) as http:
        html = http.get("/dashboard/").text
        assert 'href="/dashboard/static/dashboard.css"' in html
        assert 'href="/dashboard/items/acme/api/12"' in html
        assert 'data-events-url="/dashboard/events?"' in html
        assert http.get("/dashboard/static/dashboard.js").status_code == 200
        assert http.get("/dashboard/static/../app.py").status_code == 404


def test_streams_end_when_the_server_stops(store: tuple[str, Engine, Seeded]) -> None:
    _, engine, _ = store
    stopping = threading.Event()
    app = create_dashboard_app(
        engine, load_settings(), FakeClock(NOW), poll_seconds=0.05, should_stop=stopping.is_set
    )
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=DEADLINE_SECONDS) as http:
        with http.stream("GET", "/events") as response:
            lines = response.iter_lines()
            assert next(lines) == "retry: 2000"
            stopping.set()
            rest = list(lines)  # ends instead of blocking until the client goes away
        assert all(not line.startswith("event:") for line in rest)


def test_dashboard_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cmd.db'}"
    seed_store(migrated_engine(url), NOW)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url, "TRUNKLINE_DATA_DIR": str(tmp_path)}
    env.pop("TRUNKLINE_DASHBOARD_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "trunkline", "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=DEADLINE_SECONDS) as http:
            assert "acme/api" in http.get("/").text
            assert "trunkline_work_items" in http.get("/metrics").text
            with http.stream("GET", "/events") as response:
                lines = response.iter_lines()
                assert next(lines) == "retry: 2000"
                process.send_signal(signal.SIGTERM)
                list(lines)  # the server ends the open stream as it shuts down
        assert process.wait(timeout=DEADLINE_SECONDS) == 0
        assert process.stderr is not None
        for line in process.stderr.read().decode().splitlines():
            json.loads(line)  # every log line is structured JSON
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
