"""The WebSocket endpoint ``/ws``: authenticate, then feed frames to a Session. Nothing else.

Transport-agnostic: everything between "a WebSocket is open" and "it ended" (authentication, the per-user
limit, the welcome, the read loop, expiry, revocation, shutdown, the metrics) happens here, on a ``Socket``,
in the encoding the upgrade negotiated (its ``Codec``: JSON in text frames, MessagePack in binary ones).
The adapters (``ws_aiohttp``: the HTTP port's ``/ws``; ``ws_picows``: a port of its own, ``--ws-transport
picows``) do the upgrade, its refusals (``refusal``), the subprotocol and the framing, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from ..apikeys import WS, ApiKeys, require
from ..auth import Identity, TokenAuthority
from ..config import Limits
from ..hub import Hub
from ..metrics import code_label
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.encoding import JSON, Codec
from ..protocol.errors import AuthError, ProtocolError, RoostError
from ..protocol.inbox import inbox_room
from ..readiness import Readiness
from ..revocation import Revocations, void
from ..service import ChatService
from .budget import UserBudgets
from .credentials import identify
from .outbox import Transport
from .session import Session

__all__ = ["BINARY", "END", "TEXT", "Refusal", "Socket", "WebSocketEndpoint"]

log = logging.getLogger(__name__)

_NEVER_S: Final = 10 * 365 * 24 * 3600.0
"""The timer of a credential that does not expire (an API key): far enough, and finite for the event loop."""

TEXT: Final = 1
BINARY: Final = 2
END: Final = 0
"""What ``Socket.receive`` returns: a text frame (its ``str``), a binary one (its ``bytes``), or the end of the
connection (closed by the client, a heartbeat failure, a protocol error: the adapter closed it as its library
does)."""


_BINARY_ON_JSON: Final = "binary frames are not supported; send JSON text frames"
_TEXT_ON_MSGPACK: Final = "text frames are not supported with roost.v1.msgpack; send MessagePack binary frames"


class Socket(Transport, Protocol):
    """One open WebSocket, as the endpoint sees it: the session's ``Transport`` plus reading."""

    async def receive(self, within_s: float | None = None) -> tuple[int, str | bytes]:
        """The next frame (``TEXT`` with its text, ``BINARY`` with its bytes) or ``END``; ``TimeoutError`` after
        ``within_s``. Between calls the adapter reads nothing more (read back-pressure)."""
        ...

    def authenticated(self) -> None:
        """The connection is an authenticated WebSocket: the connection guard stops counting and timing it."""
        ...

    def abort_if_stuck(self) -> None:
        """Abort the connection if its socket still holds unsent bytes."""
        ...

    @property
    def close_code(self) -> int | None:
        """The code the connection ended with, as the library saw it (the client's close, 1006, 1009...)."""
        ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """An upgrade refused before it happens: the HTTP status, the JSON body and the handshake metric's label."""

    status: int
    body: bytes
    label: str


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
        keys: ApiKeys | None = None,
        on_user: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.on_user = on_user
        """Told when a user's first connection to this node opens (True) and their last one closes (False):
        whether they are online for Web Push (push/online.py)."""
        self.service = service
        self.keys = keys
        self.revocations = revocations
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

    def origin_allowed(self, origin: str | None, own: Iterable[str]) -> bool:
        """Browsers send Origin; a page from another site must not ride on the user's cookies or
        tokens (cross-site WebSocket hijacking). Non-browser clients send none and are allowed. ``own``: the
        origins the adapter knows as the server's own (the page's)."""
        if origin is None:
            return True
        origin = origin.rstrip("/")
        if origin in self.allowed_origins or "*" in self.allowed_origins:
            return True
        return origin in own

    def refusal(self, origin: str | None, own: Iterable[str]) -> Refusal | None:
        """The checks made before the upgrade, by every adapter alike: the Origin (403), then readiness (503).
        Counted in the handshake metric when refused."""
        if not self.origin_allowed(origin, own):
            reason = f"origin {origin!r} is not allowed"
            refused = Refusal(
                403, frames.encode(frames.Error(code=int(Code.FORBIDDEN), reason=reason)), "refused_origin"
            )
        elif self.readiness is not None and not self.readiness.ready:
            # Before the upgrade: a client with other URLs moves on at once, and nothing is half-open.
            if self.readiness.draining:
                code, reason = Code.GOING_AWAY, "this node is shutting down: connect to another node"
            else:
                code, reason = Code.NODE_UNREADY, "this node cannot reach its store or bus: connect to another node"
            refused = Refusal(503, frames.encode(frames.Error(code=int(code), reason=reason)), "refused_not_ready")
        else:
            return None
        self.service.metrics.handshakes.labels(refused.label).inc()
        return refused

    async def run(self, socket: Socket, token: str | None, codec: Codec = JSON) -> None:
        """The life of one open WebSocket, until it ends: ``token`` is the URL's ``?token=``, if any; ``codec``
        the encoding its subprotocol chose (R-WIRE-9)."""
        handshakes = self.service.metrics.handshakes
        try:
            identity, auth_ref = await self._authenticate(socket, token, codec)
        except _Refused as refused:
            handshakes.labels("refused_auth").inc()
            exc = refused.error
            error = frames.Error(code=int(exc.code), reason=exc.reason, ref=refused.ref)
            await _refuse(socket, codec.pack([codec.encode(error)]), int(exc.code), exc.reason)
            return
        user, expires_at = identity.user, identity.expires_at
        if self._per_user.get(user, 0) >= self.limits.max_connections_per_user:
            handshakes.labels("refused_limit").inc()
            reason = f"over {self.limits.max_connections_per_user} connections for {user}"
            error = frames.Error(code=int(Code.RATE_LIMITED), reason=reason)
            await _refuse(socket, codec.pack([codec.encode(error)]), int(Code.RATE_LIMITED), "too many connections")
            return
        handshakes.labels("accepted").inc()
        socket.authenticated()
        session = Session(self.service, self.hub, socket, self.limits, user, secrets.token_hex(8), self.budgets, codec)
        self.sessions.add(session)
        self._identities[session] = identity
        self._per_user[user] = self._per_user.get(user, 0) + 1
        if self._per_user[user] == 1 and self.on_user is not None:
            self.on_user(user, True)
        expiry = asyncio.get_running_loop().call_later(
            min(max(0.0, expires_at - time.time()), _NEVER_S),  # an API key does not expire
            lambda: asyncio.ensure_future(session.expire()),
        )
        welcome = frames.Welcome(
            user,
            session.session_id,
            self.limits.max_body_bytes,
            self.limits.max_frame_bytes,
            ref=auth_ref,
            inbox=inbox_room(user),
        )
        expected, wrong = (BINARY, _TEXT_ON_MSGPACK) if codec.binary else (TEXT, _BINARY_ON_JSON)
        try:
            await socket.send(codec.pack([codec.encode(welcome)]))
            while True:
                kind, data = await socket.receive()
                if kind == expected:
                    await session.receive(data)
                elif kind != END:
                    await session.receive_invalid(wrong)
                else:
                    break
                if session.closed:  # closed by the server (a budget, a slow consumer): read nothing more
                    break
        except ConnectionError:
            pass  # the welcome could not be written: the connection is gone
        finally:
            expiry.cancel()
            self.sessions.discard(session)
            self._identities.pop(session, None)
            left = self._per_user.get(user, 1) - 1
            if left:
                self._per_user[user] = left
            else:
                self._per_user.pop(user, None)
                if self.on_user is not None:
                    self.on_user(user, False)
            await session.release()
            asyncio.get_running_loop().call_later(self.limits.close_timeout_s, socket.abort_if_stuck)
            code = session.close_code if session.close_code is not None else socket.close_code
            self.service.metrics.closes.labels(code_label(code)).inc()

    async def _authenticate(self, socket: Socket, token: str | None, codec: Codec) -> tuple[Identity, str | None]:
        """The token's identity and the auth frame's id (``welcome``'s ``ref``); or ``_Refused``, whose
        error names that id too when the first frame had a readable one."""
        if token:
            try:
                return await self._identify(token), None
            except RoostError as exc:
                raise _Refused(exc, None) from None
        try:
            kind, data = await socket.receive(self.limits.auth_timeout_s)
        except TimeoutError:
            raise _Refused(AuthError("no auth frame in time", Code.AUTH_TIMEOUT), None) from None
        if kind != (BINARY if codec.binary else TEXT):
            raise _Refused(AuthError("the first frame must be an auth frame", Code.UNAUTHORIZED), None)
        ref = codec.peek_ref(data)[0]
        try:
            frame = codec.decode_client(data)
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

    def users(self) -> list[str]:
        """The users with a connection open to this node."""
        return list(self._per_user)

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


async def _refuse(socket: Socket, error: bytes, code: int, reason: str) -> None:
    """An open WebSocket refused: the error frame, then the close with its code."""
    try:
        await socket.send(error)
    except ConnectionError:
        return
    await socket.close(code, reason)
