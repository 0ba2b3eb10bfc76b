"""Browser tests: Playwright for Python driving Debian's chromium (``apt-get install chromium``).

``playwright install`` is never needed: the browser is /usr/bin/chromium (``ROOST_CHROMIUM`` overrides).
``make test`` installs both (scripts/ensure-services.sh, the dev extra); without them these tests fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ..integration.procs import ServerProcess

CHROMIUM = os.environ.get("ROOST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A real ``roost serve`` (embedded default, development login on) in its own data directory."""
    proc = ServerProcess(tmp_path / "data")
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
