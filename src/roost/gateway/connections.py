"""Bounds on connections that have not authenticated (issue #17): idle and slow-head timeouts, a cap per
node and per client address, and a reserve that keeps health checks and WebSocket logins coming in.

aiohttp has no timeout on reading a request head and keeps an idle connection for an hour, so a few
thousand sockets that send nothing (or a header byte now and then) held the node's descriptors until
``accept()`` failed, ``/healthz`` with it. The guard sits in front of aiohttp's protocol and counts and
times every accepted connection until it is an authenticated WebSocket; then it steps out of the data
path (``transport.set_protocol``). It learns what it needs from public interfaces only: the connection's
bytes (``_Guarded``), the request (``middleware``: aiohttp hands a request over once its head is
complete, and the handler returns when it is answered) and the authentication (``authenticated``,
called by the WebSocket endpoint).

A pending connection is in one of four states:

* idle: no request in progress and no byte of the next one; closed after ``idle_timeout_s``;
* head: some bytes of a request head; answered 408 and closed ``header_timeout_s`` after its first byte;
* busy: an HTTP request being handled; closed ``request_timeout_s`` after its head arrived;
* upgrade: a WebSocket waiting for its auth frame, which ``auth_timeout_s`` bounds (4408).

Idle, head and upgrade are *waiting*: a new connection over a cap sheds the connection that has been
waiting longest, once it has waited ``SHED_AFTER_S`` (a burst of reconnects is accepted in one go, before
any of its requests is read; it must not shed itself). When none can be shed, the new connection takes a
place in the reserve, where only health, metrics and WebSocket requests are served; with the reserve
full, it is answered 429 and closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Final, cast

import msgspec
from aiohttp import web

from ..config import Limits
from ..logs import Throttled
from ..protocol.codes import Code

__all__ = ["LISTEN_BACKLOG", "REASONS", "SHED_AFTER_S", "ConnectionGuard", "GuardedSite"]

log = logging.getLogger(__name__)

LISTEN_BACKLOG: Final = 4096
"""The accept queue of the node's listening socket(s). Deep: after a restart every client reconnects at once, and
SYNs dropped by a full queue are retried by the kernel only after 1, 3, 7, 15 s (measured: `roost bench`, storm)."""
SHED_AFTER_S: Final = 1.0
"""A waiting connection younger than this is never shed for a newcomer."""

RESERVED_PATHS: Final = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/ws"})
"""What a connection admitted into the reserve may ask for."""

REASONS: Final = (
    "idle_timeout",
    "header_timeout",
    "request_timeout",
    "shed_source",
    "shed_node",
    "refused_source",
    "refused_node",
    "reserve_only",
)
"""Why the guard ended a connection or a request (the label of ``roost_unauthenticated_closed_total``)."""

_IDLE: Final = 0
_HEAD: Final = 1
_BUSY: Final = 2
_UPGRADE: Final = 3

_REFUSAL: Final = msgspec.json.encode(
    {"error": {"code": int(Code.RATE_LIMITED), "reason": "too many connections: try again later", "retry_after_s": 1.0}}
)
_TOO_MANY: Final = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_REFUSAL)).encode() + b"\r\n\r\n" + _REFUSAL
)
_TIMED_OUT: Final = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Conn:
    __slots__ = ("protocol", "restricted", "since", "source", "state", "transport", "waiting_since")

    def __init__(
        self, protocol: asyncio.BaseProtocol, transport: asyncio.Transport, source: str, now: float, restricted: bool
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.source = source
        self.since = now
        """When the current state began (idle, the head's first byte, the request)."""
        self.waiting_since = now
        """When it last began waiting (the order in which waiting connections are shed)."""
        self.state = _IDLE
        self.restricted = restricted


class ConnectionGuard:
    """One per node, shared by the starting listener and the node's own (``GuardedSite``)."""

    def __init__(self, limits: Limits, fd_limit: int | None = None) -> None:
        self.limits = limits
        cap = limits.max_pending_connections
        if fd_limit is not None:
            cap = min(cap, max(16, fd_limit // 2))
        self.node_cap = cap
        """``max_pending_connections``, lowered to half the descriptor limit: the other half is for the
        authenticated WebSockets, the engines and the reserve."""
        self.source_cap = limits.max_pending_per_source
        self.reserve = limits.connection_reserve
        self.closed: dict[tuple[str], int] = {(reason,): 0 for reason in REASONS}
        self._conns: dict[asyncio.BaseProtocol, _Conn] = {}
        self._per_source: dict[str, int] = {}
        self._waiting: dict[_Conn, None] = {}
        self._waiting_by_source: dict[str, dict[_Conn, None]] = {}
        self._restricted = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._log = Throttled(log)

    @property
    def pending(self) -> int:
        """Connections open now that are not an authenticated WebSocket."""
        return len(self._conns)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(self, inner())

    def buffered_protocol_factory(
        self, inner: Callable[[], asyncio.BufferedProtocol]
    ) -> Callable[[], asyncio.BufferedProtocol]:
        """The same for a buffered protocol (picows's, on the WebSocket port of ``--ws-transport picows``)."""
        return lambda: _GuardedBuffered(self, inner())

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # ---- the request's view (aiohttp middleware) and the WebSocket endpoint's -----------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self._conns.get(request.protocol)
        if conn is None:
            return await handler(request)
        if conn.restricted and request.path not in RESERVED_PATHS:
            self._count(
                "reserve_only",
                conn,
                "answered 429 to %s %s from %s: only health, metrics and WebSocket "
                "requests are served over the connection caps",
                request.method,
                request.path,
                conn.source,
            )
            response = web.Response(status=429, body=_REFUSAL, content_type="application/json")
            response.headers["Retry-After"] = "1"
            response.force_close()
            return response
        now = asyncio.get_running_loop().time()
        conn.since = now
        if request.headers.get("Upgrade", "").lower() == "websocket":
            conn.state = _UPGRADE
            self._begin_waiting(conn, now)
        else:
            conn.state = _BUSY
            self._stop_waiting(conn)
        try:
            return await handler(request)
        finally:
            if self._conns.get(conn.protocol) is conn:
                now = asyncio.get_running_loop().time()
                conn.state, conn.since = _IDLE, now
                self._begin_waiting(conn, now)

    def authenticated(self, request: web.Request) -> None:
        """The connection is an authenticated WebSocket now: no longer counted or timed, and the guard
        leaves its data path."""
        conn = self._conns.get(request.protocol)
        if conn is None:
            return
        self._forget(conn)
        if not conn.transport.is_closing():
            conn.transport.set_protocol(conn.protocol)

    # ---- the picows WebSocket port's view (no request object: the connection's transport) ------------------

    def _conn_of(self, transport: asyncio.BaseTransport) -> _Conn | None:
        guarded = transport.get_protocol()
        if isinstance(guarded, _GuardedBuffered | _Guarded) and guarded.conn is not None:
            return self._conns.get(guarded.inner) if self._conns.get(guarded.inner) is guarded.conn else None
        return None

    def upgraded(self, transport: asyncio.BaseTransport) -> None:
        """A WebSocket opened on the picows port: waiting for its auth frame, like an upgrade (``middleware``)."""
        conn = self._conn_of(transport)
        if conn is not None:
            now = asyncio.get_running_loop().time()
            conn.state, conn.since = _UPGRADE, now
            self._begin_waiting(conn, now)

    def authenticated_transport(self, transport: asyncio.BaseTransport) -> None:
        """``authenticated`` for a connection of the picows port."""
        conn = self._conn_of(transport)
        if conn is None:
            return
        self._forget(conn)
        if not conn.transport.is_closing():
            conn.transport.set_protocol(conn.protocol)

    # ---- the connection's view (_Guarded) -----------------------------------------------------------------

    def _admit(self, protocol: asyncio.BaseProtocol, transport: asyncio.Transport) -> _Conn | None:
        now = asyncio.get_running_loop().time()
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        over: str | None = None
        crowded = self.source_cap > 0 and self._per_source.get(source, 0) >= self.source_cap
        if crowded and not self._shed(self._waiting_by_source.get(source), now, "shed_source", source):
            over = "source"
        full = over is None and len(self._conns) >= self.node_cap
        if full and not self._shed(self._waiting, now, "shed_node", source):
            over = "node"
        if over is not None:
            if self._restricted >= self.reserve:
                self._tally(f"refused_{over}")
                self._log.warning(
                    f"refused_{over}",
                    "refused a connection from %s: %d pending from it, %d on the node (caps %s and %d), nothing "
                    "to shed and the reserve of %d in use",
                    source, self._per_source.get(source, 0), len(self._conns),
                    self.source_cap or "none", self.node_cap, self.reserve,
                )  # fmt: skip
                transport.write(_TOO_MANY)
                transport.close()
                return None
            self._restricted += 1
        conn = _Conn(protocol, transport, source, now, over is not None)
        self._conns[protocol] = conn
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._begin_waiting(conn, now)
        return conn

    def _first_byte(self, conn: _Conn) -> None:
        conn.state = _HEAD
        conn.since = asyncio.get_running_loop().time()

    def _forget(self, conn: _Conn) -> None:
        """Stop counting ``conn`` (closed, or authenticated); safe to call more than once."""
        if self._conns.get(conn.protocol) is not conn:
            return
        del self._conns[conn.protocol]
        left = self._per_source[conn.source] - 1
        if left:
            self._per_source[conn.source] = left
        else:
            del self._per_source[conn.source]
        self._stop_waiting(conn)
        if conn.restricted:
            self._restricted -= 1

    # ---- bookkeeping ----------------------------------------------------------------------------------------

    def _begin_waiting(self, conn: _Conn, now: float) -> None:
        self._stop_waiting(conn)
        conn.waiting_since = now
        self._waiting[conn] = None
        self._waiting_by_source.setdefault(conn.source, {})[conn] = None

    def _stop_waiting(self, conn: _Conn) -> None:
        if conn in self._waiting:
            del self._waiting[conn]
            mine = self._waiting_by_source[conn.source]
            del mine[conn]
            if not mine:
                del self._waiting_by_source[conn.source]

    def _shed(self, waiting: dict[_Conn, None] | None, now: float, reason: str, newcomer: str) -> bool:
        """Close the connection that has waited longest in ``waiting`` (oldest first), if it has waited
        ``SHED_AFTER_S``; False when there is none."""
        for conn in waiting or ():
            waited = now - conn.waiting_since
            if waited < SHED_AFTER_S:
                return False
            self._count(
                reason, conn, "shed a connection from %s that waited %.1f s to admit one from %s (%s cap %d)",
                conn.source, waited, newcomer, "per-source" if reason == "shed_source" else "node",
                self.source_cap if reason == "shed_source" else self.node_cap,
            )  # fmt: skip
            self._forget(conn)
            conn.transport.abort()
            return True
        return False

    def _tally(self, reason: str) -> None:
        self.closed[(reason,)] += 1

    def _count(self, reason: str, conn: _Conn, message: str, *args: object) -> None:
        self._tally(reason)
        self._log.warning(reason, message, *args)

    def _close(self, conn: _Conn, reason: str, answer: bytes | None = None) -> None:
        """A timeout: counted, not logged (an idle browser connection ends this way every day)."""
        self._tally(reason)
        self._forget(conn)
        if answer is None:
            conn.transport.abort()
        else:
            conn.transport.write(answer)
            conn.transport.close()

    async def _sweep(self) -> None:
        limits = self.limits
        tick = max(0.05, min(1.0, limits.idle_timeout_s / 4, limits.header_timeout_s / 4))
        while True:
            await asyncio.sleep(tick)
            try:
                self._expire(asyncio.get_running_loop().time())
            except Exception:  # a bug here must not end the timeouts for good
                log.exception("connection limits: the timeout sweep failed")

    def _expire(self, now: float) -> None:
        limits = self.limits
        for conn in list(self._conns.values()):
            age = now - conn.since
            if conn.state == _IDLE:
                if age >= limits.idle_timeout_s:
                    self._close(conn, "idle_timeout")
            elif conn.state == _HEAD:
                if age >= limits.header_timeout_s:
                    self._close(conn, "header_timeout", _TIMED_OUT)
            elif conn.state == _BUSY and age >= limits.request_timeout_s:
                self._close(conn, "request_timeout")


class _Passthrough:
    """What both guarded protocols do alike: admitted (or refused) on connect, forgotten when lost, the rest of
    the calls passed to the wrapped protocol only while admitted."""

    __slots__ = ("conn", "guard", "inner")
    guard: ConnectionGuard
    inner: asyncio.Protocol | asyncio.BufferedProtocol
    conn: _Conn | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not always an asyncio.Transport: `roost serve` runs on uvloop, whose transports only quack like one.
        self.conn = self.guard._admit(self.inner, cast(asyncio.Transport, transport))
        if self.conn is not None:
            self.inner.connection_made(transport)

    def _received(self) -> bool:
        """Note the first byte of a request head; False when the connection was refused."""
        conn = self.conn
        if conn is None:
            return False
        if conn.state == _IDLE:
            self.guard._first_byte(conn)
        return True

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.conn is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if conn is None:
            return
        self.guard._forget(conn)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.inner.resume_writing()


class _Guarded(_Passthrough, asyncio.Protocol):
    """aiohttp's protocol behind the guard: admitted (or refused) on connect, and the first byte of each
    request head noted; everything else is passed through unchanged."""

    __slots__ = ()

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol = inner
        self.conn = None

    def data_received(self, data: bytes) -> None:
        if self._received():
            self.inner.data_received(data)


class GuardedSite(web.BaseSite):
    """aiohttp's ``TCPSite`` with every connection behind ``guard``; with ``sock``, on a listening socket the node
    was handed (a worker of ``roost serve --workers N``: roost/workers/) instead of one it binds."""

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        host: str,
        port: int,
        *,
        backlog: int = 128,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.guard = guard
        self.host = host
        self.port = port
        self.sock = sock

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        factory = self.guard.protocol_factory(server)
        if self.sock is not None:
            # A duplicate: closing this site closes it, and the socket stays open for the next site and the other
            # workers. The event loop calls listen() again with this backlog, so it is the socket's own.
            self._server = await loop.create_server(factory, sock=self.sock.dup(), backlog=LISTEN_BACKLOG)
            return
        self._server = await loop.create_server(
            factory, self.host, self.port, backlog=self._backlog, reuse_address=True
        )


class _GuardedBuffered(_Passthrough, asyncio.BufferedProtocol):
    """``_Guarded`` for a buffered protocol (picows reads into its own buffer): admitted (or refused) on
    connect, the first byte of the request head noted; everything else passed through unchanged."""

    __slots__ = ()

    def __init__(self, guard: ConnectionGuard, inner: asyncio.BufferedProtocol) -> None:
        self.guard = guard
        self.inner: asyncio.BufferedProtocol = inner
        self.conn = None

    def get_buffer(self, sizehint: int) -> memoryview:
        return cast(memoryview, self.inner.get_buffer(sizehint))

    def buffer_updated(self, nbytes: int) -> None:
        if self._received():
            self.inner.buffer_updated(nbytes)
