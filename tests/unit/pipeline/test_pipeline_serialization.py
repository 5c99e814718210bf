"""Work items, events and commands survive a trip through JSON; bad documents say where."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from trunkline.pipeline import events as ev
from trunkline.pipeline.commands import Escalate
from trunkline.pipeline.config import PipelineConfig
from trunkline.pipeline.machine import decide
from trunkline.pipeline.model import RiskAssessment, Spend, Verdict, WorkItem
from trunkline.pipeline.serialization import (
    PipelineDocumentError,
    decode_command,
    decode_event,
    decode_item,
    encode_command,
    encode_event,
    encode_item,
)
from trunkline.pipeline.states import WorkState
from trunkline.policies.model import Permission

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def _round_trip(document: object) -> object:
    return json.loads(json.dumps(document))


def test_an_item_with_every_kind_of_field_round_trips() -> None:
    item, _ = decide(
        None, ev.Labeled("acme/app", 3, "maria", Permission.ADMIN, "agent"), NOW, PipelineConfig()
    )
    assert item is not None
    item = WorkItem(
        **{
            **{f: getattr(item, f) for f in item.__dataclass_fields__},
            "risk": RiskAssessment("high", ("r1",), ("api", "ci"), True),
            "spend": Spend(12, Decimal("0.0123")),
            "review_verdict": Verdict.REQUEST_CHANGES,
            "lock_epochs": (("api", 4), ("ci", 1)),
        }
    )
    document = encode_item(item)
    assert document["spend"] == {"tokens": 12, "usd": "0.0123"}
    assert document["state"] == "queued"
    assert decode_item(_round_trip(document)) == item


def test_events_and_commands_are_tagged() -> None:
    event = ev.Labeled("acme/app", 3, "eve", None, "agent")
    assert encode_event(event)["type"] == "Labeled"
    assert decode_event(_round_trip(encode_event(event))) == event
    command = Escalate(
        "k", "acme/app#3", "budget_usd", "over", Spend(1, Decimal(2)), ("alice",), None
    )
    assert decode_command(_round_trip(encode_command(command))) == command


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"type": "Nope"}, "unknown type"),
        ({"type": "Merged", "pr": "1", "sha": "x"}, "event<Merged>.pr: expected int"),
        ({"type": "Merged", "pr": 1}, "missing field 'sha'"),
        ({"type": "Merged", "pr": 1, "sha": "x", "extra": 1}, "unknown fields"),
        (
            {"type": "BudgetExhausted", "reason": "r", "spend": {"tokens": 1, "usd": "lots"}},
            "not a decimal",
        ),
        ([], "expected an object"),
    ],
)
def test_bad_event_documents_name_the_field(document: object, message: str) -> None:
    with pytest.raises(PipelineDocumentError, match=message):
        decode_event(document)


def test_bad_item_documents_name_the_field() -> None:
    item = WorkItem("acme/app", 1, WorkState.QUEUED, "maria", NOW, NOW)
    document = encode_item(item)
    with pytest.raises(PipelineDocumentError, match=r"item\.state"):
        decode_item({**document, "state": "sleeping"})
    with pytest.raises(
        PipelineDocumentError, match=r"item\.created_at: datetime without a timezone"
    ):
        decode_item({**document, "created_at": "2026-01-01T00:00:00"})
