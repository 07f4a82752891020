"""The browser tier: real headless Chromium (Debian's `chromium` package), driven by Playwright for Python.

Playwright never downloads a browser here: it launches the Chromium found on PATH (or at $CHROMIUM). Without one the
whole tier is skipped for one reason, which `make test` prints as a single line; in CI (CI=true), where `.ci/run`
installs Chromium first, a missing Chromium fails instead, so CI cannot skip the tier quietly.

- `browser`: one Chromium for the session, with a fresh profile (Playwright's own temporary user-data dir, removed
  when it closes).
- `page`: a new browser context per test (its own cache and CORS preflight cache) and a page in it, screenshotted to
  test-artifacts/browser/<test>.png when the test ends, passed or failed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.support import ARTIFACTS, screenshot, screenshots_taken
from tests.support import ROOT

# Headless, without the sandbox (containers and CI runners often lack the namespaces it needs) or a GPU. Left alone,
# Chromium also connects by itself to Google's services (component updates, sync, field trials): off, and QUIC too,
# so that the browser opens only the connections the pages ask for and runs the same on a machine without internet.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
# An answer the tests wait for comes in well under a second: fail fast rather than after Playwright's 30 s.
TIMEOUT_MS = 10_000


NO_CHROMIUM = "browser tier: no Chromium found (Debian: apt-get install chromium; or set CHROMIUM to one)"


def find_chromium() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium")


@pytest.fixture(scope="session", autouse=True)
def chromium() -> str:
    """The Chromium executable; the tier's single skip reason when there is none."""
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{NO_CHROMIUM}; .ci/run installs it, so CI never skips this tier")
        pytest.skip(NO_CHROMIUM)
    return executable


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    """Every test the missing Chromium skips is reported at one place, so the summary folds them into one line."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2] == f"Skipped: {NO_CHROMIUM}":
        report.longrepr = (__file__, find_chromium.__code__.co_firstlineno, report.longrepr[2])
    return report


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    for stale in ARTIFACTS.glob("*.png"):  # this run's screenshots only
        stale.unlink()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    try:
        screenshot(opened, request.node.name, full_page=False)
    finally:
        context.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if screenshots_taken:
        where = ARTIFACTS.relative_to(ROOT)
        terminalreporter.write_line(f"browser tier: {len(screenshots_taken)} screenshots in {where}/")
