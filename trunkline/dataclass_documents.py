"""A type-directed codec between frozen dataclasses of plain data and JSON documents.

Pure; performs no I/O. One `DocumentCodec` serves one family of documents (the merge queue's,
the pipeline's): it raises that family's error class and resolves the string annotations of
that family's dataclasses in the namespaces of the modules it is given.

Supported types and how each is written (`encode`) and read back (`decode`):
- `None`, `bool`, `int`, `str` -> themselves; `float` -> itself (an integer is read as a float);
- `enum.Enum` (in practice `StrEnum`) -> its value;
- `datetime` -> ISO 8601 string; it must be timezone-aware both ways (naive ones are refused);
- `timedelta` -> integer microseconds;
- `Decimal` -> string (no float rounding of money);
- `tuple[X, ...]` and fixed `tuple[X, Y]` -> list; `frozenset[X]` -> list sorted by the
  `repr` of the encoded items (so a set always encodes the same);
- `X | None` -> `null` or the encoding of `X` (a union of two or more non-`None` types is
  refused as ambiguous when decoding);
- a dataclass -> an object of its fields; decoding rejects missing (non-defaulted) fields and
  unknown fields;
- tagged unions of dataclasses (`decode_tagged`) -> the same object plus a `type` member holding
  the class name, which is the only place a document names a Python class.
Every decoding error is an instance of the codec's error class and starts with the path of the
offending value (`state.config.merge_method`, `event<Merged>.pr`, `item.lock_epochs[0][1]`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

JSONValue = Any
"""A value `json.dumps` accepts (objects, lists, strings, numbers, booleans, null)."""

_SCALARS: dict[type[Any], str] = {bool: "bool", int: "int", float: "float", str: "str"}


def union_members(union: Any) -> dict[str, type[Any]]:
    """The members of a union of dataclasses by class name, as `decode_tagged` wants them."""
    return {member.__name__: member for member in typing.get_args(union)}


@cache
def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


class DocumentCodec:
    """Encodes values to JSON-ready data and decodes them back by their declared types.

    `error` is raised (with a message) for anything that does not fit; `namespaces` are the
    modules whose names the dataclasses' string annotations refer to.
    """

    def __init__(self, *, error: type[Exception], namespaces: tuple[types.ModuleType, ...]) -> None:
        self._error = error
        self._namespaces = namespaces
        self._hints_by_class: dict[type[Any], dict[str, Any]] = {}

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, value: Any) -> JSONValue:
        """`value` (dataclass, enum, datetime, ...) as data `json.dumps` accepts."""
        if value is None or (
            isinstance(value, bool | int | float | str) and not isinstance(value, enum.Enum)
        ):
            return value
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise self._error("naive datetimes cannot be stored; give a timezone-aware one")
            return value.isoformat()
        if isinstance(value, timedelta):
            return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
        if isinstance(value, frozenset):
            return sorted((self.encode(item) for item in value), key=repr)
        if isinstance(value, tuple | list):
            return [self.encode(item) for item in value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                field.name: self.encode(getattr(value, field.name))
                for field in _fields(type(value))
            }
        raise self._error(f"cannot encode {type(value).__name__} in a JSON document")

    def encode_tagged(self, value: Any) -> dict[str, JSONValue]:
        """A dataclass as an object of its fields plus `type`, its class name."""
        return {"type": type(value).__name__, **self.encode(value)}

    # -- decoding ---------------------------------------------------------------------------

    def decode_tagged(self, kinds: Mapping[str, type[Any]], data: JSONValue, path: str) -> Any:
        """The member of `kinds` that the `type` member of `data` names, decoded."""
        if not isinstance(data, dict):
            raise self._error(f"{path}: expected an object, got {type(data).__name__}")
        tag = data.get("type")
        cls = kinds.get(tag) if isinstance(tag, str) else None
        if cls is None:
            raise self._error(f"{path}: unknown type {tag!r}; expected one of {sorted(kinds)}")
        fields = {key: value for key, value in data.items() if key != "type"}
        return self.decode(cls, fields, f"{path}<{tag}>")

    def decode(self, tp: Any, data: JSONValue, path: str) -> Any:
        """`data` read as a value of type `tp`; errors start with `path`."""
        origin = typing.get_origin(tp)
        if origin is typing.Union or origin is types.UnionType:
            return self._decode_optional(tp, data, path)
        if origin is tuple:
            return self._decode_tuple(typing.get_args(tp), data, path)
        if origin is frozenset:
            (arg,) = typing.get_args(tp)
            items = self._list(data, path)
            return frozenset(self.decode(arg, item, f"{path}[]") for item in items)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            try:
                return tp(data)
            except ValueError as error:
                raise self._error(f"{path}: {error}") from None
        if tp is Decimal:
            return self._decode_decimal(data, path)
        if tp is datetime:
            return self._decode_datetime(data, path)
        if tp is timedelta:
            if not isinstance(data, int) or isinstance(data, bool):
                raise self._error(f"{path}: expected integer microseconds")
            return timedelta(microseconds=data)
        if tp in _SCALARS:
            return self._decode_scalar(tp, data, path)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._decode_dataclass(tp, data, path)
        raise self._error(f"{path}: unsupported type {tp!r}")

    def _decode_optional(self, tp: Any, data: JSONValue, path: str) -> Any:
        members = typing.get_args(tp)
        if data is None and type(None) in members:
            return None
        concrete = [member for member in members if member is not type(None)]
        if len(concrete) == 1:
            return self.decode(concrete[0], data, path)
        raise self._error(f"{path}: ambiguous union {tp!r}")

    def _list(self, data: JSONValue, path: str) -> list[JSONValue]:
        if not isinstance(data, list):
            raise self._error(f"{path}: expected a list, got {type(data).__name__}")
        return data

    def _decode_tuple(self, args: tuple[Any, ...], data: JSONValue, path: str) -> tuple[Any, ...]:
        items = self._list(data, path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(items))
        if len(args) != len(items):
            raise self._error(f"{path}: expected {len(args)} items, got {len(items)}")
        return tuple(
            self.decode(arg, item, f"{path}[{i}]")
            for i, (arg, item) in enumerate(zip(args, items, strict=True))
        )

    def _decode_decimal(self, data: JSONValue, path: str) -> Decimal:
        if not isinstance(data, str):
            raise self._error(f"{path}: expected a decimal string")
        try:
            return Decimal(data)
        except InvalidOperation:
            raise self._error(f"{path}: not a decimal: {data!r}") from None

    def _decode_datetime(self, data: JSONValue, path: str) -> datetime:
        if not isinstance(data, str):
            raise self._error(f"{path}: expected an ISO 8601 string")
        try:
            value = datetime.fromisoformat(data)
        except ValueError as error:
            raise self._error(f"{path}: {error}") from None
        if value.tzinfo is None:
            raise self._error(f"{path}: datetime without a timezone")
        return value

    def _decode_scalar(self, tp: type[Any], data: JSONValue, path: str) -> Any:
        if tp is bool and isinstance(data, bool):
            return data
        if not isinstance(data, bool):
            if tp is int and isinstance(data, int):
                return data
            if tp is float and isinstance(data, int | float):
                return float(data)
            if tp is str and isinstance(data, str):
                return data
        raise self._error(f"{path}: expected {_SCALARS[tp]}, got {type(data).__name__}")

    def _decode_dataclass(self, tp: Any, data: JSONValue, path: str) -> Any:
        if not isinstance(data, dict):
            raise self._error(f"{path}: expected an object, got {type(data).__name__}")
        fields = _fields(tp)
        unknown = set(data) - {field.name for field in fields}
        if unknown:
            raise self._error(f"{path}: unknown fields {sorted(unknown)}")
        hints = self._hints(tp)
        values: dict[str, Any] = {}
        for field in fields:
            if field.name in data:
                values[field.name] = self.decode(
                    hints[field.name], data[field.name], f"{path}.{field.name}"
                )
            elif (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise self._error(f"{path}: missing field {field.name!r}")
        try:
            return tp(**values)
        except (TypeError, ValueError) as error:
            raise self._error(f"{path}: {error}") from None

    def _hints(self, cls: type[Any]) -> dict[str, Any]:
        hints = self._hints_by_class.get(cls)
        if hints is None:
            namespace: dict[str, Any] = {}
            for module in self._namespaces:
                namespace.update(vars(module))
            hints = typing.get_type_hints(cls, localns=namespace)
            self._hints_by_class[cls] = hints
        return hints
