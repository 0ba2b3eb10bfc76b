"""Clickjacking: no other site may frame the page (issue #17: a page on another port framed the
signed-in page, because the CSP was only a ``<meta>`` tag, where ``frame-ancestors`` is ignored)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from roost.chaos.infra import free_port
from roost.gateway.headers import SECURITY_HEADERS

from ..integration.procs import ServerProcess


async def test_every_answer_carries_the_security_headers(server: ServerProcess) -> None:
    """[R-SEC-11] The policy and the framing headers are on pages, scripts, the API, health and errors alike."""
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/roost.js", "/roost.css", "/healthz", "/api/rooms", "/no-such-page"):
            async with http.get(server.url + path) as answer:
                for name, value in SECURITY_HEADERS.items():
                    assert answer.headers.get(name) == value, (path, name, answer.headers.get(name))
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


async def test_a_page_of_another_origin_cannot_frame_roost(server: ServerProcess, browser: Any) -> None:
    """[R-SEC-11] Chromium refuses to show the page inside another origin's frame."""
    async def framing_page(request: web.Request) -> web.Response:
        html = f'<!doctype html><iframe id="f" src="{server.url}/" width="600" height="400"></iframe>'
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", framing_page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        page = await (await browser.new_context()).new_page()
        blocked: list[str] = []
        page.on("console", lambda message: blocked.append(message.text))
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.wait_for_timeout(1000)  # the frame's navigation is refused or loads within this time
        frame = next(f for f in page.frames if f is not page.main_frame)
        # A refused frame shows the browser's error page: none of Roost's page (its login form) is there.
        assert await frame.query_selector("input") is None, frame.url
        assert any("frame-ancestors" in text or "X-Frame-Options" in text for text in blocked), blocked
    finally:
        await runner.cleanup()
