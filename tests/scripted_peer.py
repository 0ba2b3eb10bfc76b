"""A scripted WebSocket peer for client tests: the states a correct server never produces (a gap on the
live stream, a refusal at a chosen moment) are reached by a handler that plays the server's part."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from roost.chaos.infra import free_port

Handler = Callable[[web.Request], Awaitable[web.WebSocketResponse]]


@asynccontextmanager
async def scripted_peer(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` at ``/ws`` on a free loopback port; yields the URL a client connects to."""
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()
