"""roost.js's protocol semantics against a scripted fake server (tests/browser/client_semantics.js):
cursors, dedupe and gap filling, the outbox across reconnects and reloads, 4429/4413/4410/4403/4401,
backoff. Deterministic and fast; test_web.py covers the same paths end to end against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..integration.procs import ServerProcess

SCRIPT = (Path(__file__).parent / "client_semantics.js").read_text(encoding="utf-8")


async def test_client_semantics(server: ServerProcess, browser: Any) -> None:
    page = await (await browser.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(server.url + "/roost.css")  # any page of the origin, to import /roost.js from
    try:
        checks = await asyncio.wait_for(page.evaluate(SCRIPT), 30)
    except TimeoutError:
        done = await page.evaluate("window.__roostChecks")
        raise AssertionError(f"the script stalled after {done[-1][0] if done else 'the start'}") from None
    failed = [f"{name}: {detail}" for name, ok, detail in checks if not ok]
    assert not failed, "\n".join(failed)
    assert len(checks) >= 40 and not errors
