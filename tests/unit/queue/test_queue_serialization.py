"""Round trips of queue states, events and effects through JSON (pure, Hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trunkline.queue.engine import initial_state, step
from trunkline.queue.events import (
    BaseMoved,
    CheckCompleted,
    CheckStarted,
    ConfigChanged,
    Dequeue,
    Enqueue,
    Event,
    FastForwarded,
    FastForwardRejected,
    GateReport,
    GatesUpdated,
    IntegrationBuilt,
    IntegrationConflict,
    PrHeadChanged,
    PriorityChanged,
    Tick,
)
from trunkline.queue.model import (
    ALL_GATES,
    CheckConclusion,
    MergeMethod,
    Priority,
    QueueConfig,
    QueueState,
)
from trunkline.queue.serialization import (
    QueueDocumentError,
    decode_config,
    decode_effect,
    decode_event,
    decode_state,
    encode_config,
    encode_effect,
    encode_event,
    encode_state,
)

SHAS = st.sampled_from([f"{c}" * 40 for c in "abcdef0123"])
PRS = st.integers(1, 5)
CONFIGS = st.builds(
    QueueConfig,
    base=st.sampled_from(["main", "release/1"]),
    required_checks=st.sampled_from([("ci",), ("ci", "lint")]),
    merge_method=st.sampled_from(MergeMethod),
    check_timeout=st.integers(1, 10_000).map(lambda s: timedelta(seconds=s, microseconds=7)),
    retry_on_timeout=st.integers(0, 2),
    flake_retries=st.integers(0, 2),
)


def _events(state_shas: st.SearchStrategy[str]) -> st.SearchStrategy[Event]:
    gates = st.lists(
        st.builds(GateReport, gate=st.sampled_from(ALL_GATES), ok=st.booleans(), detail=st.text()),
        max_size=3,
    ).map(tuple)
    return st.one_of(
        st.builds(Enqueue, pr=PRS, head_sha=state_shas, priority=st.sampled_from(Priority)),
        st.builds(Dequeue, pr=PRS, by=st.text(max_size=5), reason=st.text(max_size=5)),
        st.builds(PriorityChanged, pr=PRS, priority=st.sampled_from(Priority)),
        st.builds(GatesUpdated, pr=PRS, head_sha=state_shas, reports=gates),
        st.builds(PrHeadChanged, pr=PRS, new_sha=state_shas),
        st.builds(BaseMoved, new_sha=state_shas),
        st.builds(IntegrationBuilt, build_id=st.sampled_from(["b1", "b2", "b3"]), sha=state_shas),
        st.builds(
            IntegrationConflict,
            build_id=st.sampled_from(["b1", "b2"]),
            paths=st.lists(st.text(max_size=4), max_size=2).map(tuple),
        ),
        st.builds(CheckStarted, sha=state_shas, name=st.just("ci"), attempt=st.none() | PRS),
        st.builds(
            CheckCompleted,
            sha=state_shas,
            name=st.sampled_from(["ci", "lint"]),
            conclusion=st.sampled_from(CheckConclusion),
            summary=st.text(max_size=5),
            attempt=st.none() | PRS,
        ),
        st.builds(FastForwarded, build_id=st.sampled_from(["b1", "b2"]), sha=state_shas),
        st.builds(
            FastForwardRejected,
            build_id=st.sampled_from(["b1", "b2"]),
            reason=st.text(max_size=5),
            current_base_sha=state_shas,
        ),
        st.just(Tick()),
        st.builds(ConfigChanged, config=CONFIGS),
    )


def _json_round_trip(document: Any) -> Any:
    return json.loads(json.dumps(document))


def _relevant(state: QueueState, data: st.DataObject) -> Event | None:
    """An event about the state's own builds, so runs reach testing, merging and outcomes."""
    if not state.builds:
        return None
    build = state.builds[data.draw(st.integers(0, len(state.builds) - 1))]
    if build.integration_sha is None:
        return IntegrationBuilt(build.build_id, data.draw(SHAS))
    sha = build.integration_sha
    choices: list[Event] = [
        CheckStarted(sha, "ci"),
        CheckCompleted(sha, "ci", CheckConclusion.SUCCESS, "ok"),
        CheckCompleted(sha, "lint", CheckConclusion.SUCCESS),
        CheckCompleted(sha, "ci", CheckConclusion.FAILURE, "boom"),
        FastForwarded(build.build_id, sha),
        FastForwardRejected(build.build_id, "moved", data.draw(SHAS)),
    ]
    return data.draw(st.sampled_from(choices))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=CONFIGS, base=SHAS, data=st.data())
def test_queue_serialization_round_trips_states_events_and_effects(
    config: QueueConfig, base: str, data: st.DataObject
) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    state = initial_state("acme/app", config, base)
    gates = tuple(GateReport(gate, True) for gate in ALL_GATES)
    for _ in range(data.draw(st.integers(0, 30))):
        now += timedelta(minutes=data.draw(st.sampled_from([0, 0, 1, 5, 90])))
        relevant = _relevant(state, data)
        event = (
            data.draw(_events(SHAS)) if relevant is None or data.draw(st.booleans()) else relevant
        )
        # Interleave gate approvals so that builds, checks and outcomes appear in the states.
        for item in (event, *(GatesUpdated(e.pr, e.head_sha, gates) for e in state.entries)):
            assert decode_event(_json_round_trip(encode_event(item))) == item
            state, effects = step(state, item, now)
            assert decode_state(_json_round_trip(encode_state(state))) == state
            for effect in effects:
                assert decode_effect(_json_round_trip(encode_effect(effect))) == effect
    assert decode_config(_json_round_trip(encode_config(config))) == config


def test_queue_serialization_rejects_bad_documents_with_the_path() -> None:
    state = initial_state("acme/app", QueueConfig(), "a" * 40)
    document = encode_state(state)
    document["config"]["merge_method"] = "octopus"
    with pytest.raises(QueueDocumentError, match=r"state\.config\.merge_method"):
        decode_state(document)
    with pytest.raises(QueueDocumentError, match="unknown type"):
        decode_event({"type": "Explode"})
    with pytest.raises(QueueDocumentError, match="missing field 'sha'"):
        decode_event({"type": "IntegrationBuilt", "build_id": "b1"})
    naive = encode_state(state) | {"recent": [{"pr": 1}]}
    with pytest.raises(QueueDocumentError):
        decode_state(naive)


def test_queue_serialization_keeps_datetimes_timezone_aware() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    state: QueueState = initial_state("acme/app", QueueConfig(), "a" * 40)
    state, _ = step(state, Enqueue(3, "b" * 40), now)
    decoded = decode_state(_json_round_trip(encode_state(state)))
    assert decoded.entries[0].enqueued_at == now
    assert decoded.entries[0].enqueued_at.tzinfo is not None
