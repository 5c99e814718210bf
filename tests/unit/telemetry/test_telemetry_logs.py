"""JSON log lines, bound context and redaction of every record."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from contextvars import copy_context

import pytest
from pydantic import SecretStr

from trunkline.settings import load_settings
from trunkline.telemetry import bind_context, configure_logging, current_context
from trunkline.telemetry.json_logs import QUIETED

WEBHOOK_SECRET = "canary-webhook-0d9f8e7c6b5a"
API_KEY = "sk-ant-api03-canaryKEY1234567890abcdef"
GITHUB_TOKEN = "ghs_" + "C4n4ry" * 6
PAT = "github_pat_" + "11ABCDEFG0" * 4
ENV_SECRET = "env-canary-77a1b2c3"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEcanarykeymaterial\n-----END RSA PRIVATE KEY-----"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    settings = load_settings(
        webhook_secret=SecretStr(WEBHOOK_SECRET),
        anthropic_api_key=SecretStr(API_KEY),
        log_level="DEBUG",
    )
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    libraries = {name: logging.getLogger(name).level for name in QUIETED}
    handler = configure_logging(
        settings, stream=stream, environ={"SOME_SERVICE_TOKEN": ENV_SECRET, "HOME": "/root"}
    )
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in libraries.items():
            logging.getLogger(name).setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_json_line_with_context_and_extras(captured: io.StringIO) -> None:
    log = logging.getLogger("trunkline.test")
    with bind_context(repo="acme/api", issue=12), bind_context(job=5, pr=None):
        log.info("claimed %s", "job", extra={"attempt": 2})
    with bind_context(delivery="d-1"):
        log.warning("outside")
    first, second = lines(captured)
    assert first["message"] == "claimed job"
    assert first["level"] == "INFO"
    assert first["logger"] == "trunkline.test"
    assert first["repo"] == "acme/api"
    assert first["issue"] == 12
    assert first["job"] == 5
    assert "pr" not in first
    assert first["attempt"] == 2
    assert str(first["ts"]).endswith("+00:00")
    assert second["delivery"] == "d-1"
    assert "repo" not in second
    assert current_context() == {}


def test_context_follows_copied_contexts_into_threads(captured: io.StringIO) -> None:
    log = logging.getLogger("trunkline.test")
    with bind_context(agent_run="r-1"):
        context = copy_context()
    thread = threading.Thread(target=context.run, args=(log.info, "in a thread"))
    thread.start()
    thread.join()
    assert lines(captured)[0]["agent_run"] == "r-1"


@pytest.mark.parametrize(
    "secret",
    [WEBHOOK_SECRET, API_KEY, GITHUB_TOKEN, PAT, ENV_SECRET, "Bearer abcdefghijklmnop1234", PEM],
)
def test_secrets_are_removed_everywhere(captured: io.StringIO, secret: str) -> None:
    log = logging.getLogger("trunkline.test")
    log.info("message " + secret)
    log.info("argument %s and %r", secret, {"nested": [secret]})
    log.info("extra", extra={"header": secret, "payload": {"k": [secret]}})
    with bind_context(repo=secret):
        log.info("context")
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        log.exception("exception")
    text = captured.getvalue()
    assert len(lines(captured)) == 5
    for fragment in secret.split("\n"):
        if len(fragment) >= 12:
            assert fragment not in text
    assert "[REDACTED]" in text


def test_records_of_other_loggers_are_redacted_too(captured: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").error("token=%s", GITHUB_TOKEN)
    logging.getLogger("sqlalchemy.engine").warning("params %s", (WEBHOOK_SECRET,))
    assert GITHUB_TOKEN not in captured.getvalue()
    assert WEBHOOK_SECRET not in captured.getvalue()


def test_unformattable_message_is_kept(captured: io.StringIO) -> None:
    logging.getLogger("trunkline.test").info("%d items", "not a number")
    assert "unformattable" in str(lines(captured)[0]["message"])


def test_text_format(captured: io.StringIO) -> None:
    stream = io.StringIO()
    settings = load_settings(log_format="text", webhook_secret=SecretStr(WEBHOOK_SECRET))
    handler = configure_logging(settings, stream=stream, environ={})
    try:
        with bind_context(repo="acme/api"):
            logging.getLogger("trunkline.test").info("hello %s", WEBHOOK_SECRET)
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue()
    assert "hello [REDACTED]" in line
    assert "repo=acme/api" in line
