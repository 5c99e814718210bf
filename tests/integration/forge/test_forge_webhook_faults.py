"""Webhook delivery faults (drop, duplicate, reorder), redelivery, and API fault injection."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from github import Auth, Github, GithubException

from trunkline.forge.testing import ForgeHandle, WebhookReceiver, default_spec, running_forge


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def forge(receiver: WebhookReceiver) -> Iterator[ForgeHandle]:
    with running_forge(default_spec(webhook_url=receiver.url)) as handle:
        handle.wait_idle()
        yield handle


def open_issue(forge: ForgeHandle, title: str) -> None:
    httpx.post(
        f"{forge.api_url}/repos/alice/demo/issues",
        headers={"Authorization": f"token {forge.token('bob')}"},
        json={"title": title},
    ).raise_for_status()


def titles(receiver: WebhookReceiver) -> list[str]:
    return [h.payload()["issue"]["title"] for h in receiver.snapshot() if h.event == "issues"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("drop", ["b", "c"]),
        ("duplicate", ["a", "a", "b", "c"]),
        ("reorder", ["b", "a", "c"]),
    ],
)
def test_delivery_faults(
    forge: ForgeHandle, receiver: WebhookReceiver, mode: str, expected: list[str]
) -> None:
    forge.admin("POST", "webhook-faults", {"mode": mode, "count": 1})
    for title in ("a", "b", "c"):
        open_issue(forge, title)
    forge.wait_idle()
    assert titles(receiver) == expected


def test_redelivery_resends_the_same_delivery(
    forge: ForgeHandle, receiver: WebhookReceiver
) -> None:
    open_issue(forge, "again")
    forge.wait_idle()
    first = next(d for d in forge.deliveries() if d["event"] == "issues")
    assert first["status"] == "delivered"
    forge.admin("POST", f"deliveries/{first['id']}/redeliver")
    forge.wait_idle()
    hooks = [h for h in receiver.snapshot() if h.event == "issues"]
    assert len(hooks) == 2
    assert hooks[0].delivery == hooks[1].delivery
    assert hooks[0].body == hooks[1].body


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("rate_limit", 429, "API rate limit exceeded"),
        ("secondary", 403, "You have exceeded a secondary rate limit"),
    ],
)
def test_injected_rate_limits_carry_retry_after(
    forge: ForgeHandle, kind: str, status: int, message: str
) -> None:
    forge.admin("POST", "faults", {"kind": kind, "count": 1, "retry_after": 7})
    headers = {"Authorization": f"token {forge.token('bob')}"}
    limited = httpx.get(f"{forge.api_url}/repos/alice/demo", headers=headers)
    assert limited.status_code == status
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["message"].startswith(message)
    ok = httpx.get(f"{forge.api_url}/repos/alice/demo", headers=headers)
    assert ok.status_code == 200
    assert int(ok.headers["x-ratelimit-remaining"]) < int(ok.headers["x-ratelimit-limit"])


def test_pygithub_sees_the_injected_error(forge: ForgeHandle) -> None:
    forge.admin("POST", "faults", {"kind": "error", "status": 502, "count": 1})
    gh = Github(
        base_url=forge.api_url,
        auth=Auth.Token(forge.token("bob")),
        retry=0,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    with pytest.raises(GithubException) as failed:
        gh.get_repo("alice/demo")
    assert failed.value.status == 502
    assert gh.get_repo("alice/demo").full_name == "alice/demo"


def test_failed_deliveries_are_retried_then_logged_as_failed() -> None:
    with (
        WebhookReceiver(status=500) as failing,
        running_forge(default_spec(webhook_url=failing.url)) as forge,
    ):
        open_issue(forge, "unlucky")
        forge.wait_idle()
        delivery = next(d for d in forge.deliveries() if d["event"] == "issues")
        assert (delivery["status"], delivery["status_code"]) == ("failed", 500)
        assert delivery["attempts"] == 4
        assert len([h for h in failing.snapshot() if h.event == "issues"]) == 4
