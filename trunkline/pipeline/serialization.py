"""JSON documents for work items, pipeline events and commands, and back.

Pure; performs no I/O. Everything in the pipeline is a frozen dataclass of plain data
(strings, ints, bools, `Decimal`, timezone-aware datetimes, `StrEnum`s, tuples, frozensets,
optionals, nested dataclasses), so one type-directed codec covers it:
- encoding: dataclass -> object of its fields, datetime -> ISO 8601, Decimal -> string (no
  float rounding of money), enum -> its value, tuple -> list, frozenset -> sorted list;
- decoding walks the declared field types, so a document names no Python class except the
  `type` tag of events and commands (the class name).
`decode_item(encode_item(i)) == i` for every item the machine produces (checked after every
step of the Hypothesis test). A document that does not fit raises `PipelineDocumentError`
(a `TerminalError`) naming the offending field.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from trunkline.errors import TerminalError
from trunkline.pipeline import commands as commands_module
from trunkline.pipeline import events as events_module
from trunkline.pipeline import model as model_module
from trunkline.pipeline.commands import Command
from trunkline.pipeline.events import Event
from trunkline.pipeline.model import WorkItem

JSONValue = Any
"""A value `json.dumps` accepts."""


class PipelineDocumentError(TerminalError):
    """A stored pipeline document does not match the pipeline's types."""


def _union_members(union: Any) -> dict[str, type[Any]]:
    return {member.__name__: member for member in typing.get_args(union)}


EVENT_TYPES: dict[str, type[Any]] = _union_members(Event)
COMMAND_TYPES: dict[str, type[Any]] = _union_members(Command)


def encode(value: Any) -> JSONValue:
    if value is None or (isinstance(value, bool | int | str) and not isinstance(value, enum.Enum)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PipelineDocumentError("naive datetimes cannot be stored")
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted((encode(item) for item in value), key=repr)
    if isinstance(value, tuple | list):
        return [encode(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: encode(getattr(value, field.name)) for field in _fields(type(value))}
    raise PipelineDocumentError(f"cannot encode {type(value).__name__} in a pipeline document")


def encode_item(item: WorkItem) -> dict[str, JSONValue]:
    document: dict[str, JSONValue] = encode(item)
    return document


def encode_event(event: Event) -> dict[str, JSONValue]:
    return {"type": type(event).__name__, **encode(event)}


def encode_command(command: Command) -> dict[str, JSONValue]:
    return {"type": type(command).__name__, **encode(command)}


def decode_item(document: JSONValue) -> WorkItem:
    item: WorkItem = _decode(WorkItem, document, "item")
    return item


def decode_event(document: JSONValue) -> Event:
    event: Event = _decode_tagged(EVENT_TYPES, document, "event")
    return event


def decode_command(document: JSONValue) -> Command:
    command: Command = _decode_tagged(COMMAND_TYPES, document, "command")
    return command


def _decode_tagged(kinds: dict[str, type[Any]], document: JSONValue, path: str) -> Any:
    if not isinstance(document, dict):
        raise PipelineDocumentError(f"{path}: expected an object")
    tag = document.get("type")
    cls = kinds.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise PipelineDocumentError(f"{path}: unknown type {tag!r}")
    fields = {key: value for key, value in document.items() if key != "type"}
    return _decode(cls, fields, f"{path}<{tag}>")


@cache
def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    namespace = {**vars(model_module), **vars(events_module), **vars(commands_module)}
    return typing.get_type_hints(cls, localns=namespace)


def _scalar(tp: type[Any], data: JSONValue, path: str) -> Any:
    if tp is bool and isinstance(data, bool):
        return data
    if tp is int and isinstance(data, int) and not isinstance(data, bool):
        return data
    if tp is str and isinstance(data, str):
        return data
    raise PipelineDocumentError(f"{path}: expected {tp.__name__}, got {type(data).__name__}")


def _decode(tp: Any, data: JSONValue, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(tp)
        if data is None and type(None) in members:
            return None
        concrete = [member for member in members if member is not type(None)]
        if len(concrete) == 1:
            return _decode(concrete[0], data, path)
        raise PipelineDocumentError(f"{path}: ambiguous union {tp!r}")
    if origin is tuple or origin is frozenset:
        args = typing.get_args(tp)
        if not isinstance(data, list):
            raise PipelineDocumentError(f"{path}: expected a list")
        if origin is frozenset:
            return frozenset(_decode(args[0], item, f"{path}[]") for item in data)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise PipelineDocumentError(f"{path}: expected {len(args)} items")
        return tuple(
            _decode(arg, item, f"{path}[{i}]")
            for i, (arg, item) in enumerate(zip(args, data, strict=True))
        )
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError as error:
            raise PipelineDocumentError(f"{path}: {error}") from None
    if tp is Decimal:
        if not isinstance(data, str):
            raise PipelineDocumentError(f"{path}: expected a decimal string")
        try:
            return Decimal(data)
        except InvalidOperation:
            raise PipelineDocumentError(f"{path}: not a decimal: {data!r}") from None
    if tp is datetime:
        if not isinstance(data, str):
            raise PipelineDocumentError(f"{path}: expected an ISO 8601 string")
        try:
            value = datetime.fromisoformat(data)
        except ValueError as error:
            raise PipelineDocumentError(f"{path}: {error}") from None
        if value.tzinfo is None:
            raise PipelineDocumentError(f"{path}: datetime without a timezone")
        return value
    if tp in (bool, int, str):
        return _scalar(tp, data, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, path)
    raise PipelineDocumentError(f"{path}: unsupported type {tp!r}")


def _decode_dataclass(tp: Any, data: JSONValue, path: str) -> Any:
    if not isinstance(data, dict):
        raise PipelineDocumentError(f"{path}: expected an object")
    hints = _hints(tp)
    names = {field.name for field in _fields(tp)}
    unknown = set(data) - names
    if unknown:
        raise PipelineDocumentError(f"{path}: unknown fields {sorted(unknown)}")
    values: dict[str, Any] = {}
    for field in _fields(tp):
        if field.name in data:
            values[field.name] = _decode(
                hints[field.name], data[field.name], f"{path}.{field.name}"
            )
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise PipelineDocumentError(f"{path}: missing field {field.name!r}")
    try:
        return tp(**values)
    except (TypeError, ValueError) as error:
        raise PipelineDocumentError(f"{path}: {error}") from None
