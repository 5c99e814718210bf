"""Webhook intake decisions: from (secret, headers, raw body) to what to store and answer.

Pure; performs no I/O (the delivery id for an unidentified request comes from a supplied
function). Rules:
- no valid `X-Hub-Signature-256` -> 401, nothing stored (an unsigned request is not GitHub's);
- signed but unusable (no delivery id or event, not UTF-8, malformed JSON, not an object)
  -> 400, stored as `rejected` with the reason, so nothing GitHub sent is lost;
- otherwise -> stored as `pending` with its processing job; the caller answers 202, or 200
  when the delivery id was already stored.
Text taken from the request is made storable (no NUL, no lone surrogates, bounded length).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trunkline.bot.signature import SIGNATURE_HEADER, verify_signature
from trunkline.store.deliveries import IncomingDelivery
from trunkline.store.tables import DeliveryState

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
DELIVERY_HEADER = "x-github-delivery"
EVENT_HEADER = "x-github-event"
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True)
class IntakeDecision:
    status: int
    message: str
    delivery: IncomingDelivery | None


def storable(text: str, limit: int) -> str:
    """`text` without NUL or lone surrogates, cut to `limit` characters."""
    cleaned = text.replace("\x00", "\ufffd")
    cleaned = cleaned.encode("utf-8", errors="replace").decode("utf-8")
    return cleaned[:limit]


def _optional_text(value: Any, limit: int) -> str | None:
    return storable(value, limit) if isinstance(value, str) else None


def _installation_id(data: Mapping[str, Any]) -> int | None:
    installation = data.get("installation")
    if not isinstance(installation, dict):
        return None
    value = installation.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_BIGINT:
        return value
    return None


def _repo_full_name(data: Mapping[str, Any]) -> str | None:
    repository = data.get("repository")
    if not isinstance(repository, dict):
        return None
    return _optional_text(repository.get("full_name"), 300)


def decide_intake(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    new_delivery_id: Callable[[], str],
) -> IntakeDecision:
    """Decide what to store for one POST /webhooks request. `headers` keys are lower-case."""
    if not verify_signature(secret, body, headers.get(SIGNATURE_HEADER)):
        return IntakeDecision(401, "missing or invalid X-Hub-Signature-256", None)

    raw_id = headers.get(DELIVERY_HEADER, "")
    raw_event = headers.get(EVENT_HEADER, "")
    delivery_id = raw_id if _TOKEN.match(raw_id) else f"unidentified-{new_delivery_id()}"
    event = raw_event if _TOKEN.match(raw_event) else storable(raw_event, 100) or "unknown"

    def reject(reason: str) -> IntakeDecision:
        delivery = IncomingDelivery(
            delivery_id=delivery_id,
            event=event,
            action=None,
            installation_id=None,
            repo_full_name=None,
            payload=storable(body.decode("utf-8", errors="replace"), MAX_BODY_BYTES),
            state=DeliveryState.REJECTED,
            error=reason,
        )
        return IntakeDecision(400, reason, delivery)

    if not _TOKEN.match(raw_id):
        return reject("missing or malformed X-GitHub-Delivery header")
    if not _TOKEN.match(raw_event):
        return reject("missing or malformed X-GitHub-Event header")
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return reject(f"body is not UTF-8: {error}")
    try:
        data = json.loads(decoded)
    except (ValueError, RecursionError) as error:
        return reject(storable(f"malformed JSON: {error}", 500))
    if not isinstance(data, dict):
        return reject(f"payload is a JSON {type(data).__name__}, not an object")
    delivery = IncomingDelivery(
        delivery_id=delivery_id,
        event=event,
        action=_optional_text(data.get("action"), 100),
        installation_id=_installation_id(data),
        repo_full_name=_repo_full_name(data),
        payload=decoded,
    )
    return IntakeDecision(202, "accepted", delivery)
