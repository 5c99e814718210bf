"""JSON documents for work items, pipeline events and commands, and back.

Pure; performs no I/O. Everything in the pipeline is a frozen dataclass of plain data, so the
generic codec of `trunkline.dataclass_documents` covers it (see its docstring for how each type
is written; `Decimal` as a string, so money suffers no float rounding). Decoding walks the
declared field types, so a document names no Python class except the `type` tag of events and
commands (the class name).
`decode_item(encode_item(i)) == i` for every item the machine produces (checked after every
step of the Hypothesis test). A document that does not fit raises `PipelineDocumentError`
(a `TerminalError`) naming the offending field.
"""

from __future__ import annotations

from typing import Any

from trunkline.dataclass_documents import DocumentCodec, union_members
from trunkline.dataclass_documents import JSONValue as JSONValue
from trunkline.errors import TerminalError
from trunkline.pipeline import commands as commands_module
from trunkline.pipeline import events as events_module
from trunkline.pipeline import model as model_module
from trunkline.pipeline.commands import Command
from trunkline.pipeline.events import Event
from trunkline.pipeline.model import WorkItem


class PipelineDocumentError(TerminalError):
    """A stored pipeline document does not match the pipeline's types."""


EVENT_TYPES: dict[str, type[Any]] = union_members(Event)
COMMAND_TYPES: dict[str, type[Any]] = union_members(Command)

_CODEC = DocumentCodec(
    error=PipelineDocumentError, namespaces=(model_module, events_module, commands_module)
)


def encode(value: Any) -> JSONValue:
    """Any pipeline value (dataclass, enum, datetime, Decimal, ...) as JSON-ready data."""
    return _CODEC.encode(value)


def encode_item(item: WorkItem) -> dict[str, JSONValue]:
    document: dict[str, JSONValue] = _CODEC.encode(item)
    return document


def encode_event(event: Event) -> dict[str, JSONValue]:
    return _CODEC.encode_tagged(event)


def encode_command(command: Command) -> dict[str, JSONValue]:
    return _CODEC.encode_tagged(command)


def decode_item(document: JSONValue) -> WorkItem:
    item: WorkItem = _CODEC.decode(WorkItem, document, "item")
    return item


def decode_event(document: JSONValue) -> Event:
    event: Event = _CODEC.decode_tagged(EVENT_TYPES, document, "event")
    return event


def decode_command(document: JSONValue) -> Command:
    command: Command = _CODEC.decode_tagged(COMMAND_TYPES, document, "command")
    return command
