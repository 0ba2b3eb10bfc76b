"""Starting while an engine is not there yet: listen at once, say so, keep trying.

An orchestrator that starts a node before its broker (or restarts it while the broker is down) needs
the port open with ``/livez`` answering, ``/readyz`` failing with the cause, and SIGTERM honoured; and an
operator needs one log line per attempt, not one every 200 ms. Until the engines answer, the node
serves only that; then it swaps in the real application on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import msgspec
from aiohttp import web

from .gateway.connections import LISTEN_BACKLOG, ConnectionGuard, GuardedSite
from .protocol.codes import Code
from .protocol.errors import Unavailable

__all__ = ["StartingSite", "open_with_retry"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_json: Final = msgspec.json.Encoder()


class StartingSite:
    def __init__(self, host: str, port: int, guard: ConnectionGuard, sock: socket.socket | None = None) -> None:
        self.host = host
        self.port = port
        self.guard = guard
        """The node's connection limits hold while it starts too (the engines may be away for long)."""
        self.sock = sock
        """A listening socket the node was handed (a worker: roost/workers/), else None: bind ``host:port``."""
        self.cause = "starting"
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; return the port (the one the OS picked when ``port`` is 0)."""
        app = web.Application(middlewares=[self.guard.middleware])
        app.add_routes(
            [web.get("/livez", self._live), web.get("/healthz", self._live), web.get("/readyz", self._ready)]
        )
        app.router.add_route("*", "/{tail:.*}", self._unavailable)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # On a handed socket, the socket's own backlog: listen() again with 128 would shrink the queue every worker
        # shares, while this one starts (after a crash, when clients reconnect at once).
        backlog = LISTEN_BACKLOG if self.sock is not None else 128
        site = GuardedSite(self._runner, self.guard, self.host, self.port, backlog=backlog, sock=self.sock)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _live(self, request: web.Request) -> web.Response:
        return web.Response(body=_json.encode({"status": "ok"}), content_type="application/json")

    async def _ready(self, request: web.Request) -> web.Response:
        body = {"ready": False, "starting": self.cause, "draining": False, "shedding": False, "checks": {}}
        return web.Response(body=_json.encode(body), status=503, content_type="application/json")

    async def _unavailable(self, request: web.Request) -> web.Response:
        error = {"code": int(Code.NODE_UNREADY), "reason": f"this node is starting: {self.cause}"}
        return web.Response(body=_json.encode({"error": error}), status=503, content_type="application/json")


async def open_with_retry(
    open_engines: Callable[[], Awaitable[T]], site: StartingSite, initial_s: float = 0.5, max_s: float = 10.0
) -> T:
    """``open_engines()`` until it works: capped exponential backoff, one log line per failed attempt.
    Only ``Unavailable`` is retried; a mistake in the settings (``UsageError``) ends the start at once."""
    delay = initial_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await open_engines()
        except Unavailable as exc:
            site.cause = f"waiting for the engines (attempt {attempt}): {exc.reason}"
            log.warning(
                "startup: the engines do not answer (attempt %d, next in %.1f s): %s", attempt, delay, exc.reason
            )
        await asyncio.sleep(delay)
        delay = min(max_s, delay * 2)
