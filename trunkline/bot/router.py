"""Event routing in the style of gidgethub: handlers registered by event name and action.

Pure dispatch; performs no I/O itself (handlers may). A handler registered without an action
receives every action of its event; one registered with an action only that action. Handlers
are called in registration order. They run inside a durable job (at-least-once), so each must
be idempotent: it re-reads current state and converges, never "applies the event twice".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trunkline.bot.events import WebhookPayload


@dataclass(frozen=True)
class RoutedEvent:
    """One stored delivery, parsed: what a handler receives."""

    delivery_id: str
    event: str
    action: str | None
    payload: WebhookPayload
    raw: dict[str, Any]


EventHandler = Callable[[RoutedEvent], None]


@dataclass
class Router:
    _handlers: dict[tuple[str, str | None], list[EventHandler]] = field(default_factory=dict)

    def add(self, handler: EventHandler, event: str, action: str | None = None) -> None:
        self._handlers.setdefault((event, action), []).append(handler)

    def register(
        self, event: str, action: str | None = None
    ) -> Callable[[EventHandler], EventHandler]:
        """Decorator: `@router.register("pull_request", action="opened")`."""

        def decorate(handler: EventHandler) -> EventHandler:
            self.add(handler, event, action)
            return handler

        return decorate

    def registered_events(self) -> set[str]:
        """The event names some handler is registered for (what the App subscribes to)."""
        return {event for event, _ in self._handlers}

    def handlers_for(self, event: str, action: str | None) -> list[EventHandler]:
        found = list(self._handlers.get((event, None), []))
        if action is not None:
            found.extend(self._handlers.get((event, action), []))
        return found

    def dispatch(self, routed: RoutedEvent) -> int:
        """Call every matching handler; returns how many were called."""
        handlers = self.handlers_for(routed.event, routed.action)
        for handler in handlers:
            handler(routed)
        return len(handlers)
