"""The WebSocket endpoint ``/ws``: authenticate, then feed frames to a Session. Nothing else."""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Callable
from typing import Final

from aiohttp import WSMsgType, web

from ..apikeys import WS, ApiKeys, require
from ..auth import Identity, TokenAuthority
from ..config import Limits
from ..hub import Hub
from ..metrics import code_label
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import AuthError, ProtocolError, RoostError
from ..readiness import Readiness
from ..revocation import Revocations, void
from ..service import ChatService
from .budget import UserBudgets
from .connections import ConnectionGuard
from .credentials import identify
from .session import Session

__all__ = ["WebSocketEndpoint"]

_LEN1: Final = struct.Struct("!BB").pack
_LEN2: Final = struct.Struct("!BBH").pack
_LEN3: Final = struct.Struct("!BBQ").pack

log = logging.getLogger(__name__)


_NEVER_S: Final = 10 * 365 * 24 * 3600.0
"""The timer of a credential that does not expire (an API key): far enough, and finite for the event loop."""

_SOCKET_ROOM: Final = 64 * 1024
"""Bytes the socket's user-space buffer may hold before frames wait in the session's outbox instead."""


_UNREAD_GRACE_S: Final = 0.2


class _AiohttpTransport:
    """The session's view of one aiohttp WebSocket.

    ``try_write`` frames the payload itself and hands it to the asyncio transport in one call: one
    unmasked text frame, the same bytes aiohttp would write, without a coroutine or a task switch per
    frame. Every write is a whole frame, so it never interleaves with aiohttp's own pings and closes.
    """

    __slots__ = ("close_timeout_s", "raw", "ws")

    def __init__(self, ws: web.WebSocketResponse, raw: asyncio.Transport | None, close_timeout_s: float) -> None:
        self.ws = ws
        self.raw = raw
        self.close_timeout_s = close_timeout_s

    def try_write(self, data: bytes) -> bool:
        raw = self.raw
        if raw is None or self.ws.closed or raw.is_closing() or raw.get_write_buffer_size() > _SOCKET_ROOM:
            return False
        n = len(data)
        if n < 126:
            header = _LEN1(0x81, n)
        elif n < 65536:
            header = _LEN2(0x81, 126, n)
        else:
            header = _LEN3(0x81, 127, n)
        raw.write(header + data)
        return True

    async def send(self, data: bytes) -> None:
        await self.ws.send_frame(data, WSMsgType.TEXT)

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
        deadline = time.monotonic() + self.close_timeout_s
        # The transport has no event for "buffer empty" that aiohttp does not own (its drain waiter): poll.
        while raw.get_write_buffer_size() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        # A moment for the client to read the close frame before the reset, which may discard it.
        await asyncio.sleep(min(_UNREAD_GRACE_S, max(0.0, deadline - time.monotonic())))
        raw.abort()

    def abort(self) -> None:
        """Drop what is unsent and reset the TCP connection (the client sees it end without a close frame)."""
        if self.raw is not None:
            self.raw.abort()

    def abort_if_stuck(self) -> None:
        """Called ``close_timeout_s`` after the connection ended: a socket still holding unsent bytes
        (a heartbeat failure closes without a bound) is aborted, so nothing outlives the bound."""
        if self.raw is not None and self.raw.get_write_buffer_size():
            self.raw.abort()


def _consume(task: asyncio.Future[bool]) -> None:
    """A close that ended with an error (the connection was lost or aborted) is done all the same."""
    if not task.cancelled():
        task.exception()


class _Refused(Exception):
    """Authentication failed with ``error``; ``ref`` is the id of the first frame, if it had one."""

    def __init__(self, error: RoostError, ref: str | None) -> None:
        super().__init__(error.reason)
        self.error = error
        self.ref = ref


