"""The system Chromium for browser tests: Playwright drives Debian's package, never a download.

Shared by the dashboard's browser tests (tests/integration/web/test_web_chromium.py and
tests/acceptance/test_demo_dashboard_chromium.py). Without Chromium or the playwright package
a test skips locally and fails when CI is set (tests/prerequisites.py). Screenshots go to
test-artifacts/ at the repository root, which CI keeps.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prerequisites import REPO_ROOT, need

ARTIFACTS: Path = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 30_000


def require_chromium() -> str:
    """The system Chromium's path; skips locally (fails with CI set) when it or Playwright
    is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    need(path is not None, "the system Chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        need(False, "the playwright Python package")
    assert path is not None
    return path


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """A headless system Chromium (a Playwright `Browser`), closed on exit. Use it from one
    thread only: Playwright's sync API belongs to the thread that started it."""
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot into test-artifacts/NAME."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def expect(locator: Any) -> Any:
    """Playwright's auto-waiting assertions (they poll without evaluating strings, which the
    dashboard's Content-Security-Policy forbids)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def collect_page_errors(page: Any) -> list[str]:
    """Console errors (Content-Security-Policy violations, script errors) and uncaught page
    errors of `page`, appended as they happen."""
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors
