"""Acceptance: no secret reaches any log of a full `trunkline demo` run.

The demo runs with canary secrets wherever the bot takes one: the webhook secret (the forge
signs with it, the bot verifies), the Anthropic API key (the scripted Messages API checks it
on every call), the dashboard token (the bot protects /dashboard and /metrics with it; the
hook signs in with it, as a bearer token and as a basic-auth password), and a secret-named
environment variable every child inherits. The forge makes the others at run time: the
App's private key (the bot signs its JWTs with it), the installation tokens it issues to the
bot (read back from its state after the run) and the people's personal tokens.

The bot logs at DEBUG (the SDKs' request logs, git command lines, HTTP connection logs), so
far more than a normal run is written. Scanned: every *.log file in the data directory (the
bot's and the forge's stdout and stderr), the demo's own terminal output (the live view and
the summary), everything this process wrote to its file descriptors 1 and 2 and logged, the
dashboard pages and metrics fetched during the run, and the bot's SQLite store. The logs
must be JSON lines with bound context (job, delivery, repo, issue, pr), so the scan cannot
pass on empty or unstructured logs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prerequisites import require_bwrap
from rich.console import Console

from trunkline.demo.runner import DemoControl, DemoOptions, run_demo
from trunkline.demo.scenario import BUDGET_ISSUE, REFUSED_ISSUE, REPO
from trunkline.demo.view import LiveView, print_result

WEBHOOK_SECRET = "whcanary" + uuid.uuid4().hex
API_KEY = "sk-ant-api03-canary" + uuid.uuid4().hex
DASHBOARD_TOKEN = "dashcanary" + uuid.uuid4().hex
ENV_NAME = "DEMO_CANARY_SECRET"
ENV_SECRET = "envcanary" + uuid.uuid4().hex
PROBE_AFTER_TRANSITIONS = 10  # an uninterrupted run records about 65


@dataclass
class DashboardProbe:
    """A hook: once the run is under way, reads the dashboard and metrics with the token
    (bearer and basic auth) and checks that they refuse a missing or wrong token."""

    statuses: dict[str, int] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)

    def __call__(self, control: DemoControl) -> None:
        if self.statuses or control.transitions < PROBE_AFTER_TRANSITIONS:
            return
        overview = control.dashboard_url
        base = overview.removesuffix("/dashboard/")
        bearer = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
        basic = base64.b64encode(f"maya:{DASHBOARD_TOKEN}".encode()).decode()
        with httpx.Client(timeout=30) as http:
            requests = {
                "overview, bearer": (overview, bearer),
                "item, basic": (f"{overview}items/{REPO}/5", {"Authorization": f"Basic {basic}"}),
                "metrics, bearer": (f"{base}/metrics", bearer),
                "overview, no token": (overview, {}),
                "overview, wrong token": (overview, {"Authorization": "Bearer wrong"}),
            }
            for name, (url, headers) in requests.items():
                response = http.get(url, headers=headers)
                self.statuses[name] = response.status_code
                self.pages[name] = response.text


@dataclass
class DemoRun:
    data: Path
    result: Any
    probe: DashboardProbe
    terminal: str  # the live view and the summary, as a terminal shows them
    process_logs: str  # the log records of this process (the demo's own)
    process_output: str  # what this process wrote to stdout and stderr (Python and fds 1, 2)


@contextlib.contextmanager
def _captured_output(spill: Path) -> Iterator[io.StringIO]:
    """Everything this process writes to stdout and stderr: Python's streams into the
    returned buffer, file descriptors 1 and 2 (C code, child processes) into `spill`."""
    buffer = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with spill.open("wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    require_bwrap()
    scratch = tmp_path_factory.mktemp("canary-demo")
    data = scratch / "data"
    probe = DashboardProbe()
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    options = DemoOptions(
        data_dir=data,
        webhook_secret=WEBHOOK_SECRET,
        scripted_api_key=API_KEY,
        dashboard_token=DASHBOARD_TOKEN,
        log_level="DEBUG",
    )
    spill = scratch / "fds.txt"
    with pytest.MonkeyPatch.context() as patch, _captured_output(spill) as output:
        patch.setenv(ENV_NAME, ENV_SECRET)  # every child inherits it
        try:
            with LiveView(console) as view:
                result = run_demo(options, observer=view, hook=probe)
            print_result(console, result)
        finally:
            root.removeHandler(handler)
            root.setLevel(saved_level)
    written = output.getvalue() + spill.read_text(encoding="utf-8", errors="replace")
    return DemoRun(data, result, probe, screen.getvalue(), records.getvalue(), written)


def _forge_secrets(data: Path) -> dict[str, str]:
    """What the forge made at run time: installation tokens, personal tokens, the App's key."""
    state = json.loads((data / "forge" / "forge-state.json").read_text(encoding="utf-8"))
    found = {}
    for index, token in enumerate(state["tokens"]):
        kind = "installation token" if token.get("installation_id") else "personal token"
        found[f"{kind} {index}"] = str(token["token"])
    pem = (data / "forge" / "app-private-key.pem").read_text(encoding="utf-8")
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    for index, line in enumerate(body):
        if len(line) >= 40:  # each full line of the key's base64 body
            found[f"private key line {index}"] = line
    return found


def _sources(run: DemoRun) -> dict[str, str]:
    sources = {
        str(path.relative_to(run.data)): path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(run.data.rglob("*.log"))
    }
    sources["the demo's terminal output"] = run.terminal
    sources["the demo process's log records"] = run.process_logs
    sources["the demo process's stdout and stderr"] = run.process_output
    for name, page in run.probe.pages.items():
        sources[f"dashboard response ({name})"] = page
    for path in sorted((run.data / "bot").glob("trunkline.db*")):
        sources[f"the bot's store ({path.name})"] = path.read_bytes().decode("latin-1")
    return sources


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_demo_run_used_every_canary(demo_run: DemoRun) -> None:
    """The canaries were live, not decoration: the run worked with them."""
    result = demo_run.result
    states = {item.issue: item.state for item in result.items}
    assert states[BUDGET_ISSUE] == "escalated"
    assert states[REFUSED_ISSUE] == "refused"
    # signed webhooks were accepted (webhook secret) and agents answered (API key)
    assert [n for n, state in states.items() if state == "merged"], states
    assert all(item.spend_tokens > 0 for item in result.items if item.state == "merged")
    assert demo_run.probe.statuses == {
        "overview, bearer": 200,
        "item, basic": 200,
        "metrics, bearer": 200,
        "overview, no token": 401,
        "overview, wrong token": 401,
    }
    assert "trunkline_work_items" in demo_run.probe.pages["metrics, bearer"]
    forge = _forge_secrets(demo_run.data)
    assert any(name.startswith("installation token") for name in forge), forge.keys()
    assert sum(name.startswith("private key line") for name in forge) > 20


def test_demo_logs_are_json_lines_with_bound_context(demo_run: DemoRun) -> None:
    bot_log = (demo_run.data / "logs" / "bot.log").read_text(encoding="utf-8")
    records = _json_lines(bot_log)  # every line of the bot's output is one JSON object
    assert len(records) > 200
    assert all({"ts", "level", "logger", "message"} <= set(record) for record in records)
    assert {record["level"] for record in records} >= {"DEBUG", "INFO"}
    with_job = [r for r in records if isinstance(r.get("job"), int)]
    assert any(isinstance(r.get("delivery"), str) for r in with_job)
    assert any(r.get("repo") == REPO and isinstance(r.get("issue"), int) for r in with_job)
    assert any(r.get("repo") == REPO and isinstance(r.get("pr"), int) for r in records)
    assert any(r.get("run_id") and r.get("role") for r in records)  # agent runs
    # the SDK's own request lines, logged inside a role run, carry the run's id as context
    assert any(
        r.get("logger") == "anthropic._base_client" and isinstance(r.get("agent_run"), str)
        for r in records
    )
    # the loggers that could carry secrets really wrote: git command lines, SDK requests
    loggers = {record["logger"] for record in records}
    assert {"git.cmd", "anthropic._base_client", "trunkline.github.tokens"} <= loggers


def test_no_canary_in_any_log_or_output(demo_run: DemoRun) -> None:
    sources = _sources(demo_run)
    assert "logs/bot.log" in sources
    assert "logs/forge.log" in sources
    assert "maya/toolkit" in sources["the demo's terminal output"]
    assert len(sources["logs/bot.log"]) > 50_000
    canaries = {
        "webhook secret": WEBHOOK_SECRET,
        "Anthropic API key": API_KEY,
        "dashboard token": DASHBOARD_TOKEN,
        f"${ENV_NAME}": ENV_SECRET,
        **_forge_secrets(demo_run.data),
    }
    leaks = [
        f"{secret} in {source}"
        for source, text in sources.items()
        for secret, value in canaries.items()
        if value in text
    ]
    assert leaks == []