class WebSocketEndpoint:
    def __init__(
        self,
        service: ChatService,
        hub: Hub,
        tokens: TokenAuthority,
        limits: Limits,
        allowed_origins: tuple[str, ...] = (),
        readiness: Readiness | None = None,
        revocations: Revocations | None = None,
        guard: ConnectionGuard | None = None,
        keys: ApiKeys | None = None,
    ) -> None:
        self.service = service
        self.keys = keys
        self.revocations = revocations
        self.guard = guard
        self.readiness = readiness
        self.hub = hub
        self.tokens = tokens
        self.limits = limits
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)
        self.sessions: set[Session] = set()
        self._per_user: dict[str, int] = {}
        self._identities: dict[Session, Identity] = {}
        """Each open session's token (its ``iat``), for revocations."""
        self.budgets = UserBudgets(limits)
        """Each user's frame budget on this node, shared by their connections."""

    def _origin_allowed(self, request: web.Request) -> bool:
        """Browsers send Origin; a page from another site must not ride on the user's cookies or
        tokens (cross-site WebSocket hijacking). Non-browser clients send none and are allowed."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        origin = origin.rstrip("/")
        if origin in self.allowed_origins or "*" in self.allowed_origins:
            return True
        own = f"{request.scheme}://{request.host}"
        forwarded = request.headers.get("X-Forwarded-Proto")
        return origin == own or (forwarded is not None and origin == f"{forwarded}://{request.host}")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        handshakes = self.service.metrics.handshakes
        if not self._origin_allowed(request):
            handshakes.labels("refused_origin").inc()
            reason = f"origin {request.headers.get('Origin')!r} is not allowed"
            body = frames.encode(frames.Error(code=int(Code.FORBIDDEN), reason=reason))
            return web.Response(status=403, body=body, content_type="application/json")
        if self.readiness is not None and not self.readiness.ready:
            handshakes.labels("refused_not_ready").inc()
            # Before the upgrade: a client with other URLs moves on at once, and nothing is half-open.
            if self.readiness.draining:
                refusal, reason = Code.GOING_AWAY, "this node is shutting down: connect to another node"
            else:
                refusal, reason = Code.NODE_UNREADY, "this node cannot reach its store or bus: connect to another node"
            body = frames.encode(frames.Error(code=int(refusal), reason=reason))
            return web.Response(status=503, body=body, content_type="application/json")
        ws = web.WebSocketResponse(
            heartbeat=self.limits.heartbeat_s,
            max_msg_size=self.limits.max_frame_bytes * 4,
            compress=False,
        )
        await ws.prepare(request)
        transport = _AiohttpTransport(ws, request.transport, self.limits.close_timeout_s)
        try:
            identity, auth_ref = await self._authenticate(ws, request)
        except _Refused as refused:
            handshakes.labels("refused_auth").inc()
            exc = refused.error
            error = frames.Error(code=int(exc.code), reason=exc.reason, ref=refused.ref)
            await ws.send_frame(frames.encode(error), WSMsgType.TEXT)
            await ws.close(code=int(exc.code), message=exc.reason.encode()[:120])
            return ws
        user, expires_at = identity.user, identity.expires_at
        if self._per_user.get(user, 0) >= self.limits.max_connections_per_user:
            handshakes.labels("refused_limit").inc()
            reason = f"over {self.limits.max_connections_per_user} connections for {user}"
            await ws.send_frame(frames.encode(frames.Error(code=int(Code.RATE_LIMITED), reason=reason)), WSMsgType.TEXT)
            await ws.close(code=int(Code.RATE_LIMITED), message=b"too many connections")
            return ws
        handshakes.labels("accepted").inc()
        if self.guard is not None:
            self.guard.authenticated(request)
        session = Session(
            self.service, self.hub, transport, self.limits, user, secrets.token_hex(8), self.budgets
        )
        self.sessions.add(session)
        self._identities[session] = identity
        self._per_user[user] = self._per_user.get(user, 0) + 1
        expiry = asyncio.get_running_loop().call_later(
            min(max(0.0, expires_at - time.time()), _NEVER_S),  # an API key does not expire
            lambda: asyncio.ensure_future(session.expire()),
        )
        welcome = frames.Welcome(
            user, session.session_id, self.limits.max_body_bytes, self.limits.max_frame_bytes, ref=auth_ref
        )
        await ws.send_frame(frames.encode(welcome), WSMsgType.TEXT)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await session.receive(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await session.receive_invalid("binary frames are not supported; send JSON text frames")
                else:
                    break
                if session.closed:  # closed by the server (a budget, a slow consumer): read nothing more
                    break
        finally:
            expiry.cancel()
            self.sessions.discard(session)
            self._identities.pop(session, None)
            left = self._per_user.get(user, 1) - 1
            if left:
                self._per_user[user] = left
            else:
                self._per_user.pop(user, None)
            await session.release()
            asyncio.get_running_loop().call_later(self.limits.close_timeout_s, transport.abort_if_stuck)
            code = session.close_code if session.close_code is not None else ws.close_code
            self.service.metrics.closes.labels(code_label(code)).inc()
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse, request: web.Request) -> tuple[Identity, str | None]:
        """The token's identity and the auth frame's id (``welcome``'s ``ref``); or ``_Refused``, whose
        error names that id too when the first frame had a readable one."""
        token = request.query.get("token")
        if token:
            try:
                return await self._identify(token), None
            except RoostError as exc:
                raise _Refused(exc, None) from None
        try:
            msg = await ws.receive(timeout=self.limits.auth_timeout_s)
        except TimeoutError:
            raise _Refused(AuthError("no auth frame in time", Code.AUTH_TIMEOUT), None) from None
        if msg.type is not WSMsgType.TEXT:
            raise _Refused(AuthError("the first frame must be an auth frame", Code.UNAUTHORIZED), None)
        ref = frames.peek_ref(msg.data)[0]
        try:
            frame = frames.decode_client(msg.data)
        except ProtocolError as exc:
            refusal = AuthError(f"the first frame must be an auth frame ({exc.reason})", Code.UNAUTHORIZED)
            raise _Refused(refusal, ref) from None
        if not isinstance(frame, frames.Auth):
            raise _Refused(AuthError("the first frame must be an auth frame", Code.UNAUTHORIZED), ref)
        try:
            return await self._identify(frame.token), frame.id
        except RoostError as exc:
            raise _Refused(exc, ref) from None

    async def _identify(self, token: str) -> Identity:
        """A user's token, or an API key with the ``ws`` scope (else 4403: R-SEC-86), acting as its principal."""
        identity = await identify(token, self.tokens, self.keys, self.revocations)
        if identity.key is not None:
            require(identity, WS)
        return identity

    def key_sessions(self) -> bool:
        """Is any open connection authenticated with an API key? (the periodic key check runs only then)"""
        return any(identity.key is not None for identity in self._identities.values())

    async def close_void_keys(self, void_key: Callable[[str], bool]) -> None:
        """Close with 4401 every connection authenticated with an API key that ``void_key`` says is revoked."""
        void_sessions = [
            s for s, identity in list(self._identities.items()) if identity.key is not None and void_key(identity.key)
        ]
        if void_sessions:
            await asyncio.gather(*(s.expire("API key revoked") for s in void_sessions), return_exceptions=True)
            log.info("closed %d connections of revoked API keys", len(void_sessions))

    async def close_revoked(self, revoked: dict[str, int]) -> None:
        """Close with 4401 every connection whose token ``revoked`` (user -> issued-at bound) voids."""
        void_sessions = [
            s for s, identity in list(self._identities.items()) if void(identity, revoked.get(identity.user, 0))
        ]
        if void_sessions:
            await asyncio.gather(*(s.expire("token revoked") for s in void_sessions), return_exceptions=True)
            log.info("closed %d connections of revoked tokens", len(void_sessions))

    async def shed(self, reason: str) -> None:
        """Close every connection with 4504, all at once: each client fails over to another node."""
        sessions = list(self.sessions)
        message = f"node cut off from its engines ({reason})"[:120]
        await asyncio.gather(*(s.close(Code.NODE_UNREADY, message) for s in sessions), return_exceptions=True)
        log.warning("shed %d connections with %d", len(sessions), int(Code.NODE_UNREADY))

    async def aclose(self, within_s: float = 1.5) -> None:
        """Shutdown: every connection answers what it was asked (``Session.drain``), all at once, and the
        whole takes about ``within_s`` (a client that does not answer the close frame is not waited for)."""
        sessions = list(self.sessions)
        drains = asyncio.gather(*(s.drain(within_s) for s in sessions), return_exceptions=True)
        try:
            await asyncio.wait_for(drains, within_s + 0.5)
        except TimeoutError:
            log.warning("shutdown: %d connections did not close in time", sum(not s.closed for s in sessions))
