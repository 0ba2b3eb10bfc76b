"""The connection loop: connect, authenticate, resume every room and re-send the outbox, then read and route.

One connection at a time, over the given URLs in turn with exponential backoff and jitter; a 4401/4403
during authentication ends the client, anything else reconnects. Each frame read is routed to the part
that owns it: a message or subscription to ``Rooms``, an ack or a refused send to ``Outbox``, a reply to
the request that waits for it.
"""

from __future__ import annotations

import asyncio
import itertools

import aiohttp

from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.types import Message, Position
from .backoff import backoff
from .core import FollowedRoom, log
from .errors import ConnectionLost, RequestFailed
from .events import Sent
from .outbox import Outbox
from .rooms import Rooms

__all__ = ["Link"]


class Link(Rooms, Outbox):
    """The loop that owns the socket (``_run``, ``_connection``) and routes what it reads (``_on_frame``)."""

    async def _run(self) -> None:
        delays = backoff(self._initial_backoff_s, 2.0, self._max_backoff_s)
        for attempt in itertools.count():
            url = self.urls[attempt % len(self.urls)]
            try:
                await self._connection(url)
            except RequestFailed as exc:
                if exc.code in (Code.UNAUTHORIZED, Code.FORBIDDEN):
                    self._fatal = exc
                    raise
                self._last_error = exc
                log.debug("connection to %s ended: %s", url, exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionLost) as exc:
                self._last_error = exc
                log.debug("connection to %s failed: %s", url, exc)
            finally:
                if self.connected.is_set():
                    # It was authenticated and live: a later drop starts from the shortest delay again
                    # (and, with the attempt count moving on, at the next URL: fail-over on 4504).
                    delays = backoff(self._initial_backoff_s, 2.0, self._max_backoff_s)
                self.connected.clear()
                self.url = None
                self._ws = None
                self._fail_pending(ConnectionLost("connection lost"))
            self.reconnects += 1
            await asyncio.sleep(next(delays))

    async def _connection(self, url: str) -> None:
        assert self._http is not None
        codec = self.codec
        ws = await self._http.ws_connect(
            url,
            heartbeat=self._heartbeat_s,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            max_msg_size=16 * 1024 * 1024,
            protocols=(codec.subprotocol,),
            compress=15 if self.compression else 0,
        )
        data_kind = aiohttp.WSMsgType.BINARY if codec.binary else aiohttp.WSMsgType.TEXT
        try:
            if ws.protocol != codec.subprotocol and codec.binary:
                # A server that does not know the subprotocol answers without one and speaks JSON (R-WIRE-9).
                raise RequestFailed(f"the server does not speak {codec.subprotocol}", Code.BAD_FRAME)
            await self._send_frame(ws, frames.Auth(token=self.token))
            first = await ws.receive(timeout=self._connect_timeout_s)
            if first.type is not data_kind:
                raise ConnectionLost(f"connection closed during auth ({ws.close_code})")
            welcome = codec.decode_server(codec.split(first.data)[0])
            if isinstance(welcome, frames.Error):
                raise RequestFailed(welcome.reason, Code(welcome.code))
            if not isinstance(welcome, frames.Welcome):
                raise ConnectionLost("expected a welcome frame")
            self.user = welcome.user
            self.url = url
            self._ws = ws
            self.inbox = welcome.inbox
            if welcome.inbox is not None and self._follow_inbox and welcome.inbox not in self._rooms:
                # Followed like any room: from its saved cursor (``cursors``), else from now.
                self._rooms[welcome.inbox] = FollowedRoom(self._initial_cursors.get(welcome.inbox))
            for room, entry in self._rooms.items():
                entry.subscribed.clear()
                entry.fetching = False
                await self._subscribe(room, entry)
            for out in list(self._outbox.values()):
                self._transmit(out)
            self.connected.set()
            async for msg in ws:
                if not self._reading.is_set():
                    await self._reading.wait()
                if msg.type is data_kind:
                    for part in codec.split(msg.data):
                        self._on_frame(codec.decode_server(part))
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE):
                    break
            raise ConnectionLost(f"connection closed ({ws.close_code})")
        finally:
            await ws.close()

    def _on_frame(self, frame: frames.ServerFrame) -> None:
        if isinstance(frame, Message):
            self._on_message(frame)
        elif isinstance(frame, frames.Ack):
            request = self._pending.pop(frame.ref, None) if frame.ref is not None else None
            if request is not None:  # an edit, delete or react (sends are matched by cmid)
                if not request.done():
                    request.set_result(frame)
                return
            out = self._outbox.pop(frame.cmid, None)
            if out is not None and not out.future.done():
                out.future.set_result(Sent(frame.room, frame.cmid, frame.seq, frame.ts, frame.dup))
        elif isinstance(frame, frames.Subscribed):
            self._on_subscribed(frame)
        elif isinstance(frame, frames.Error):
            self._on_error(frame)
        elif isinstance(frame, frames.TypingEvent):
            self._incoming.put_nowait(frame)
        elif isinstance(frame, frames.Live):
            pass
        else:
            ref = getattr(frame, "ref", None)
            future = self._pending.pop(ref, None) if ref is not None else None
            if future is not None and not future.done():
                future.set_result(frame)

    def _on_error(self, frame: frames.Error) -> None:
        if frame.code == Code.RESYNC_REQUIRED and frame.room is not None and frame.room in self._rooms:
            position = None
            if frame.epoch is not None and frame.head is not None:
                position = Position(frame.epoch, frame.head, frame.first or 1)
            self._resync(frame.room, frame.reason, position)
            return
        ref = frame.ref
        if ref is None:
            if frame.code == Code.FORBIDDEN and frame.room is not None and frame.room in self._rooms:
                # Left, kicked or banned (on any device or node): the server ended the subscription, so
                # the room is not followed any more (and not resubscribed on reconnect).
                del self._rooms[frame.room]
                log.info("no longer a member of %s: %s", frame.room, frame.reason)
                return
            log.warning("server error %s: %s", frame.code, frame.reason)
            return
        future = self._pending.pop(ref, None)
        if future is not None:
            if not future.done():
                future.set_exception(RequestFailed(frame.reason, Code(frame.code), frame.retry_after_s))
            return
        if ref.startswith("send:"):
            self._on_send_error(ref.removeprefix("send:"), frame)
        elif ref.startswith("sub:") and frame.room in self._rooms:
            if Code(frame.code).retryable:
                # The server could not serve the room just now (store or bus down): try again later;
                # the room stays followed and resumes from its cursor.
                room = frame.room
                delay = frame.retry_after_s or 0.5
                asyncio.get_running_loop().call_later(delay, self._retry_subscribe, room)
                return
            entry = self._rooms.pop(frame.room)
            entry.subscribed.set()
            log.warning("subscribe to %s refused: %s", frame.room, frame.reason)
