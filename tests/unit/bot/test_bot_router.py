"""The gidgethub-style router: registration by event and action, dispatch order."""

from __future__ import annotations

from trunkline.bot.events import WebhookPayload
from trunkline.bot.router import RoutedEvent, Router


def _event(event: str, action: str | None) -> RoutedEvent:
    return RoutedEvent(
        delivery_id="d1",
        event=event,
        action=action,
        payload=WebhookPayload(),
        raw={"action": action},
    )


def test_event_wide_and_action_specific_handlers_run_in_registration_order() -> None:
    router = Router()
    calls: list[str] = []

    @router.register("pull_request")
    def any_action(event: RoutedEvent) -> None:
        calls.append(f"any:{event.action}")

    @router.register("pull_request", action="opened")
    def opened(event: RoutedEvent) -> None:
        calls.append("opened")

    @router.register("pull_request", action="closed")
    def closed(event: RoutedEvent) -> None:
        calls.append("closed")

    assert router.dispatch(_event("pull_request", "opened")) == 2
    assert calls == ["any:opened", "opened"]
    calls.clear()
    assert router.dispatch(_event("pull_request", "synchronize")) == 1
    assert calls == ["any:synchronize"]


def test_unrouted_events_call_nothing() -> None:
    router = Router()
    router.add(lambda event: None, "issues", "opened")
    assert router.handlers_for("issues", "closed") == []
    assert router.handlers_for("push", None) == []
    assert router.dispatch(_event("ping", None)) == 0


def test_a_handler_without_action_matches_events_that_have_none() -> None:
    router = Router()
    seen: list[str] = []
    router.add(lambda event: seen.append(event.event), "push")
    assert router.dispatch(_event("push", None)) == 1
    assert seen == ["push"]
