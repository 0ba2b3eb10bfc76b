"""A scripted WebSocket peer for client tests: the states a correct server never produces (a gap on the
live stream, a refusal at a chosen moment) are reached by a handler that plays the server's part."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from roost.chaos.infra import free_port

Handler = Callable[[web.Request], Awaitable[web.WebSocketResponse]]


@asynccontextmanager
async def scripted_peer(handler: Handler, pages: str | None = None) -> AsyncIterator[str]:
    """Serve ``handler`` at ``/ws`` on a free loopback port; yields the URL a client connects to. With
    ``pages`` (a server's base URL), every other GET is fetched from there, headers included, so a browser
    page loaded from this origin may open this ``/ws`` under the server's Content-Security-Policy."""
    app = web.Application()
    app.router.add_get("/ws", handler)
    if pages is not None:
        app.router.add_get("/{path:.*}", _forwarder(pages))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


def _forwarder(base: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def forward(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.get(base + request.path_qs) as resp:
            headers = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")
            }
            return web.Response(body=await resp.read(), status=resp.status, headers=headers)

    return forward


@asynccontextmanager
async def dropping_relay(
    upstream: str, drop: Callable[[dict[str, Any]], bool], requests: list[dict[str, Any]], pages: str | None = None
) -> AsyncIterator[str]:
    """A WebSocket relay to a real server that drops the server's frames ``drop`` picks (a lost live message,
    which a correct server never produces on one subscription) and records every client frame in
    ``requests``. Each client connection gets its own upstream connection; a close is passed on with its
    code. ``pages`` as for ``scripted_peer``. Yields the URL a client connects to."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
        await sock.prepare(request)
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(upstream, max_msg_size=64 * 1024 * 1024) as up,
        ):

            async def down() -> None:
                async for msg in up:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    kept = [part for part in msg.data.split("\n") if part and not drop(json.loads(part))]
                    if kept:
                        await sock.send_str("\n".join(kept))
                await sock.close(code=up.close_code or 1000)

            task = asyncio.create_task(down())
            async for msg in sock:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                requests.append(json.loads(msg.data))
                await up.send_str(msg.data)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return sock

    async with scripted_peer(handler, pages) as url:
        yield url
