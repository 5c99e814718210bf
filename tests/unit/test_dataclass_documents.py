"""The generic dataclass <-> JSON codec: every supported type round-trips; errors name the path."""

from __future__ import annotations

import enum
import json
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkline.dataclass_documents import DocumentCodec, union_members
from trunkline.errors import TerminalError


class SampleDocumentError(TerminalError):
    """The codec under test raises this."""


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


@dataclass(frozen=True)
class Inner:
    count: int
    label: str = "none"


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    pairs: tuple[tuple[str, int], ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)
    at: datetime | None = None


@dataclass(frozen=True)
class Positive:
    amount: int

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("amount must be positive")


@dataclass(frozen=True)
class Opened:
    pr: int


@dataclass(frozen=True)
class Closed:
    pr: int
    reason: str


Happening = Opened | Closed


@dataclass(frozen=True)
class Referring:
    """Its annotation names a class that only the codec's namespace module knows."""

    hidden: HiddenPart  # type: ignore[name-defined]  # noqa: F821


@dataclass(frozen=True)
class HiddenClass:
    spend: Decimal


NAMESPACE = types.ModuleType("sample_namespace")
NAMESPACE.HiddenPart = HiddenClass  # type: ignore[attr-defined]

CODEC = DocumentCodec(error=SampleDocumentError, namespaces=(NAMESPACE,))
NOW = datetime(2026, 3, 1, 12, 30, 15, 250, tzinfo=UTC)
EAST = timezone(timedelta(hours=5, minutes=30))


def _through_json(document: Any) -> Any:
    return json.loads(json.dumps(document))


ROUND_TRIPS: list[tuple[str, Any, Any, Any]] = [
    ("bool", bool, True, True),
    ("int", int, -7, -7),
    ("float", float, 2.5, 2.5),
    ("str", str, "héllo", "héllo"),
    ("optional none", int | None, None, None),
    ("optional value", int | None, 3, 3),
    ("str enum", Colour, Colour.GREEN, "green"),
    ("datetime utc", datetime, NOW, "2026-03-01T12:30:15.000250+00:00"),
    ("datetime offset", datetime, NOW.astimezone(EAST), "2026-03-01T18:00:15.000250+05:30"),
    ("timedelta", timedelta, timedelta(days=1, seconds=2, microseconds=3), 86_402_000_003),
    ("negative timedelta", timedelta, timedelta(microseconds=-5), -5),
    ("decimal", Decimal, Decimal("0.0123"), "0.0123"),
    ("decimal keeps exponent", Decimal, Decimal("1E+3"), "1E+3"),
    ("variadic tuple", tuple[int, ...], (3, 1, 2), [3, 1, 2]),
    ("empty tuple", tuple[int, ...], (), []),
    ("fixed tuple", tuple[str, int], ("api", 4), ["api", 4]),
    ("frozenset sorted", frozenset[str], frozenset({"b", "c", "a"}), ["a", "b", "c"]),
    ("enum frozenset", frozenset[Colour], frozenset(Colour), ["green", "red"]),
    ("dataclass", Inner, Inner(2, "x"), {"count": 2, "label": "x"}),
    (
        "nested dataclass",
        Outer,
        Outer("o", Inner(1), (("a", 1),), frozenset({"t"}), NOW),
        {
            "name": "o",
            "inner": {"count": 1, "label": "none"},
            "pairs": [["a", 1]],
            "tags": ["t"],
            "at": "2026-03-01T12:30:15.000250+00:00",
        },
    ),
    (
        "namespace annotation",
        Referring,
        Referring(HiddenClass(Decimal(2))),
        {"hidden": {"spend": "2"}},
    ),
]


@pytest.mark.parametrize(
    ("tp", "value", "document"),
    [case[1:] for case in ROUND_TRIPS],
    ids=[case[0] for case in ROUND_TRIPS],
)
def test_each_supported_type_is_written_as_documented_and_read_back(
    tp: Any, value: Any, document: Any
) -> None:
    assert CODEC.encode(value) == document
    decoded = CODEC.decode(tp, _through_json(CODEC.encode(value)), "doc")
    assert decoded == value
    assert type(decoded) is type(value)


def test_an_integer_is_read_as_a_float() -> None:
    decoded = CODEC.decode(float, 3, "doc")
    assert decoded == 3.0
    assert isinstance(decoded, float)


def test_defaulted_fields_may_be_missing() -> None:
    assert CODEC.decode(Outer, {"name": "o", "inner": {"count": 1}}, "doc") == Outer("o", Inner(1))


def test_tagged_unions_carry_the_class_name() -> None:
    kinds = union_members(Happening)
    assert kinds == {"Opened": Opened, "Closed": Closed}
    document = CODEC.encode_tagged(Closed(3, "done"))
    assert document == {"type": "Closed", "pr": 3, "reason": "done"}
    assert CODEC.decode_tagged(kinds, _through_json(document), "event") == Closed(3, "done")


