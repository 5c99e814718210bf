"""JSON documents for the merge queue's state, events and effects, and back.

Pure; performs no I/O. The queue's types are frozen dataclasses of plain data, so the generic
codec of `trunkline.dataclass_documents` covers them all (see its docstring for how each type
is written; timedeltas as integer microseconds, datetimes as timezone-aware ISO 8601 strings).
Decoding walks the declared field types, so nothing in the document names a Python class
except the `type` tag of events and effects (the class name, which is how the `Event` and
`Effect` unions are told apart).
`decode_state(encode_state(s)) == s` for every state (a Hypothesis test checks it). A document
that does not fit the types raises `QueueDocumentError` (a `TerminalError`) with the path of
the offending field.
"""

from __future__ import annotations

from typing import Any

from trunkline.dataclass_documents import DocumentCodec, union_members
from trunkline.dataclass_documents import JSONValue as JSONValue
from trunkline.errors import TerminalError
from trunkline.queue import effects as effects_module
from trunkline.queue import events as events_module
from trunkline.queue.effects import Effect
from trunkline.queue.events import Event
from trunkline.queue.model import QueueConfig, QueueState


class QueueDocumentError(TerminalError):
    """A stored queue document does not match the queue's types."""


EVENT_TYPES: dict[str, type[Any]] = union_members(Event)
EFFECT_TYPES: dict[str, type[Any]] = union_members(Effect)

_CODEC = DocumentCodec(error=QueueDocumentError, namespaces=(events_module, effects_module))


def encode(value: Any) -> JSONValue:
    """Any queue value (dataclass, enum, datetime, ...) as JSON-ready data."""
    return _CODEC.encode(value)


def encode_state(state: QueueState) -> dict[str, JSONValue]:
    document: dict[str, JSONValue] = _CODEC.encode(state)
    return document


def encode_config(config: QueueConfig) -> dict[str, JSONValue]:
    document: dict[str, JSONValue] = _CODEC.encode(config)
    return document


def encode_event(event: Event) -> dict[str, JSONValue]:
    return _CODEC.encode_tagged(event)


def encode_effect(effect: Effect) -> dict[str, JSONValue]:
    return _CODEC.encode_tagged(effect)


def decode_state(document: JSONValue) -> QueueState:
    state: QueueState = _CODEC.decode(QueueState, document, "state")
    return state


def decode_config(document: JSONValue) -> QueueConfig:
    config: QueueConfig = _CODEC.decode(QueueConfig, document, "config")
    return config


def decode_event(document: JSONValue) -> Event:
    event: Event = _CODEC.decode_tagged(EVENT_TYPES, document, "event")
    return event


def decode_effect(document: JSONValue) -> Effect:
    effect: Effect = _CODEC.decode_tagged(EFFECT_TYPES, document, "effect")
    return effect
