"""Fixtures for the browser tests: the example shop served on a free port, a real headless
Chromium driven by Playwright, and screenshots kept in ``test-artifacts/``.

Chromium is Debian's (``apt-get install chromium``), not one downloaded by Playwright;
without it every browser test skips and says so.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from support import PAGE_TIMEOUT_MS
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Per try of one screenshot (Shots.take): a page that renders answers in well under a second.
SHOT_TIMEOUT_MS = 20_000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"No Chromium at {CHROMIUM}: install it with 'apt-get install chromium'")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: pip install playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The example shop over real HTTP, one thread per request (the window polls)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(chromium: object, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh browser tab at 1280 px, failing the test on any script error (CSP too)."""
    # Reduced motion, as an owner who asked their system for it: no bar moves between
    # the window's redraws. Chromium without a GPU lays out and repaints each frame of a
    # moving bar: that was 6 of the export-window test's 7 core-seconds of waiting for
    # the end of its run. What the tests read (text, attributes, the final width) is the
    # same either way.
    context = chromium.new_context(  # type: ignore[attr-defined]
        viewport={"width": 1280, "height": 900}, locale="en-US", reduced_motion="reduce"
    )
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: object) -> None:
        # HTTP errors are part of the tests (403, 422...); script errors are not.
        text = msg.text  # type: ignore[attr-defined]
        if msg.type == "error" and not text.startswith("Failed to load resource"):  # type: ignore[attr-defined]
            errors.append(text)

    tab.on("console", on_console)
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    yield tab
    context.close()
    assert errors == [], f"the page reported errors: {errors}"


class Shots:
    """Numbered screenshots of one test in ``test-artifacts/<test name>/``.

    A screenshot is a record for a person to look at, not a check: the test's assertions
    and its next steps on the page are. Chromium on a loaded machine sometimes fails to
    deliver one, answering "Unable to capture screenshot" or never answering (seen in CI,
    2026-11-26: still nothing 60 s after "fonts loaded"). So each is
    given SHOT_TIMEOUT_MS and tried twice; a screenshot that fails twice leaves, in its
    place, a ``.missing.txt`` saying why, and the test goes on.
    """

    def __init__(self, name: str) -> None:
        self.dir = ARTIFACTS / re.sub(r"[^\w.-]+", "_", name)
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in [*self.dir.glob("*.png"), *self.dir.glob("*.missing.txt")]:
            old.unlink()
        self.count = 0

    def take(self, page: object, label: str, full_page: bool = False) -> Path:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.count += 1
        path = self.dir / f"{self.count:02d}-{label}.png"
        failures = []
        for _ in range(2):
            try:
                page.screenshot(path=str(path), full_page=full_page, timeout=SHOT_TIMEOUT_MS)  # type: ignore[attr-defined]
                return path
            except PlaywrightError as exc:
                timed_out = isinstance(exc, PlaywrightTimeout)
                if not timed_out and "Unable to capture screenshot" not in str(exc):
                    raise
                failures.append(str(exc).splitlines()[0])
        path.with_suffix(".missing.txt").write_text(
            "Chromium did not deliver this screenshot:\n" + "\n".join(failures) + "\n"
        )
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)
