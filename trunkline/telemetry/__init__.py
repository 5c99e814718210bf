"""Structured JSON logs with bound context and secret redaction (see `json_logs`)."""

from trunkline.agents.redaction import redactor_for
from trunkline.telemetry.json_logs import (
    ContextFilter,
    JsonFormatter,
    RedactionFilter,
    bind_context,
    configure_logging,
    current_context,
)

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "RedactionFilter",
    "bind_context",
    "configure_logging",
    "current_context",
    "redactor_for",
]
