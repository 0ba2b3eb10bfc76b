"""The WebSocket endpoint on picows: ``/ws`` on a port of its own (``--ws-transport picows``, ``--ws-port``).

Thin, like ``ws_aiohttp``: the upgrade and its refusals, the framing, read back-pressure; the connection's
life is ``WebSocketEndpoint.run``. What aiohttp does for the HTTP port is done here by hand, the same way:

* The upgrade callback (``_upgrade``) makes the checks of the HTTP port, with the same answers: the ``Host``
  check (400, ``HostCheck``), the Origin (403) and readiness (503) (``WebSocketEndpoint.refusal``); any other
  path is 404. The page is on the HTTP port, so its origin (the same host name, that port) is the server's own.
  It chooses the subprotocol as aiohttp does (``encoding.negotiate``: the first the client offers that the server
  knows, else none and JSON) and names it in the 101 answer. No extension is negotiated: picows has no
  permessage-deflate, and ``ws_compression = deflate`` with picows does not start.
* The connection guard counts and times every connection of this port too (``buffered_protocol_factory``):
  caps, idle and slow-head timeouts, then the auth timeout; it steps out once the WebSocket is authenticated.
* Frames are delivered by picows in callbacks; the endpoint reads them one at a time (``receive``), and while
  it is not reading (a frame being handled, a budget pause) the socket is not read either (``pause_reading``).
* Fragmented messages are put together; a message over four times ``max_frame_bytes`` closes the
  connection with 1009, text that is not UTF-8 with 1007, a stray continuation with 1002: as aiohttp does.
* Pings: picows answers the client's; it pings an idle connection every ``heartbeat_s`` and closes it when
  no pong comes within half that (aiohttp's ``heartbeat``).

picows's server protocol is built here (``WSProtocol``, as ``picows.ws_create_server`` builds it, version
2.3.1), because the guard has to sit in front of it; on the event loop's own transports (not aiofastnet's),
whose ``pause_reading`` and ``set_protocol`` the guard and the back-pressure rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from socket import socket as ListeningSocket
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.encoding import JSON, Codec, negotiate
from .connections import LISTEN_BACKLOG, ConnectionGuard
from .hosts import HostCheck, host_name
from .websocket import BINARY, END, TEXT, WebSocketEndpoint
from .ws_aiohttp import SOCKET_ROOM, drain_then_abort

__all__ = ["PicowsSocket", "PicowsWebSocket"]

log = logging.getLogger(__name__)

_PICOWS_LOG: Final = logging.getLogger("picows.roost")
_PICOWS_LOG.setLevel(logging.WARNING)
"""picows logs every accepted connection at INFO: kept to its warnings."""

_READ_BUFFER: Final = 2048
"""picows's read buffer at the start (its minimum): it doubles while a message does not fit and keeps the size, so
a busy connection grows its own; an idle one, the many, keeps 2 KiB instead of 16 (bench/conn_memory.py: 35.0
to 21.0 KB of Python heap per idle, subscribed connection)."""
_JSON: Final = {"Content-Type": "application/json"}
_ABNORMAL: Final = 1006


class PicowsSocket(WSListener):
    """One picows WebSocket, as the endpoint sees it (``websocket.Socket``)."""

    def __init__(self, server: PicowsWebSocket, token: str | None, codec: Codec = JSON) -> None:
        self.server = server
        self.token = token
        self.codec = codec
        self.kind = WSMsgType.BINARY if codec.binary else WSMsgType.TEXT
        """The kind of every data frame the server sends on this connection (its encoding's)."""
        self.ws: WSTransport | None = None
        self.raw: asyncio.Transport | None = None
        self.code: int | None = None
        self._queue: deque[tuple[int, str | bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._closing = False
        self._ended = False
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain: asyncio.Future[None] | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_kind = TEXT
        self._fragment_size = 0

    # ---- picows's callbacks --------------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport
        self.raw = transport.underlying_transport
        self.server.opened(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.code is None:
            sent = transport.close_handshake.sent if transport.close_handshake is not None else None
            self.code = int(sent.code.value) if sent is not None else _ABNORMAL  # picows's own 1009, 1002...
        self._ended = True
        self._wake()
        if not self._gone.done():
            self._gone.set_result(None)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            self._peer_closed(transport, frame)
            return
        if self._closing or self._ended:
            return  # closing: nothing more is read but the client's close frame
        if kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            if self._fragments is not None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            if frame.fin:
                self._message(TEXT if kind == WSMsgType.TEXT else BINARY, frame.get_payload_as_bytes())
            else:
                self._fragments = [frame.get_payload_as_bytes()]
                self._fragment_kind = TEXT if kind == WSMsgType.TEXT else BINARY
                self._fragment_size = frame.payload_size
        elif kind == WSMsgType.CONTINUATION:
            if self._fragments is None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a continuation frame without a message")
                return
            self._fragment_size += frame.payload_size
            if self._fragment_size > self.server.max_message:
                self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload = b"".join(self._fragments)
                self._fragments = None
                self._message(self._fragment_kind, payload)
        # PING is answered by picows (enable_auto_pong), PONG is its heartbeat's

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---- reading ----------------------------------------------------------------------------------------

    def _message(self, kind: int, payload: bytes) -> None:
        if kind == TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8 text")
                return
            self._push((TEXT, text))
        else:
            self._push((BINARY, payload))

    def _push(self, item: tuple[int, str | bytes]) -> None:
        self._queue.append(item)
        if self._waiter is not None:
            self._wake()
        elif not self._paused and self.raw is not None and not self._closing:
            self._paused = True  # the endpoint is busy with a frame: the client's next ones wait in its socket
            self.raw.pause_reading()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        if self._paused and self.raw is not None and not self.raw.is_closing():
            self._paused = False
            self.raw.resume_reading()

    async def receive(self, within_s: float | None = None) -> tuple[int, str | bytes]:
        while not self._queue:
            if self._ended or self._closing:
                return END, ""
            self._resume()
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await asyncio.wait_for(waiter, within_s)
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self._queue.popleft()

    def _peer_closed(self, transport: WSTransport, frame: WSFrame) -> None:
        """The client's close frame: its code is the connection's; answered (unless the server closed
        first: then it is the answer) and the connection ended, as aiohttp does."""
        payload = frame.get_payload_as_bytes()
        if self.code is None:
            self.code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.OK)
        transport.disconnect()
        self._queue.append((END, ""))
        self._wake()

    def _fail(self, code: WSCloseCode, reason: str) -> None:
        """A protocol error of the client's: closed with ``code`` at once, as aiohttp closes it."""
        ws = self.ws
        self.code = int(code.value)
        self._closing = True
        self._fragments = None
        if ws is not None:
            ws.send_close(code, reason.encode())
            ws.disconnect()
        self._queue.append((END, ""))
        self._wake()

    # ---- the session's Transport -------------------------------------------------------------------------

    def try_write(self, data: bytes) -> bool:
        ws, raw = self.ws, self.raw
        if ws is None or raw is None or self._closing or ws.is_disconnected or raw.is_closing():
            return False
        if raw.get_write_buffer_size() > SOCKET_ROOM:
            return False
        ws.send(self.kind, data)
        return True

    async def send(self, data: bytes) -> None:
        ws, raw = self.ws, self.raw
        if ws is None or raw is None or self._closing or ws.is_disconnected or raw.is_closing():
            raise ConnectionResetError("the WebSocket is closing")
        ws.send(self.kind, data)
        drain = self._drain
        if drain is not None and not drain.done():
            await asyncio.shield(drain)  # one future for every writer: a cancelled one must not cancel it
            if ws.is_disconnected:
                raise ConnectionResetError("the WebSocket was closed")

    async def close(self, code: int, reason: str, *, unread: bool = False) -> None:
        """The close frame behind everything written; the client's answer is waited for (what it sends
        meanwhile is not read into the session) at most ``close_timeout_s``, then the connection is
        aborted. ``unread``: see ``Transport.close``."""
        ws = self.ws
        if ws is None or ws.is_disconnected or self._ended:
            return
        if unread:
            await self._close_unread(ws, code, reason)
            return
        if not self._closing:
            self._closing = True
            ws.send_close(WSCloseCode(code), reason.encode()[:120])
            self._wake()  # the read loop ends
            self._resume()  # to read the client's close frame; anything else is dropped
        done, _ = await asyncio.wait({self._gone}, timeout=self.server.endpoint.limits.close_timeout_s)
        if not done:
            self.abort()

    async def _close_unread(self, ws: WSTransport, code: int, reason: str) -> None:
        raw = self.raw
        if raw is None or raw.is_closing() or self._closing:
            self.abort()
            return
        self._closing = True
        if not self._paused:
            self._paused = True
            raw.pause_reading()
        ws.send_close(WSCloseCode(code), reason.encode()[:120])
        self._wake()
        await drain_then_abort(raw, self.server.endpoint.limits.close_timeout_s)

    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    def abort_if_stuck(self) -> None:
        if self.raw is not None and self.raw.get_write_buffer_size():
            self.raw.abort()

    def authenticated(self) -> None:
        if self.server.guard is not None and self.raw is not None:
            self.server.guard.authenticated_transport(self.raw)

    @property
    def close_code(self) -> int | None:
        return self.code

    @property
    def closing(self) -> bool:
        """A close is under way (it ends the connection within ``close_timeout_s``)."""
        return self._closing


class PicowsWebSocket:
    """The listener of ``/ws`` on its own port; its connections' lives are the endpoint's."""

    def __init__(
        self, endpoint: WebSocketEndpoint, guard: ConnectionGuard | None, hosts: HostCheck, http_port: int
    ) -> None:
        self.endpoint = endpoint
        self.guard = guard
        self.hosts = hosts
        self.http_port = http_port
        self.max_message = endpoint.limits.max_frame_bytes * 4
        """aiohttp's ``max_msg_size`` on the HTTP port: larger closes with 1009 (smaller is the session's 4413)."""
        self.server: asyncio.Server | None = None
        self._sockets: dict[PicowsSocket, asyncio.Task[None]] = {}

    async def start(self, host: str, port: int, sock: ListeningSocket | None = None) -> int:
        """Listen; returns the port (``port`` 0: the one the OS chose). ``sock``: a listening socket the node was
        handed (a worker: roost/workers/), used instead of binding ``host:port`` (a duplicate, as GuardedSite)."""
        limits = self.endpoint.limits

        def protocol() -> asyncio.BufferedProtocol:
            built: asyncio.BufferedProtocol = WSProtocol(
                None,  # host and port: a client's
                None,  # path: a client's
                False,  # the server side
                self._upgrade,
                _PICOWS_LOG,
                True,  # disconnect on an exception in a callback
                limits.idle_timeout_s + limits.header_timeout_s,  # a backstop: the guard times the head first
                True,  # auto ping: aiohttp's heartbeat
                limits.heartbeat_s,
                limits.heartbeat_s / 2,
                WSAutoPingStrategy.PING_WHEN_IDLE,
                True,  # auto pong
                self.max_message,
                None,  # extra headers: a client's
                _READ_BUFFER,
            )
            return built

        factory = self.guard.buffered_protocol_factory(protocol) if self.guard is not None else protocol
        loop = asyncio.get_running_loop()
        if sock is not None:
            self.server = await loop.create_server(factory, sock=sock.dup(), backlog=LISTEN_BACKLOG)
        else:
            self.server = await loop.create_server(factory, host, port, backlog=LISTEN_BACKLOG, reuse_address=True)
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    def _own_origins(self, host: str | None, forwarded: str | None) -> list[str]:
        """The page's origins: this host on the HTTP port (and on this port, as the HTTP port's own)."""
        if host is None:
            return []
        name = host.strip()
        name = name[: name.find("]") + 1] if name.startswith("[") else host_name(name)
        schemes = ["http"] if forwarded is None else ["http", forwarded]
        own = []
        for scheme in schemes:
            own += [f"{scheme}://{host}", f"{scheme}://{name}:{self.http_port}"]
            if (scheme, self.http_port) in (("http", 80), ("https", 443)):
                own.append(f"{scheme}://{name}")
        return own

    def _upgrade(self, request: WSUpgradeRequest) -> PicowsSocket | WSUpgradeResponseWithListener | None:
        """picows's upgrade callback: the HTTP port's checks and refusals, then the listener."""
        url = urlsplit(request.path.decode("latin-1"))
        if url.path != "/ws":
            return None  # 404
        headers = request.headers
        host = headers.get("Host")
        if not self.hosts.allows(host):
            reason = f"host {host!r} is not served here: list it with --allowed-host (ROOST_ALLOWED_HOSTS)"
            body = frames.encode(frames.Error(code=int(Code.BAD_FRAME), reason=reason))
            return _refuse(400, body)
        refused = self.endpoint.refusal(
            headers.get("Origin"), self._own_origins(host, headers.get("X-Forwarded-Proto"))
        )
        if refused is not None:
            return _refuse(refused.status, refused.body)
        token = parse_qs(url.query).get("token", [""])[0] or None
        offered = headers.get("Sec-WebSocket-Protocol")
        codec = negotiate(offered)
        socket = PicowsSocket(self, token, codec or JSON)
        if codec is None or not (offered or "").strip():
            return socket  # no subprotocol in the answer: JSON (R-WIRE-9)
        response: Any = WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": codec.subprotocol})
        return WSUpgradeResponseWithListener(response, socket)

    def opened(self, socket: PicowsSocket) -> None:
        if self.guard is not None and socket.raw is not None:
            self.guard.upgraded(socket.raw)
        task = asyncio.ensure_future(self.endpoint.run(socket, socket.token, socket.codec))
        self._sockets[socket] = task
        task.add_done_callback(lambda _: self._ended(socket))

    def _ended(self, socket: PicowsSocket) -> None:
        """The endpoint is done with it: closed, or the client went away."""
        self._sockets.pop(socket, None)
        if socket.ws is not None and not socket.ws.is_disconnected and not socket.closing:
            socket.ws.disconnect()

    async def aclose(self) -> None:
        """After ``WebSocketEndpoint.aclose``: stop listening; what is still open (connections that had not
        authenticated) is closed with 1001 and aborted after ``close_timeout_s``."""
        if self.server is not None:
            self.server.close()
        left = list(self._sockets.items())
        for socket, _ in left:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    socket.close(WSCloseCode.GOING_AWAY.value, "server shutting down"),
                    self.endpoint.limits.close_timeout_s + 0.5,
                )
        if left:
            await asyncio.wait([task for _, task in left], timeout=self.endpoint.limits.close_timeout_s)
        if self.server is not None:
            await self.server.wait_closed()


def _refuse(status: int, body: bytes) -> WSUpgradeResponseWithListener:
    response: Any = WSUpgradeResponse.create_error_response(status, body, _JSON)
    return WSUpgradeResponseWithListener(response, None)
