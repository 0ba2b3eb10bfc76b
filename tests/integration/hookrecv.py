"""A real HTTP receiver for durable consumers' deliveries, for the tests of roost.hooks.

It answers every POST (2xx, or 500 while ``failing``), records each request's raw body and headers, and
checks the signatures afterwards, when the test knows every consumer's secret (a delivery can arrive before
the answer that creates the consumer has been read). It listens on a fixed port, so it can be stopped and
started again where Roost delivers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from roost.chaos.infra import free_port
from roost.hooks.signing import verify


@dataclass(frozen=True)
class Got:
    """One request the receiver answered."""

    consumer: str
    room: str
    seq: int
    event: str
    body: bytes
    headers: dict[str, str]
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    delay_s: float = 0.0
    """Each answer takes this long (a receiver that is slow: a delivery is in flight most of the time)."""
    failing: bool = False
    port: int = field(default_factory=free_port)
    requests: list[Got] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        data = json.loads(body)
        status = 500 if self.failing else 200
        if status == 200 and self.delay_s:
            await asyncio.sleep(self.delay_s)  # the subject: a receiver that takes its time
        got = Got(
            request.headers.get("Roost-Consumer", ""),
            data["room"],
            data["seq"],
            data["event"],
            body,
            dict(request.headers),
            status,
        )
        self.requests.append(got)
        return web.Response(status=status, text="ok" if status == 200 else "failing")

    def accepted(self, consumer: str | None = None) -> list[Got]:
        """The deliveries answered 2xx, in arrival order."""
        return [g for g in self.requests if g.status == 200 and consumer in (None, g.consumer)]

    def delivered(self, consumer: str | None = None) -> set[tuple[str, int]]:
        return {(g.room, g.seq) for g in self.accepted(consumer)}

    def unsigned(self, secrets: dict[str, str]) -> list[Got]:
        """Requests whose ``Roost-Signature`` is not valid for their consumer's secret (or that name no known
        consumer), or whose ``Roost-Event-Id`` is not their ``(room, seq)``."""
        return [
            g
            for g in self.requests
            if not verify(secrets.get(g.consumer, "\0"), g.headers.get("Roost-Signature", ""), g.body)
            or g.headers.get("Roost-Event-Id") != f"{g.room}:{g.seq}"
            or g.payload["consumer"] != g.consumer
        ]
