"""JSON documents for the merge queue's state, events and effects, and back.

Pure; performs no I/O. The queue's types are frozen dataclasses of plain data (strings, ints,
bools, timezone-aware datetimes, timedeltas, `StrEnum`s, tuples, frozensets, optionals and
nested dataclasses), so one type-directed codec covers them all:
- encoding walks the value: dataclass -> object of its fields, datetime -> ISO 8601 string,
  timedelta -> integer microseconds, enum -> its value, tuple -> list, frozenset -> sorted list;
- decoding walks the declared field types (`typing.get_type_hints`), so nothing in the
  document names a Python class except the `type` tag of events and effects (the class name,
  which is how the `Event` and `Effect` unions are told apart).
`decode_state(encode_state(s)) == s` for every state (a Hypothesis test checks it). A document
that does not fit the types raises `QueueDocumentError` (a `TerminalError`) with the path of
the offending field.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from trunkline.errors import TerminalError
from trunkline.queue import effects as effects_module
from trunkline.queue import events as events_module
from trunkline.queue.effects import Effect
from trunkline.queue.events import Event
from trunkline.queue.model import QueueConfig, QueueState

JSONValue = Any
"""A value `json.dumps` accepts (objects, lists, strings, numbers, booleans, null)."""


class QueueDocumentError(TerminalError):
    """A stored queue document does not match the queue's types."""


def _union_members(union: Any) -> dict[str, type[Any]]:
    return {member.__name__: member for member in typing.get_args(union)}


EVENT_TYPES: dict[str, type[Any]] = _union_members(Event)
EFFECT_TYPES: dict[str, type[Any]] = _union_members(Effect)


# -- encoding -------------------------------------------------------------------------------


def encode(value: Any) -> JSONValue:
    """Any queue value (dataclass, enum, datetime, ...) as JSON-ready data."""
    if value is None or (
        isinstance(value, bool | int | float | str) and not isinstance(value, enum.Enum)
    ):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise QueueDocumentError("naive datetimes cannot be stored; give a timezone-aware one")
        return value.isoformat()
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, frozenset):
        return sorted((encode(item) for item in value), key=repr)
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: encode(getattr(value, field.name)) for field in _fields(type(value))}
    raise QueueDocumentError(f"cannot encode {type(value).__name__} in a queue document")


def encode_state(state: QueueState) -> dict[str, JSONValue]:
    document: dict[str, JSONValue] = encode(state)
    return document


def encode_config(config: QueueConfig) -> dict[str, JSONValue]:
    document: dict[str, JSONValue] = encode(config)
    return document


def encode_event(event: Event) -> dict[str, JSONValue]:
    return {"type": type(event).__name__, **encode(event)}


def encode_effect(effect: Effect) -> dict[str, JSONValue]:
    return {"type": type(effect).__name__, **encode(effect)}


# -- decoding -------------------------------------------------------------------------------


def decode_state(document: JSONValue) -> QueueState:
    state: QueueState = _decode(QueueState, document, "state")
    return state


def decode_config(document: JSONValue) -> QueueConfig:
    config: QueueConfig = _decode(QueueConfig, document, "config")
    return config


def decode_event(document: JSONValue) -> Event:
    event: Event = _decode_tagged(EVENT_TYPES, document, "event")
    return event


def decode_effect(document: JSONValue) -> Effect:
    effect: Effect = _decode_tagged(EFFECT_TYPES, document, "effect")
    return effect


def _decode_tagged(kinds: dict[str, type[Any]], document: JSONValue, path: str) -> Any:
    if not isinstance(document, dict):
        raise QueueDocumentError(f"{path}: expected an object, got {type(document).__name__}")
    tag = document.get("type")
    cls = kinds.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise QueueDocumentError(f"{path}: unknown type {tag!r}; expected one of {sorted(kinds)}")
    fields = {key: value for key, value in document.items() if key != "type"}
    return _decode(cls, fields, f"{path}<{tag}>")


@cache
def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    namespace = {**vars(events_module), **vars(effects_module)}
    return typing.get_type_hints(cls, localns=namespace)


def _decode(tp: Any, data: JSONValue, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(tp)
        if data is None and type(None) in members:
            return None
        concrete = [member for member in members if member is not type(None)]
        if len(concrete) == 1:
            return _decode(concrete[0], data, path)
        raise QueueDocumentError(f"{path}: ambiguous union {tp!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list):
            raise QueueDocumentError(f"{path}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise QueueDocumentError(f"{path}: expected {len(args)} items, got {len(data)}")
        return tuple(
            _decode(arg, item, f"{path}[{i}]")
            for i, (arg, item) in enumerate(zip(args, data, strict=True))
        )
    if origin is frozenset:
        (arg,) = typing.get_args(tp)
        if not isinstance(data, list):
            raise QueueDocumentError(f"{path}: expected a list")
        return frozenset(_decode(arg, item, f"{path}[]") for item in data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError as error:
            raise QueueDocumentError(f"{path}: {error}") from None
    if tp is datetime:
        if not isinstance(data, str):
            raise QueueDocumentError(f"{path}: expected an ISO 8601 string")
        try:
            value = datetime.fromisoformat(data)
        except ValueError as error:
            raise QueueDocumentError(f"{path}: {error}") from None
        if value.tzinfo is None:
            raise QueueDocumentError(f"{path}: datetime without a timezone")
        return value
    if tp is timedelta:
        if not isinstance(data, int) or isinstance(data, bool):
            raise QueueDocumentError(f"{path}: expected integer microseconds")
        return timedelta(microseconds=data)
    if tp is bool:
        if not isinstance(data, bool):
            raise QueueDocumentError(f"{path}: expected a boolean")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise QueueDocumentError(f"{path}: expected an integer")
        return data
    if tp is float:
        if not isinstance(data, int | float) or isinstance(data, bool):
            raise QueueDocumentError(f"{path}: expected a number")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise QueueDocumentError(f"{path}: expected a string")
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise QueueDocumentError(f"{path}: expected an object")
        hints = _hints(tp)
        values: dict[str, Any] = {}
        for field in _fields(tp):
            if field.name in data:
                values[field.name] = _decode(
                    hints[field.name], data[field.name], f"{path}.{field.name}"
                )
            elif (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise QueueDocumentError(f"{path}: missing field {field.name!r}")
        unknown = set(data) - {field.name for field in _fields(tp)}
        if unknown:
            raise QueueDocumentError(f"{path}: unknown fields {sorted(unknown)}")
        try:
            return tp(**values)
        except (TypeError, ValueError) as error:
            raise QueueDocumentError(f"{path}: {error}") from None
    raise QueueDocumentError(f"{path}: unsupported type {tp!r}")
