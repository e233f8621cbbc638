"""Browser fixtures for the web pages of Isengard and its plugins (Explorer, slide viewer, image viewer): a headless
Chromium (Debian's, never a downloaded build) driven by Playwright, and pages that fail their test on errors.

A plugin's tests use them through a conftest.py that imports them (as plugins/explorer/tests/conftest.py does).
The browser is module-scoped: Playwright's sync API runs its own event loop, which must be gone before another
module's asyncio tests start theirs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .testing import require_tool

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = require_tool(CHROMIUM, "the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


class PageErrors(list[str]):
    """Uncaught exceptions and Content-Security-Policy violations a page reported."""

    def watch(self, page: Any) -> None:
        page.on("pageerror", lambda error: self.append(str(error)))
        page.on("console", lambda m: self.append(m.text) if "Content Security Policy" in m.text else None)


class Traffic:
    """What a page asked for and what its console reported as errors."""

    def __init__(self, page: Any) -> None:
        self.urls: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)

    def check(self, origin: str) -> None:
        """Nothing was asked of another origin than ``origin`` (the server's URL), no console error."""
        assert all(url.startswith(origin + "/") for url in self.urls), self.urls
        assert not self.console_errors, self.console_errors


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """``browser_page(**context_options)``: a fresh page; the test fails if the page threw or broke the CSP."""
    contexts, errors = [], PageErrors()

    def open_page(**options: Any) -> Any:
        context = chromium.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True, **options)
        contexts.append(context)
        context.set_default_timeout(15_000)
        page = context.new_page()
        errors.watch(page)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, errors


@pytest.fixture
def screenshot(tmp_path: Path) -> Any:
    """``screenshot(page, name)``: into the test's folder, or $EXPLORER_SCREENSHOTS (how the pictures of docs/ are
    made)."""
    folder = Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path)

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take
