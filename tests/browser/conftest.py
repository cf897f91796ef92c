"""Browser-test fixtures: the console service as a real process in front of the real services, and
a headless Chromium driven by Playwright.

Chromium: `$NERVEWATCH_CHROMIUM`, else `/usr/bin/chromium`, else a Playwright-managed one if
installed. None found (or Playwright missing): every browser test is skipped with a loud reason,
except under `CI=true`, where they fail. On a failing test the page's screenshot is written to
`$NERVEWATCH_TEST_LOG_DIR` (or a temporary folder) and its path printed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Services
from tooling.browser import CHROMIUM_ARGS, find_chromium
from tooling.devstack import free_port
from tooling.supervisor import spawn_service, stop_process, wait_ready


def _skip_or_fail(reason: str) -> None:
    message = f"BROWSER TESTS NOT RUN: {reason}"
    print(f"\n*** {message} ***", file=sys.stderr)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true requires them)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        import playwright  # noqa: F401
    except ImportError:
        _skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    path, reason = find_chromium()
    if path is None:
        _skip_or_fail(reason)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def console_url(services: Services, chromium_path: str) -> Iterator[str]:
    """The console service (a real `nervewatch serve console` process) proxying to `services`."""
    port = free_port()
    env = dict(services.env, NERVEWATCH_CONSOLE_PORT=str(port))
    proc = spawn_service("console", env, services.log_dir / "console.log")
    try:
        wait_ready([f"http://127.0.0.1:{port}/readyz"], 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, timeout_s=10)


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


def screenshot_dir() -> Path:
    keep = os.environ.get("NERVEWATCH_TEST_LOG_DIR")
    path = Path(keep) if keep else Path(tempfile.gettempdir()) / "nervewatch-browser-failures"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh browser context and page per test (nothing shared: no storage, no session)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    pg = await context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            shot = screenshot_dir() / f"{request.node.name}.png"
            try:
                await pg.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failing page: {shot}", file=sys.stderr)
                request.node.add_report_section("call", "screenshot", str(shot))
            except Exception as exc:
                print(f"\nno screenshot ({type(exc).__name__})", file=sys.stderr)
            if errors:
                print("page errors:\n" + "\n".join(errors), file=sys.stderr)
        await context.close()
