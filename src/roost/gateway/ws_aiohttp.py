"""The WebSocket endpoint on aiohttp: ``/ws`` on the HTTP port (``--ws-transport aiohttp``, the default).

Thin: the upgrade, its refusals, the subprotocol (the encoding: ``roost.protocol.encoding``), permessage-deflate
when enabled (``ws_compression``), and the framing; the connection's life is ``WebSocketEndpoint.run``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Final

from aiohttp import WSMsgType, web

from ..protocol.encoding import BY_SUBPROTOCOL, JSON, SUBPROTOCOLS
from .connections import ConnectionGuard
from .deflate import MAX_WINDOW_BITS, narrow
from .websocket import BINARY, END, TEXT, WebSocketEndpoint

__all__ = ["AiohttpDeflateSocket", "AiohttpSocket", "AiohttpWebSocket"]

_LEN1: Final = struct.Struct("!BB").pack
_LEN2: Final = struct.Struct("!BBH").pack
_LEN3: Final = struct.Struct("!BBQ").pack

SOCKET_ROOM: Final = 64 * 1024
"""Bytes the socket's user-space buffer may hold before frames wait in the session's outbox instead."""

UNREAD_GRACE_S: Final = 0.2
"""After an unread close frame has left, a moment for the client to read it before the reset."""


class AiohttpSocket:
    """The endpoint's view of one aiohttp WebSocket.

    ``try_write`` frames the payload itself and hands it to the asyncio transport in one call: one
    unmasked text frame (binary for MessagePack), the same bytes aiohttp would write, without a coroutine or a
    task switch per frame. Every write is a whole frame, so it never interleaves with aiohttp's own pings and
    closes.
    """

    __slots__ = ("close_timeout_s", "guard", "kind", "opcode", "raw", "request", "ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        close_timeout_s: float,
        guard: ConnectionGuard | None,
        binary: bool = False,
    ) -> None:
        self.ws = ws
        self.request = request
        self.raw = request.transport
        self.close_timeout_s = close_timeout_s
        self.guard = guard
        self.kind = WSMsgType.BINARY if binary else WSMsgType.TEXT
        self.opcode = 0x82 if binary else 0x81
        """The first byte of a final data frame: FIN and the opcode (text 1, binary 2)."""

    def try_write(self, data: bytes) -> bool:
        raw = self.raw
        if raw is None or self.ws.closed or raw.is_closing() or raw.get_write_buffer_size() > SOCKET_ROOM:
            return False
        n = len(data)
        first = self.opcode
        if n < 126:
            header = _LEN1(first, n)
        elif n < 65536:
            header = _LEN2(first, 126, n)
        else:
            header = _LEN3(first, 127, n)
        raw.write(header + data)
        return True

    async def send(self, data: bytes) -> None:
        await self.ws.send_frame(data, self.kind)

    async def receive(self, within_s: float | None = None) -> tuple[int, str | bytes]:
        msg = await self.ws.receive(timeout=within_s)
        if msg.type is WSMsgType.TEXT:
            return TEXT, msg.data
        if msg.type is WSMsgType.BINARY:
            return BINARY, msg.data
        return END, ""

    def authenticated(self) -> None:
        if self.guard is not None:
            self.guard.authenticated(self.request)

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def close(self, code: int, reason: str, *, unread: bool = False) -> None:
        """The close frame goes behind everything already in the socket's buffers, so a client that does
        not read never gets it: after ``close_timeout_s`` the connection is aborted instead. The close is
        waited for, never cancelled (a cancelled drain would cancel every other writer's drain too); the
        abort ends it. ``unread``: see ``close_unread``."""
        if unread:
            await self.close_unread(code, reason)
            return
        closing = asyncio.ensure_future(self.ws.close(code=code, message=reason.encode()[:120]))
        closing.add_done_callback(_consume)
        done, _ = await asyncio.wait({closing}, timeout=self.close_timeout_s)
        if not done:
            self.abort()

    async def close_unread(self, code: int, reason: str) -> None:
        """Write the close frame and abort once the socket has taken it (within ``close_timeout_s``), reading
        nothing: aiohttp's own close reads until the client's close frame, which behind a flood is the
        whole backlog the client managed to write, parsed at full speed."""
        raw = self.raw
        if raw is None or self.ws.closed or raw.is_closing():
            self.abort()
            return
        payload = struct.pack("!H", code) + reason.encode()[:120]
        raw.write(_LEN1(0x88, len(payload)) + payload)
        await drain_then_abort(raw, self.close_timeout_s)

    def abort(self) -> None:
        """Drop what is unsent and reset the TCP connection (the client sees it end without a close frame)."""
        if self.raw is not None:
            self.raw.abort()

    def abort_if_stuck(self) -> None:
        """Called ``close_timeout_s`` after the connection ended: a socket still holding unsent bytes
        (a heartbeat failure closes without a bound) is aborted, so nothing outlives the bound."""
        if self.raw is not None and self.raw.get_write_buffer_size():
            self.raw.abort()


class AiohttpDeflateSocket(AiohttpSocket):
    """A connection that negotiated permessage-deflate: every data frame goes through aiohttp's writer, which
    owns the connection's one compressor (with context takeover each frame depends on the ones before, so no
    frame may bypass it). A backlog of frames still leaves as one packed message per write."""

    __slots__ = ()

    def try_write(self, data: bytes) -> bool:
        return False


async def drain_then_abort(raw: asyncio.WriteTransport, close_timeout_s: float) -> None:
    """Wait (within ``close_timeout_s``) until the socket has taken what was written, give the client
    ``UNREAD_GRACE_S`` to read it, then reset the connection."""
    deadline = time.monotonic() + close_timeout_s
    # The transport has no event for "buffer empty" that the library does not own (its drain waiter): poll.
    while raw.get_write_buffer_size() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    # A moment for the client to read the close frame before the reset, which may discard it.
    await asyncio.sleep(min(UNREAD_GRACE_S, max(0.0, deadline - time.monotonic())))
    raw.abort()


def _consume(task: asyncio.Future[bool]) -> None:
    """A close that ended with an error (the connection was lost or aborted) is done all the same."""
    if not task.cancelled():
        task.exception()


class AiohttpWebSocket:
    """``GET /ws`` on the HTTP port; the Host check is the app's middleware, the guard's too.

    The subprotocol: the first the client offers of ``SUBPROTOCOLS`` (aiohttp's choice), else none and JSON
    (R-WIRE-9). ``deflate``: permessage-deflate for a client that offers it (R-WIRE-12), with a window of at most
    ``window_bits`` and at most what the client's offer allows (``deflate.narrow``)."""

    def __init__(
        self,
        endpoint: WebSocketEndpoint,
        guard: ConnectionGuard | None,
        deflate: bool = False,
        window_bits: int = MAX_WINDOW_BITS,
    ) -> None:
        self.endpoint = endpoint
        self.guard = guard
        self.deflate = deflate
        self.window_bits = window_bits

    async def handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = self.endpoint
        forwarded = request.headers.get("X-Forwarded-Proto")
        own = [f"{request.scheme}://{request.host}"]
        if forwarded is not None:
            own.append(f"{forwarded}://{request.host}")
        refused = endpoint.refusal(request.headers.get("Origin"), own)
        if refused is not None:
            return web.Response(status=refused.status, body=refused.body, content_type="application/json")
        limits = endpoint.limits
        # aiohttp refuses a message of max_msg_size bytes itself: + 1 makes its limit "over 4 x max_frame_bytes",
        # as documented (R-WIRE-7) and as the picows server counts.
        ws = web.WebSocketResponse(
            heartbeat=limits.heartbeat_s,
            max_msg_size=limits.max_frame_bytes * 4 + 1,
            compress=self.deflate,
            protocols=SUBPROTOCOLS,
        )
        offer = request.headers.get("Sec-WebSocket-Extensions") if self.deflate else None
        if offer and self.window_bits < MAX_WINDOW_BITS:
            headers = request.headers.copy()
            headers["Sec-WebSocket-Extensions"] = narrow(offer, self.window_bits)
            await ws.prepare(request.clone(headers=headers))  # the same connection, negotiated on the narrowed offer
        else:
            await ws.prepare(request)
        codec = BY_SUBPROTOCOL.get(ws.ws_protocol or "", JSON)
        kind = AiohttpDeflateSocket if ws.compress else AiohttpSocket
        socket = kind(ws, request, limits.close_timeout_s, self.guard, codec.binary)
        await endpoint.run(socket, request.query.get("token"), codec)
        return ws
