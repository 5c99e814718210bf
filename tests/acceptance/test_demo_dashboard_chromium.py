"""Acceptance: the dashboard of a running demo in a real Chromium, updating live.

`run_demo` runs on a thread (the forge, the bot and the scripted agents as real processes);
the bot is `trunkline serve` on loopback, which mounts the dashboard at /dashboard. Playwright
drives the system Chromium on this thread (it never downloads a browser): it opens the
overview while the work items are moving, follows the link of an item that has not ended,
and waits for a timeline entry to arrive through server-sent events, with no reload.
Screenshots go to test-artifacts/ (kept by CI).

Two holds make the test deterministic without timing assumptions:
- the hook holds the demo's people (and only them) until the browser has loaded an item
  page: the risky item #4 cannot merge without the maintainer's approval, so at least one
  item is still open whenever the browser picks one;
- the observer holds the demo's end (the bot stops after it) until the browser is done, so
  the last entry of the item it follows is still streamed.
An item whose page was rendered before it ended gets at least one more entry (its last
transition), so the awaited entry always comes.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from chromium_browser import (
    WAIT_MS,
    collect_page_errors,
    expect,
    launched_chromium,
    require_chromium,
    screenshot,
)
from prerequisites import require_bwrap

from trunkline.demo.runner import DemoControl, DemoOptions, DemoProgress, DemoResult, run_demo
from trunkline.demo.scenario import BUDGET_ISSUE, ISSUES, REFUSED_ISSUE, REPO, RISKY_ISSUE
from trunkline.pipeline.states import TERMINAL

ENDED = {state.value for state in TERMINAL}
HOLD_SECONDS = 180.0  # a hold never outlasts this, so a broken browser cannot hang the demo
ENTRY_WAIT_MS = 180_000  # the followed item's next step (the people act, then the bot)
_SUMMARY_STATE = re.compile(r'id="summary".*?class="state state-([a-z_]+)"', re.DOTALL)
_ENTRY = re.compile(r'<li class="entry ')


class DemoOnAThread:
    """Runs the demo on a thread; its observer and hook report and hold (see the module)."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.dashboard_url = ""
        self.item_page_loaded = threading.Event()  # releases the people
        self.browser_done = threading.Event()  # releases the end of the run
        self.url_known = threading.Event()
        self.ended = threading.Event()
        self.result: DemoResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo", daemon=True)

    def _run(self) -> None:
        try:
            self.result = run_demo(self.options, observer=self, hook=self)
        except BaseException as error:  # reported on the test's thread
            self.error = error
        finally:
            self.ended.set()

    def update(self, progress: DemoProgress) -> None:  # the observer, every tick
        if progress.dashboard_url:
            self.dashboard_url = progress.dashboard_url
            self.url_known.set()
        if progress.finished:
            self.browser_done.wait(HOLD_SECONDS)

    def __call__(self, control: DemoControl) -> None:  # the hook, every tick before the end
        self.item_page_loaded.wait(HOLD_SECONDS)

    def start(self) -> None:
        self._thread.start()

    def wait_for_url(self) -> str:
        deadline = time.monotonic() + HOLD_SECONDS
        while not self.url_known.wait(0.2):
            if self.ended.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"the demo ended before its bot was up: {self.error!r}")
        return self.dashboard_url

    def finish(self) -> DemoResult:
        self.item_page_loaded.set()
        self.browser_done.set()
        self._thread.join(timeout=400)
        assert not self._thread.is_alive(), "the demo did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _rows(page: Any) -> list[tuple[int, str]]:
    """(issue, state) of each work item row the overview shows now."""
    rows = []
    for row in page.locator("#items tbody tr").all():
        link = row.locator("a.item-link").inner_text().strip()
        state = (row.locator("span.state").get_attribute("class") or "").split("state-")[-1]
        rows.append((int(link.lstrip("#")), state))
    return rows


def _follow_an_open_item(page: Any) -> tuple[int, int]:
    """Click the overview's link of an item that has not ended; returns the issue and the
    number of timeline entries its page was rendered with (while it was still open)."""
    tried: list[tuple[int, str]] = []
    while True:
        open_rows = [(n, s) for n, s in _rows(page) if s not in ENDED]
        assert open_rows, f"no open item on the overview (tried {tried})"
        issue = open_rows[0][0]
        link = page.locator("#items").get_by_role("link", name=f"#{issue}", exact=True)
        with page.expect_navigation(timeout=WAIT_MS) as navigation:
            link.click()
        response = navigation.value
        assert response.status == 200
        html = response.text()
        rendered = _SUMMARY_STATE.search(html)
        assert rendered is not None, html[:2000]
        tried.append((issue, rendered.group(1)))
        if rendered.group(1) not in ENDED:
            return issue, len(_ENTRY.findall(html))
        # it ended between the overview and its page: back, and pick another
        page.go_back(wait_until="domcontentloaded", timeout=WAIT_MS)


def test_demo_dashboard_overview_item_and_live_entry_in_chromium(tmp_path: Path) -> None:
    require_bwrap()
    require_chromium()
    demo = DemoOnAThread(DemoOptions(data_dir=tmp_path / "data"))
    demo.start()
    try:
        url = demo.wait_for_url()
        with launched_chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = collect_page_errors(page)
            try:
                _watch(page, demo, url)
                assert errors == []
            finally:
                page.close()
    finally:
        result = demo.finish()
    # holding the people did not change the story
    states = {item.issue: item.state for item in result.items}
    expected = {issue.number: "merged" for issue in ISSUES}
    expected |= {BUDGET_ISSUE: "escalated", REFUSED_ISSUE: "refused"}
    assert states == expected
    assert result.main.linear
    assert result.problems == []


def _watch(page: Any, demo: DemoOnAThread, url: str) -> None:
    overview = page.goto(url, wait_until="domcontentloaded", timeout=WAIT_MS)
    assert overview.status == 200
    assert page.title() == "Overview · trunkline"
    expect(page.locator("#live-status")).to_contain_text("Live updates: on", timeout=WAIT_MS)
    # The items arrive on the open page as the bot takes them up; #4 cannot end yet.
    risky = page.locator("#items").get_by_role("link", name=f"#{RISKY_ISSUE}", exact=True)
    risky.wait_for(timeout=WAIT_MS)
    assert REPO in page.locator("#items").inner_text()
    assert any(state not in ENDED for _, state in _rows(page))  # items still moving
    screenshot(page, "demo-dashboard-overview.png")

    issue, rendered = _follow_an_open_item(page)
    item_url = page.url
    assert item_url.endswith(f"/dashboard/items/{REPO}/{issue}")
    demo.item_page_loaded.set()  # the people may act again
    assert f"{REPO}#{issue}" in page.get_by_role("heading", level=1).inner_text()
    expect(page.locator("#live-status")).to_contain_text("Live updates: on", timeout=WAIT_MS)

    # An entry arrives through server-sent events: the page script appends it (class fresh).
    fresh = page.locator("#timeline > li.fresh")
    fresh.first.wait_for(state="visible", timeout=ENTRY_WAIT_MS)
    total, arrived = page.evaluate(
        "[document.querySelectorAll('#timeline > li').length,"
        " document.querySelectorAll('#timeline > li.fresh').length]"
    )
    assert arrived >= 1
    assert total == rendered + arrived  # appended to what was rendered, nothing duplicated
    assert fresh.first.locator("h3").inner_text().strip()
    # No reload and no navigation: still the one document loaded by following the link.
    assert page.url == item_url
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot = screenshot(page, "demo-dashboard-work-item.png")
    assert shot.stat().st_size > 10_000
    demo.browser_done.set()