BAD_DOCUMENTS: list[tuple[str, Any, Any, str]] = [
    (
        "wrong scalar",
        Outer,
        {"name": "o", "inner": {"count": "1"}},
        r"^doc\.inner\.count: expected int, got str$",
    ),
    ("bool is no int", int, True, r"^doc: expected int, got bool$"),
    ("int is no bool", bool, 1, r"^doc: expected bool, got int$"),
    ("bool is no float", float, False, r"^doc: expected float, got bool$"),
    ("int is no str", str, 1, r"^doc: expected str, got int$"),
    ("missing field", Outer, {"name": "o"}, r"^doc: missing field 'inner'$"),
    ("unknown field", Inner, {"count": 1, "colour": "red"}, r"^doc: unknown fields \['colour'\]$"),
    ("not an object", Inner, [1], r"^doc: expected an object, got list$"),
    ("bad enum value", Colour, "blue", r"^doc: 'blue' is not a valid Colour$"),
    (
        "bad tuple item",
        Outer,
        {"name": "o", "inner": {"count": 1}, "pairs": [["a", 1], [2, 2]]},
        r"^doc\.pairs\[1\]\[0\]: expected str",
    ),
    ("tuple length", tuple[str, int], ["a"], r"^doc: expected 2 items, got 1$"),
    ("not a list", tuple[int, ...], "1,2", r"^doc: expected a list, got str$"),
    ("bad set item", frozenset[int], [1, "2"], r"^doc\[\]: expected int, got str$"),
    ("bad decimal", Decimal, "lots", r"^doc: not a decimal: 'lots'$"),
    ("decimal as number", Decimal, 1.5, r"^doc: expected a decimal string$"),
    ("timedelta as bool", timedelta, True, r"^doc: expected integer microseconds$"),
    ("timedelta as string", timedelta, "5", r"^doc: expected integer microseconds$"),
    ("datetime as number", datetime, 0, r"^doc: expected an ISO 8601 string$"),
    ("datetime garbage", datetime, "yesterday", r"^doc: Invalid isoformat string"),
    ("null for required", Inner, {"count": None}, r"^doc\.count: expected int, got NoneType$"),
    ("ambiguous union", int | str, 1, r"^doc: ambiguous union"),
    ("unsupported type", dict[str, int], {}, r"^doc: unsupported type"),
    ("rejected by the class", Positive, {"amount": 0}, r"^doc: amount must be positive$"),
]


@pytest.mark.parametrize(
    ("tp", "data", "message"),
    [case[1:] for case in BAD_DOCUMENTS],
    ids=[case[0] for case in BAD_DOCUMENTS],
)
def test_bad_documents_raise_the_codec_error_naming_the_path(
    tp: Any, data: Any, message: str
) -> None:
    with pytest.raises(SampleDocumentError, match=message):
        CODEC.decode(tp, data, "doc")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"type": "Merged", "pr": 1},
            r"^event: unknown type 'Merged'; expected one of \['Closed', 'Opened'\]$",
        ),
        ({"pr": 1}, r"^event: unknown type None"),
        ("Opened", r"^event: expected an object, got str$"),
        ({"type": "Closed", "pr": 1}, r"^event<Closed>: missing field 'reason'$"),
        ({"type": "Opened", "pr": "1"}, r"^event<Opened>\.pr: expected int, got str$"),
    ],
)
def test_bad_tagged_documents_name_the_path(document: Any, message: str) -> None:
    with pytest.raises(SampleDocumentError, match=message):
        CODEC.decode_tagged(union_members(Happening), document, "event")


def test_naive_datetimes_are_refused_both_ways() -> None:
    naive = datetime(2026, 3, 1, 12, 0)
    with pytest.raises(SampleDocumentError, match="naive datetimes cannot be stored"):
        CODEC.encode(naive)
    with pytest.raises(SampleDocumentError, match="naive datetimes cannot be stored"):
        CODEC.encode(Outer("o", Inner(1), at=naive))
    with pytest.raises(SampleDocumentError, match=r"^doc\.at: datetime without a timezone$"):
        CODEC.decode(Outer, {"name": "o", "inner": {"count": 1}, "at": naive.isoformat()}, "doc")


@pytest.mark.parametrize("value", [object(), {"a": 1}, b"bytes", Inner])
def test_values_of_unsupported_types_cannot_be_encoded(value: Any) -> None:
    with pytest.raises(SampleDocumentError, match="cannot encode"):
        CODEC.encode(value)


OUTERS = st.builds(
    Outer,
    name=st.text(max_size=8),
    inner=st.builds(Inner, count=st.integers(), label=st.text(max_size=8)),
    pairs=st.lists(st.tuples(st.text(max_size=4), st.integers()), max_size=4).map(tuple),
    tags=st.frozensets(st.text(max_size=4), max_size=4),
    at=st.none() | st.datetimes(timezones=st.sampled_from([UTC, EAST])),
)


@given(OUTERS)
def test_any_nested_value_round_trips_and_encodes_the_same_twice(value: Outer) -> None:
    document = CODEC.encode(value)
    assert CODEC.decode(Outer, _through_json(document), "doc") == value
    assert json.dumps(CODEC.encode(CODEC.decode(Outer, document, "doc"))) == json.dumps(document)
