"""Headless Chromium for the console's browser tests, screenshots and timings.

`find_chromium` looks at `$NERVEWATCH_CHROMIUM`, then `/usr/bin/chromium` (Debian's package, what
`.ci/run` installs), then `chromium` on PATH, then a Playwright-managed browser if one is installed
(this project never runs `playwright install`). `CHROMIUM_ARGS` are the launch flags everywhere.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def find_chromium() -> tuple[str | None, str]:
    """(executable path, where it came from), or (None, why none was found). Does not launch it.

    Blocking: may start Playwright's driver briefly to ask for its managed browser; call it
    outside a running asyncio loop."""
    configured = os.environ.get("NERVEWATCH_CHROMIUM")
    if configured:
        if Path(configured).is_file():
            return configured, f"NERVEWATCH_CHROMIUM={configured}"
        return None, f"NERVEWATCH_CHROMIUM={configured} does not exist"
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium", "/usr/bin/chromium"
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found, found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            managed = p.chromium.executable_path
    except Exception as exc:  # no Playwright, or its driver cannot start
        return None, f"no Chromium at /usr/bin/chromium or on PATH, none Playwright-managed ({type(exc).__name__})"
    if managed and Path(managed).is_file():
        return managed, f"Playwright-managed {managed}"
    return None, "no Chromium at /usr/bin/chromium or on PATH, and none Playwright-managed"
