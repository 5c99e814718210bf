"""The `process_delivery` job: load a stored delivery, parse it, route it, record the outcome.

Performs database I/O; the handlers it routes to do the rest. Idempotent: a delivery that is
already processed, ignored or rejected is left alone, so a re-run (a worker died after the
handlers ran but before the job was marked done) calls nothing twice at this level; the routed
handlers are idempotent themselves (they re-read state and converge). Outcomes:
- no model or no handler for the event/action -> `ignored` (acknowledged no-op);
- handlers ran -> `processed`;
- payload does not fit the model or a handler raised `TerminalError` -> `failed` (job dead);
- other errors -> the job is retried with backoff; the delivery keeps the last error and turns
  `failed` when the job runs out of attempts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from trunkline.bot.events import parse_payload
from trunkline.bot.router import RoutedEvent, Router
from trunkline.errors import TerminalError
from trunkline.store.deliveries import load_delivery, mark_delivery
from trunkline.store.jobs import ClaimedJob
from trunkline.store.runner import JobHandler
from trunkline.store.tables import DeliveryState

FINAL_STATES = {DeliveryState.PROCESSED, DeliveryState.IGNORED, DeliveryState.REJECTED}


class DeliveryMissingError(TerminalError):
    """The job names a delivery that is not stored."""


def process_delivery_handler(
    engine: Engine, router: Router, now: Callable[[], datetime]
) -> JobHandler:
    """The job handler for `process_delivery` jobs (payload: {"delivery_id": ...})."""

    def handle(job: ClaimedJob) -> None:
        delivery_id = str(job.payload.get("delivery_id", ""))
        stored = load_delivery(engine, delivery_id)
        if stored is None:
            raise DeliveryMissingError(f"delivery {delivery_id!r} is not stored")
        record = stored.record
        if record.state in FINAL_STATES:
            return
        try:
            data = json.loads(stored.payload)
            payload = parse_payload(record.event, data)
        except TerminalError as error:
            mark_delivery(engine, delivery_id, DeliveryState.FAILED, now(), str(error))
            raise
        if payload is None:
            mark_delivery(
                engine, delivery_id, DeliveryState.IGNORED, now(), f"no model for {record.event}"
            )
            return
        routed = RoutedEvent(
            delivery_id=delivery_id,
            event=record.event,
            action=record.action,
            payload=payload,
            raw=data,
        )
        if not router.handlers_for(record.event, record.action):
            mark_delivery(engine, delivery_id, DeliveryState.IGNORED, now(), None)
            return
        try:
            router.dispatch(routed)
        except Exception as error:
            final = isinstance(error, TerminalError) or job.attempts >= job.max_attempts
            state = DeliveryState.FAILED if final else DeliveryState.PENDING
            mark_delivery(engine, delivery_id, state, now(), f"{type(error).__name__}: {error}")
            raise
        mark_delivery(engine, delivery_id, DeliveryState.PROCESSED, now(), None)

    return handle
