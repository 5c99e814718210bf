"""No secret reaches the logs of a realistic run.

Canary secrets go into the settings (through the environment, as in production) and into
untrusted input (an issue body with a leaked token and a private key). Then: signed webhooks
through the real intake app, the durable job runner processing them (a handler logs an
Authorization header and fails with an installation token in its error), a scripted agent
run that reads a file holding the API key, and SQL logging at DEBUG (statements, parameters
and result rows, webhook bodies included). Every captured log line is JSON, and no canary
appears in any of them.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from trunkline.agents.agent_loop import RunContext, run_role
from trunkline.agents.budget import BudgetLimits, ModelPrice
from trunkline.agents.redaction import redactor_for
from trunkline.agents.roles import READ_ONLY_TOOLS, WorkItem, planner_message, planner_spec
from trunkline.agents.scripted_provider import ScriptedProvider
from trunkline.agents.timeline import InMemoryTimeline
from trunkline.agents.tools import Toolbox
from trunkline.bot.app import create_app
from trunkline.bot.router import RoutedEvent
from trunkline.bot.service import Service, build_service, worker_pool
from trunkline.bot.testing import encode, signed_headers
from trunkline.clock import SystemClock
from trunkline.errors import TerminalError
from trunkline.settings import load_settings
from trunkline.store.testing import migrated_engine
from trunkline.telemetry import bind_context, configure_logging
from trunkline.telemetry.json_logs import QUIETED

WEBHOOK_SECRET = "whsec-canary-" + uuid.uuid4().hex
API_KEY = "sk-ant-api03-canary" + uuid.uuid4().hex
DASHBOARD_TOKEN = "dash-canary-" + uuid.uuid4().hex
INSTALLATION_TOKEN = "ghs_" + uuid.uuid4().hex + "CANARY"
LEAKED_PAT = "github_pat_11CANARY" + uuid.uuid4().hex
ENV_TOKEN = "envtoken-canary-" + uuid.uuid4().hex
KEY_MATERIAL = "MIIEcanary" + uuid.uuid4().hex
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_MATERIAL}\n-----END RSA PRIVATE KEY-----"
CANARIES = (
    WEBHOOK_SECRET,
    API_KEY,
    DASHBOARD_TOKEN,
    INSTALLATION_TOKEN,
    LEAKED_PAT,
    ENV_TOKEN,
    KEY_MATERIAL,
)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[io.StringIO, Path]]:
    monkeypatch.setenv("TRUNKLINE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("TRUNKLINE_ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("TRUNKLINE_DASHBOARD_TOKEN", DASHBOARD_TOKEN)
    monkeypatch.setenv("GH_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("TRUNKLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRUNKLINE_LOG_LEVEL", "DEBUG")
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    libraries = {name: logging.getLogger(name).level for name in QUIETED}
    sql = logging.getLogger("sqlalchemy.engine")
    saved_sql = sql.level
    handler = configure_logging(load_settings(), stream=stream)
    sql.setLevel(logging.DEBUG)  # statements, parameters and result rows (webhook bodies)
    try:
        yield stream, tmp_path
    finally:
        sql.setLevel(saved_sql)
        root.removeHandler(handler)
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        for name, level in libraries.items():
            logging.getLogger(name).setLevel(level)


def issue_payload(number: int) -> dict[str, object]:
    return {
        "action": "opened",
        "issue": {
            "number": number,
            "title": "Leaked credentials in CI logs",
            "body": f"our token {LEAKED_PAT} and key\n{PEM}\nplease fix",
            "state": "open",
            "labels": [{"name": "agent"}],
        },
        "repository": {"id": 1, "name": "api", "full_name": "acme/api", "private": False},
    }


def test_no_canary_in_the_logs_of_a_realistic_run(
    captured: tuple[io.StringIO, Path],
) -> None:
    stream, tmp_path = captured
    settings = load_settings()
    assert settings.webhook_secret is not None
    engine = migrated_engine(settings.effective_database_url)
    log = logging.getLogger("trunkline.test.github")

    def configure(service: Service) -> None:
        @service.router.register("issues")
        def on_issue(event: RoutedEvent) -> None:
            with bind_context(repo="acme/api", issue=event.raw["issue"]["number"]):
                headers = {"Authorization": f"Bearer {INSTALLATION_TOKEN}"}
                log.info("calling GitHub with %s", headers)
                log.debug("issue body: %s", event.raw["issue"]["body"])
                raise TerminalError(f"GitHub said 401 for token {INSTALLATION_TOKEN}")

    try:
        # 1. Signed webhooks through the real intake app (and one forged signature).
        with TestClient(create_app(settings, engine=engine)) as http:
            for number in (1, 2):
                body = encode(issue_payload(number))
                headers = signed_headers(
                    WEBHOOK_SECRET, body, event="issues", delivery_id=f"canary-{number}"
                )
                assert http.post("/webhooks", content=body, headers=headers).status_code == 202
            forged = signed_headers("wrong", b"{}", event="issues", delivery_id="canary-forged")
            assert http.post("/webhooks", content=b"{}", headers=forged).status_code == 401
        # 2. The durable job runner processes them: the handler logs and fails.
        service = build_service(settings, engine=engine, configure=configure)
        pool = worker_pool(service, threads=1)
        ran = 0
        while pool.run_once("canary-worker"):
            ran += 1
        assert ran == 2
        # 3. A scripted agent run that reads a file holding the API key.
        worktree = tmp_path / "worktree"
        worktree.mkdir()
        (worktree / "config.env").write_text(f"ANTHROPIC_API_KEY={API_KEY}\n")
        plan = {
            "summary": "s",
            "steps": ["a"],
            "paths": ["config.env"],
            "acceptance_criteria": ["c"],
        }
        script = [
            {
                "content": [
                    {"type": "tool_use", "name": "read_file", "input": {"path": "config.env"}}
                ]
            },
            {"content": [{"type": "tool_use", "name": "submit_plan", "input": plan}]},
        ]
        ctx = RunContext(
            work_item="acme/api#1",
            model="scripted",
            provider=ScriptedProvider.of(script),
            prices={"scripted": ModelPrice(input=Decimal(3), output=Decimal(15))},
            limits=BudgetLimits(10**9, Decimal(100), 10**6, 10, 2),
            clock=SystemClock(),
            timeline=InMemoryTimeline(),
            redactor=redactor_for(settings, {}),
        )
        with bind_context(agent_run="canary-run", repo="acme/api", issue=1):
            result = run_role(
                ctx,
                planner_spec(1000),
                Toolbox(worktree, READ_ONLY_TOOLS),
                planner_message(WorkItem("acme/api#1", "t", f"body {API_KEY}")),
            )
        assert result.product is not None
    finally:
        engine.dispose()

    text = stream.getvalue()
    records = [json.loads(line) for line in text.splitlines()]
    messages = [r["message"] for r in records]
    # The run really was logged: intake SQL, the failing job, the agent run.
    assert any("Leaked credentials in CI logs" in m for m in messages)  # payload rows
    assert any(m == "job failed" for m in messages)
    assert any(m.startswith("calling GitHub with") for m in messages)
    assert any(m == "agent run finished" for m in messages)
    assert any(r.get("issue") == 1 and r.get("repo") == "acme/api" for r in records)
    assert "[REDACTED]" in text
    for canary in CANARIES:
        assert canary not in text, f"a canary secret leaked into the logs: {canary[:12]}..."
