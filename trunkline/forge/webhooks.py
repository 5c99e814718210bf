"""Webhook delivery: a signed POST per event, from a background thread, with retries.

Performs I/O (HTTP). `WebhookDispatcher.enqueue` records a delivery and returns at once;
the delivery thread POSTs the raw JSON body with X-GitHub-Event, X-GitHub-Delivery (a uuid)
and X-Hub-Signature-256 (HMAC-SHA256 of the body with the shared secret), retrying failures
with backoff. Every delivery stays in a bounded in-memory log (not persisted) and can be
redelivered by id. A fault switch drops, duplicates or reorders the next N deliveries.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

LOG_LIMIT = 2000


class Fault(enum.StrEnum):
    NONE = "none"
    DROP = "drop"
    DUPLICATE = "duplicate"
    REORDER = "reorder"


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    id: int
    guid: str
    event: str
    action: str | None
    body: bytes
    created_at: float
    status: str = "pending"  # pending, delivered, failed, dropped, no_url
    status_code: int | None = None
    attempts: int = 0
    redelivery: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "event": self.event,
            "action": self.action,
            "status": self.status,
            "status_code": self.status_code,
            "attempts": self.attempts,
            "redelivery": self.redelivery,
            "delivered_at": self.created_at,
        }


@dataclass
class WebhookTarget:
    url: str | None
    secret: str | None


@dataclass
class _Faults:
    mode: Fault = Fault.NONE
    remaining: int = 0


@dataclass
class WebhookDispatcher:
    """Queue + delivery thread. `target` is read at send time, so it can change live."""

    target: Callable[[], WebhookTarget]
    max_attempts: int = 4
    backoff_seconds: float = 0.2
    timeout_seconds: float = 10.0
    _log: deque[Delivery] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    _queue: deque[Delivery] = field(default_factory=deque)
    _held: list[Delivery] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _faults: _Faults = field(default_factory=_Faults)
    _next_id: int = 1
    _stopping: bool = False
    _busy: int = 0
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="forge-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def set_fault(self, mode: Fault, count: int) -> None:
        with self._cond:
            self._faults = _Faults(mode, count)

    def enqueue(self, event: str, payload: dict[str, Any]) -> Delivery:
        body = json.dumps(payload, separators=(",", ":")).encode()
        action = payload.get("action")
        with self._cond:
            delivery = Delivery(
                id=self._next_id,
                guid=str(uuid.uuid4()),
                event=event,
                action=str(action) if action is not None else None,
                body=body,
                created_at=time.time(),
            )
            self._next_id += 1
            self._log.append(delivery)
            self._admit(delivery)
            self._cond.notify_all()
        return delivery

    def _admit(self, delivery: Delivery) -> None:
        faults = self._faults
        mode = faults.mode if faults.remaining > 0 else Fault.NONE
        if mode is not Fault.NONE and mode is not Fault.REORDER:
            faults.remaining -= 1
        if mode is Fault.DROP:
            delivery.status = "dropped"
        elif mode is Fault.DUPLICATE:
            self._queue.extend([delivery, delivery])
        elif mode is Fault.REORDER:
            self._held.append(delivery)
            if len(self._held) >= 2:
                faults.remaining -= 1
                self._queue.extend(reversed(self._held))
                self._held.clear()
        else:
            self._queue.extend([*self._held, delivery])
            self._held.clear()

    def redeliver(self, delivery_id: int) -> Delivery | None:
        with self._cond:
            original = next((d for d in self._log if d.id == delivery_id), None)
            if original is None:
                return None
            copy = Delivery(
                id=self._next_id,
                guid=original.guid,
                event=original.event,
                action=original.action,
                body=original.body,
                created_at=time.time(),
                redelivery=True,
            )
            self._next_id += 1
            self._log.append(copy)
            self._queue.append(copy)
            self._cond.notify_all()
            return copy

    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._log)

    def get(self, delivery_id: int) -> Delivery | None:
        with self._cond:
            return next((d for d in self._log if d.id == delivery_id), None)

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and self._busy == 0

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_seconds) as client:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    delivery = self._queue.popleft()
                    self._busy += 1
                try:
                    self._send(client, delivery)
                finally:
                    with self._cond:
                        self._busy -= 1

    def _send(self, client: httpx.Client, delivery: Delivery) -> None:
        target = self.target()
        if not target.url:
            delivery.status = "no_url"
            return
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/forge",
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.guid,
            "X-GitHub-Hook-ID": "1",
        }
        if target.secret:
            headers["X-Hub-Signature-256"] = sign(target.secret, delivery.body)
        for attempt in range(1, self.max_attempts + 1):
            delivery.attempts = attempt
            try:
                response = client.post(target.url, content=delivery.body, headers=headers)
                delivery.status_code = response.status_code
                if response.status_code < 500:
                    delivery.status = "delivered" if response.is_success else "failed"
                    return
            except httpx.HTTPError as exc:
                log.info(
                    "webhook delivery failed", extra={"delivery": delivery.id, "error": str(exc)}
                )
            if self._stopping:
                break
            time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        delivery.status = "failed"
