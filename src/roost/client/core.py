"""What every part of the client shares: its state, and writing frames and requests on the live socket.

The outbox (``outbox.py``), the room following (``rooms.py``) and the connection loop (``link.py``) each
own one concern but act on one connection and one set of rooms; this base holds that state, so each part
reads as its own rules and ``Client`` (``connection.py``) as the application's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..protocol import frames
from ..protocol.encoding import BY_NAME, Codec
from ..protocol.sync import RoomSync
from ..protocol.types import Message
from .errors import ClientClosed, ConnectionLost
from .events import Cursor, InboxItem, Incoming, Sent

__all__ = ["ClientCore", "FollowedRoom", "Outgoing", "log"]

log = logging.getLogger("roost.client.connection")
"""The SDK's one logger, under the name it has always had (applications filter on it)."""


@dataclass
class Outgoing:
    """A send in the outbox, not yet acked."""

    room: str
    cmid: str
    body: str
    future: asyncio.Future[Sent]
    reply_to: int | None = None
    thread: int | None = None
    attachments: tuple[str, ...] = ()
    not_before: float = 0.0
    refusals: int = 0
    """Retryable refusals in a row (4429, 4500, 4503): each waits longer (``retry_delay``)."""


@dataclass
class FollowedRoom:
    """A room the application follows: its cursor, and the RoomSync of the current subscription."""

    cursor: Cursor | None
    sync: RoomSync[Message] | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: bool = False
    start: Cursor | None = None
    fill_failures: int = 0
    """Gap reads in a row that failed: the next one waits ``retry_delay`` (a quiet room has no later
    message to trigger it, and a failing store must not be asked again at once)."""
    sub_id: str | None = None
    """The id of the subscribe in flight: a ``subscribed`` answering an earlier one (the room was subscribed
    again before it came) is not this subscription's start."""


class ClientCore:
    """The client's state and the wire: ``_write`` a frame, ``_request`` a reply, ``_spawn`` a background write."""

    def __init__(
        self,
        urls: str | Sequence[str],
        token: str,
        *,
        cursors: dict[str, Cursor] | None = None,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        heartbeat_s: float = 15.0,
        connect_timeout_s: float = 5.0,
        start_timeout_s: float | None = 10.0,
        follow_inbox: bool = True,
        encoding: str = "json",
        compression: bool = False,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one URL is needed")
        codec = BY_NAME.get(encoding)
        if codec is None:
            raise ValueError(f"encoding must be one of {', '.join(BY_NAME)}, not {encoding!r}")
        self.codec: Codec = codec
        """The wire's encoding, asked for by subprotocol (``json``: the server's default; ``msgpack``)."""
        self.compression = compression
        """Offer permessage-deflate (RFC 7692); the server uses it only with ``ws_compression = deflate``."""
        self.token = token
        self.user: str | None = None
        self.url: str | None = None
        """The URL of the live connection (None between connections): which node the client is on."""
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._heartbeat_s = heartbeat_s
        self._connect_timeout_s = connect_timeout_s
        self._start_timeout_s = start_timeout_s
        self._last_error: BaseException | None = None
        self._rooms: dict[str, FollowedRoom] = {}
        self._initial_cursors = dict(cursors or {})
        self._outbox: dict[str, Outgoing] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._incoming: asyncio.Queue[Incoming | None] = asyncio.Queue()
        self.inbox: str | None = None
        """The user's event stream (``welcome.inbox``), known once connected; None from a server without one."""
        self._follow_inbox = follow_inbox
        self._inbox_items: asyncio.Queue[InboxItem | None] = asyncio.Queue()
        self._ids: Iterator[int] = itertools.count(1)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._fatal: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = asyncio.Event()
        self._reading.set()

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_quietly(self, frame: frames.ClientFrame) -> None:
        with contextlib.suppress(ConnectionLost, ConnectionError, RuntimeError):
            await self._write(frame)

    async def _write(self, frame: frames.ClientFrame) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionLost("not connected")
        await self._send_frame(ws, frame)

    async def _send_frame(self, ws: aiohttp.ClientWebSocketResponse, frame: frames.ClientFrame) -> None:
        """One frame in the connection's encoding: JSON text, or MessagePack binary."""
        data = self.codec.encode(frame)
        if self.codec.binary:
            await ws.send_bytes(data)
        else:
            await ws.send_str(data.decode())

    async def _request(self, frame: frames.ClientFrame) -> frames.ServerFrame:
        if self._closed:
            raise ClientClosed("client closed")
        if self._fatal is not None:
            raise self._fatal
        await self.connected.wait()
        ref = getattr(frame, "id", None)
        assert ref is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await self._write(frame)
        except BaseException:
            self._pending.pop(ref, None)
            raise
        result: frames.ServerFrame = await future
        return result

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)
