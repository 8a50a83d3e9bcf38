"""Debian's Chromium for the browser tests (Playwright drives it; Playwright's own browser
downloads are never used). `make browser` installs it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def find_chromium() -> Path:
    """The browser, or a skip with a loud reason (a failure under CI=true)."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: `make browser` installs it (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)
