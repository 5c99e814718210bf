"""The dashboard in a real Chromium (Playwright driving Debian's system browser).

Serves the dashboard with a real uvicorn on loopback over a real SQLite store, opens the
overview, follows a work item link, inserts a timeline row into the store and waits for it to
appear without a reload (server-sent events), checks landmarks and labels, and saves
screenshots into test-artifacts/ (kept by CI). Never downloads a browser.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chromium_browser import WAIT_MS, expect, launched_chromium, screenshot

from trunkline.clock import SystemClock
from trunkline.settings import load_settings
from trunkline.store.testing import migrated_engine
from trunkline.web.app import create_dashboard_app
from trunkline.web.testing import (
    add_agent_run,
    add_event,
    add_work_item,
    seed_store,
    serve_in_thread,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'dashboard.db'}")
    seeded = seed_store(engine, datetime.now(UTC) - timedelta(minutes=1))
    app = create_dashboard_app(
        engine, load_settings(daily_budget_usd=5.0), SystemClock(), poll_seconds=0.25
    )
    try:
        with serve_in_thread(app) as url:
            yield url, engine, seeded
    finally:
        engine.dispose()


def test_overview_item_and_live_timeline_entry(browser: Any, served: tuple[str, Any, Any]) -> None:
    url, engine, seeded = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    # Content-Security-Policy violations and script errors surface as console errors.
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url + "/", wait_until="domcontentloaded", timeout=WAIT_MS)
        assert page.title() == "Overview · trunkline"
        # The hostile title is shown as text, never run as markup.
        assert page.locator("text=<script>").count() >= 1
        assert page.locator("img[src=x]").count() == 0
        expect(page.locator("#live-status")).to_contain_text("Live updates: on", timeout=WAIT_MS)
        # New work shows up on the overview without a reload: the activity feed gets the
        # entry, and the counts and tables are refreshed after it.
        new_item = add_work_item(
            engine, "acme/web", 5, "executing", "Live arrival", datetime.now(UTC)
        )
        add_event(
            engine,
            work_item_id=new_item,
            repo="acme/web",
            kind="transition",
            from_state="waiting_for_locks",
            to_state="executing",
            at=datetime.now(UTC),
        )
        page.locator("#timeline > li", has_text="waiting_for_locks → executing").first.wait_for(
            timeout=WAIT_MS
        )
        page.locator("#items a.item-link", has_text="#5").wait_for(timeout=WAIT_MS)
        assert "Live arrival" in page.locator("#items").inner_text()
        screenshot(page, "dashboard-overview.png")

        page.locator("a.item-link", has_text="#12").first.click()
        page.wait_for_url("**/items/acme/api/12", timeout=WAIT_MS)
        heading = page.get_by_role("heading", level=1)
        assert "acme/api#12" in heading.inner_text()
        expect(page.locator("#live-status")).to_contain_text("Live updates: on", timeout=WAIT_MS)
        before = page.locator("#timeline > li").count()

        item = seeded.item_ids["reviewing"]
        add_event(
            engine,
            work_item_id=item,
            repo="acme/api",
            kind="gate",
            at=datetime.now(UTC),
            message="held: live entry <b>arrives</b>",
            data={"gate": "review", "state": "held"},
        )
        entry = page.locator("#timeline > li", has_text="live entry <b>arrives</b>")
        entry.wait_for(state="visible", timeout=WAIT_MS)
        add_agent_run(
            engine,
            work_item_id=item,
            role="executor",
            model="claude-sonnet-4-5",
            at=datetime.now(UTC),
            steps=[{"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.001}],
        )
        page.locator("#timeline > li", has_text="executor step 1").wait_for(timeout=WAIT_MS)
        assert page.locator("#timeline > li").count() == before + 2
        # No reload happened: the first load's navigation entry is still the only one.
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        # The summary, plan and review are refreshed too; the timeline keeps its live entries.
        expect(page.locator("#summary")).to_contain_text("$0.1486", timeout=WAIT_MS)
        assert page.locator("#timeline > li").count() == before + 2
        shot = screenshot(page, "dashboard-work-item.png")
        assert shot.stat().st_size > 10_000
        assert dialogs == []
        assert errors == []
    finally:
        page.close()


def test_landmarks_labels_and_keyboard(browser: Any, served: tuple[str, Any, Any]) -> None:
    url, _, _ = served
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page.goto(url + "/items/acme/api/12", wait_until="domcontentloaded", timeout=WAIT_MS)
        assert page.get_by_role("banner").count() == 1
        assert page.get_by_role("navigation", name="Main").count() == 1
        assert page.get_by_role("main").count() == 1
        assert page.get_by_role("contentinfo").count() == 1
        levels = page.evaluate(
            "[...document.querySelectorAll('h1,h2,h3')].map(h => Number(h.tagName[1]))"
        )
        assert levels[0] == 1
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels))
        timeline = page.locator("#timeline")
        assert timeline.get_attribute("aria-live") == "polite"
        # Every image/button/input would need a label; links need text.
        unnamed = page.evaluate(
            "[...document.querySelectorAll('a')].filter(a => !a.textContent.trim()).length"
        )
        assert unnamed == 0
        # The first Tab reaches the skip link, and it moves focus to main.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        page.keyboard.press("Enter")
        expect(page.locator("#main")).to_be_focused(timeout=WAIT_MS)
        # Readable on a phone: nothing wider than the viewport.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        screenshot(page, "dashboard-work-item-phone.png")
    finally:
        page.close()
