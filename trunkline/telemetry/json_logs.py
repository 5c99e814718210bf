"""Structured JSON logs: a formatter, context bound with contextvars, and secret redaction.

`configure_logging(settings)` is called once at the composition root; it installs one handler
on the root logger with a `ContextFilter` (copies the bound context - repo, issue, pr,
delivery, job, agent_run - onto each record), a `RedactionFilter` (removes every secret in the
settings, every secret-looking environment variable value and token-shaped strings such as
`ghs_...`, `github_pat_...`, `Bearer ...`, `sk-ant-...` and PEM private keys from the message,
arguments, extras and traceback of EVERY record; the redactor is `agents.redaction.redactor_for`,
the one the composition root gives every other writer) and the `JsonFormatter` (one JSON object per
line). Filters sit on the handler, so records propagated from any logger pass through them.
Performs no I/O except writing log lines to the configured stream.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from pydantic import SecretStr

from trunkline.agents.redaction import Redactor, redactor_for
from trunkline.settings import Settings

CONTEXT_KEYS = ("repo", "issue", "pr", "delivery", "job", "agent_run")
_HANDLER_NAME = "trunkline-telemetry"
# Libraries whose INFO lines are noise in production; configure_logging sets them to WARNING.
QUIETED = ("apscheduler", "alembic", "httpx", "httpcore")

# The context bound to the current thread / task; values are short scalars.
_EMPTY: Mapping[str, object] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "trunkline_log_context", default=_EMPTY
)

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "context", "taskName"}


def current_context() -> Mapping[str, object]:
    """The context bound here (a read-only snapshot)."""
    return dict(_context.get())


@contextlib.contextmanager
def bind_context(**values: object) -> Iterator[None]:
    """Add `values` (e.g. repo="o/r", issue=7, job=12) to every record logged inside the block.

    Nested blocks add to (and may override) the outer context; `None` values are dropped.
    Works across threads started with `contextvars.copy_context()` and across asyncio tasks.
    """
    merged = {**_context.get(), **{k: v for k, v in values.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record as `record.context`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = dict(_context.get())
        return True


def _redact_value(redactor: Redactor, value: object) -> object:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, SecretStr):
        return "[REDACTED]"
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _redact_value(redactor, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(redactor, v) for v in value]
    return redactor.redact(str(value))


class RedactionFilter(logging.Filter):
    """Removes secrets from a record's message, arguments, extras, context and traceback.

    The message is rendered (`msg % args`) and redacted, so a secret passed as an argument
    is caught too; the traceback is rendered into `exc_text` and redacted, and `exc_info`
    cleared, so no formatter can print the raw exception later.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as error:  # a bad format string must not lose the record
            message = f"{record.msg!r} (unformattable: {error})"
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = text
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS or key == "context":
                setattr(record, key, _redact_value(self.redactor, value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, bound context, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "context", None)
        if isinstance(context, Mapping):
            document.update({str(k): v for k, v in context.items()})
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                document[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return json.dumps(document, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """`time level logger message key=value...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", None) or {}
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and k[0] != "_"}
        pairs = " ".join(f"{k}={v}" for k, v in {**context, **extras}.items())
        return f"{line} {pairs}" if pairs else line


def configure_logging(
    settings: Settings,
    *,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Install trunkline's log handler on the root logger (replacing an earlier one).

    Returns the handler (tests attach it elsewhere or read its stream). Quietens chatty
    libraries (apscheduler, alembic, httpx) to WARNING.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.addFilter(
        RedactionFilter(redactor_for(settings, os.environ if environ is None else environ))
    )
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in QUIETED:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
