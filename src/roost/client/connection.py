"""The Roost client SDK: one object that stays connected, resumes rooms and never loses a send.

What it guarantees to the application:

* ``send()`` returns only after the server's durable ack (with the message's seq). Until then the
  message sits in an outbox and is re-sent, with the same client message id, on every reconnect:
  the server's idempotency turns retries into one stored message.
* Iterating the client yields each message of each subscribed room once, in seq order. After a
  reconnect each room is resubscribed from its cursor; a client-side RoomSync drops duplicates and
  repairs any gap from history. The cursor advances before the message is handed over.
* Reconnects back off exponentially with jitter and rotate over the given URLs.
* If a room cannot be continued (history trimmed past the cursor, room recreated), a ``Resynced``
  event is yielded and the room is followed again from the oldest message the server still has.
* Edits, deletions and reactions arrive as messages of their own kinds (``edit``, ``delete``,
  ``react``, ``unreact``); ``fold``/``Timeline`` (``roost.protocol.relations``) turn them into what an
  app shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.sync import Deliver, Fetch, Resync, RoomSync
from ..protocol.types import Message, Position
from .backoff import backoff, retry_delay
from .errors import ClientClosed, ConnectionLost, RequestFailed

__all__ = ["Client", "Cursor", "Resynced", "Sent", "connect"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class Sent:
    room: str
    cmid: str
    seq: int
    ts: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Resynced:
    """The room's continuity was lost (trimmed or recreated history); it restarts at ``position.first``."""

    room: str
    reason: str
    position: Position | None


Incoming = Message | frames.TypingEvent | Resynced


@dataclass
class _Outgoing:
    room: str
    cmid: str
    body: str
    future: asyncio.Future[Sent]
    not_before: float = 0.0
    refusals: int = 0
    """Retryable refusals in a row (4429, 4500, 4503): each waits longer (``retry_delay``)."""


@dataclass
class _Room:
    cursor: Cursor | None
    sync: RoomSync[Message] | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: bool = False
    start: Cursor | None = None
    fill_failures: int = 0
    """Gap reads in a row that failed: the next one waits ``retry_delay`` (a quiet room has no later
    message to trigger it, and a failing store must not be asked again at once)."""


class Client:
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
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one URL is needed")
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
        self._rooms: dict[str, _Room] = {}
        self._initial_cursors = dict(cursors or {})
        self._outbox: dict[str, _Outgoing] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._incoming: asyncio.Queue[Incoming | None] = asyncio.Queue()
        self._ids: Iterator[int] = itertools.count(1)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self._fatal: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = asyncio.Event()
        self._reading.set()

    # ---- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self, wait: bool = True) -> None:
        """Start connecting in the background; with ``wait``, return once the first connection is up.

        Waiting gives up after ``start_timeout_s`` (None: never) with ``ConnectionLost`` naming the URLs
        and the last failure, and a failed start closes the client (no session is left open)."""
        if self._runner is None:
            self._http = aiohttp.ClientSession()
            self._runner = asyncio.create_task(self._run(), name="roost-client")
        if not wait:
            return
        waiter = asyncio.create_task(self.connected.wait())
        done, _ = await asyncio.wait(
            {waiter, self._runner}, timeout=self._start_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter in done:
            return
        waiter.cancel()
        if self._runner in done:
            await self.aclose()
            self._runner.result()  # raises what ended it (4401/4403 during authentication)
        await self.aclose()
        last = self._last_error
        cause = "no attempt finished" if last is None else f"{type(last).__name__}: {last}"
        raise ConnectionLost(
            f"could not connect to {', '.join(self.urls)} within {self._start_timeout_s:g} s (last error: {cause})"
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        closed = ClientClosed("client closed")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(closed)
        for out in self._outbox.values():
            if not out.future.done():
                out.future.set_exception(closed)
        self._incoming.put_nowait(None)

    # ---- the application's API --------------------------------------------------------------

    @property
    def cursors(self) -> dict[str, Cursor]:
        """Where each followed room stands: save this to resume after a restart."""
        return {room: r.cursor for room, r in self._rooms.items() if r.cursor is not None}

    @property
    def unacked(self) -> int:
        return len(self._outbox)

    async def reconnect(self) -> None:
        """Drop the current connection (as a network failure would); the client reconnects and resumes."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    def pause_reading(self) -> None:
        """Stop reading from the socket (flow control). A server that cannot deliver closes with 4508."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    async def create(self, room: str, kind: str = "public") -> None:
        """``kind``: ``public`` or ``private`` (joined by invitation only)."""
        await self._request(frames.Create(room=room, kind=kind, id=self._next_id()))

    async def dm(self, user: str) -> str:
        """Open the direct conversation with ``user``; returns its room (``dm:<a>:<b>``)."""
        reply = await self._request(frames.Dm(user=user, id=self._next_id()))
        assert isinstance(reply, frames.Ok)
        return reply.room

    async def invite(self, room: str, user: str) -> None:
        await self._request(frames.Invite(room=room, user=user, id=self._next_id()))

    async def kick(self, room: str, user: str) -> None:
        await self._request(frames.Kick(room=room, user=user, id=self._next_id()))

    async def ban(self, room: str, user: str) -> None:
        await self._request(frames.Ban(room=room, user=user, id=self._next_id()))

    async def unban(self, room: str, user: str) -> None:
        await self._request(frames.Unban(room=room, user=user, id=self._next_id()))

    async def set_role(self, room: str, user: str, role: str) -> None:
        """Owner only: ``admin`` or ``member``."""
        await self._request(frames.Role(room=room, user=user, role=role, id=self._next_id()))

    async def join(self, room: str) -> None:
        await self._request(frames.Join(room=room, id=self._next_id()))

    async def leave(self, room: str) -> None:
        self._rooms.pop(room, None)
        await self._request(frames.Leave(room=room, id=self._next_id()))

    async def subscribe(self, room: str, after: int | None = None, epoch: str | None = None) -> Cursor | None:
        """Follow ``room`` from ``after`` (default: the saved cursor, else the room's current head).

        Returns once the server has confirmed, with the cursor the room is followed from (the next
        message is ``seq + 1``), or None if the server refused; the backlog arrives through iteration.
        """
        if after is not None:
            cursor: Cursor | None = Cursor(epoch, after)
        else:
            cursor = self._initial_cursors.get(room)
        entry = self._rooms.get(room)
        if entry is None or after is not None:
            entry = self._rooms[room] = _Room(cursor)
        if self._ws is not None and not self._ws.closed:
            await self._subscribe(room, entry)
        await entry.subscribed.wait()
        return entry.start

    async def unsubscribe(self, room: str) -> None:
        if self._rooms.pop(room, None) is not None:
            await self._request(frames.Unsubscribe(room=room, id=self._next_id()))

    async def send(self, room: str, body: str, cmid: str | None = None) -> Sent:
        """Store ``body`` in ``room``; return after the durable ack. Safe to call while disconnected."""
        if self._closed:
            raise ClientClosed("client closed")
        cmid = cmid or uuid.uuid4().hex
        existing = self._outbox.get(cmid)
        if existing is not None:
            return await asyncio.shield(existing.future)
        out = _Outgoing(room, cmid, body, asyncio.get_running_loop().create_future())
        self._outbox[cmid] = out
        self._transmit(out)
        return await asyncio.shield(out.future)

    async def edit(self, room: str, target: int, body: str, cmid: str | None = None) -> Sent:
        """Replace the text of my message ``target``; returns after the durable ack of the ``edit`` event.

        Unlike ``send`` this is not kept in an outbox: on ``ConnectionLost`` call it again with the same
        ``cmid`` (the server answers a stored edit as a duplicate)."""
        cmid = cmid or uuid.uuid4().hex
        return await self._relation(frames.Edit(room=room, target=target, body=body, cmid=cmid, id=self._next_id()))

    async def delete(self, room: str, target: int, cmid: str | None = None) -> Sent:
        """Delete message ``target`` (mine, or any in a room I moderate). Safe to retry: without ``cmid``
        the server derives the key from the target, so a repeat is answered as a duplicate."""
        return await self._relation(frames.Delete(room=room, target=target, cmid=cmid, id=self._next_id()))

    async def react(self, room: str, target: int, emoji: str, *, remove: bool = False) -> Sent:
        """Put ``emoji`` on message ``target`` (or take it back with ``remove``). Safe to retry: one
        reaction per user, target and emoji; a repeat is answered with the earlier event."""
        frame = frames.React(room=room, target=target, emoji=emoji, remove=remove, id=self._next_id())
        return await self._relation(frame)

    async def _relation(self, frame: frames.Edit | frames.Delete | frames.React) -> Sent:
        reply = await self._request(frame)
        assert isinstance(reply, frames.Ack)
        return Sent(reply.room, reply.cmid, reply.seq, reply.ts, reply.dup)

    async def history(
        self, room: str, *, after: int | None = None, before: int | None = None, limit: int = 50
    ) -> frames.HistoryPage:
        reply = await self._request(
            frames.History(room=room, after=after, before=before, limit=limit, id=self._next_id())
        )
        assert isinstance(reply, frames.HistoryPage)
        return reply

    async def typing(self, room: str) -> None:
        await self._write(frames.Typing(room=room))

    def __aiter__(self) -> AsyncIterator[Incoming]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Incoming]:
        while True:
            item = await self._incoming.get()
            if item is None:
                self._incoming.put_nowait(None)
                return
            yield item

    async def receive(self, timeout_s: float | None = None) -> Incoming:
        """The next incoming item (raises TimeoutError after ``timeout_s``)."""
        item = await asyncio.wait_for(self._incoming.get(), timeout_s)
        if item is None:
            self._incoming.put_nowait(None)
            raise ClientClosed("client closed")
        return item

    # ---- connection loop --------------------------------------------------------------------

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
        ws = await self._http.ws_connect(
            url,
            heartbeat=self._heartbeat_s,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            max_msg_size=16 * 1024 * 1024,
        )
        try:
            await ws.send_str(frames.encode(frames.Auth(token=self.token)).decode())
            first = await ws.receive(timeout=self._connect_timeout_s)
            if first.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionLost(f"connection closed during auth ({ws.close_code})")
            welcome = frames.decode_server(frames.split(first.data)[0])
            if isinstance(welcome, frames.Error):
                raise RequestFailed(welcome.reason, Code(welcome.code))
            if not isinstance(welcome, frames.Welcome):
                raise ConnectionLost("expected a welcome frame")
            self.user = welcome.user
            self.url = url
            self._ws = ws
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
                if msg.type is aiohttp.WSMsgType.TEXT:
                    for part in frames.split(msg.data):
                        self._on_frame(frames.decode_server(part))
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE):
                    break
            raise ConnectionLost(f"connection closed ({ws.close_code})")
        finally:
            await ws.close()

    async def _subscribe(self, room: str, entry: _Room) -> None:
        cursor = entry.cursor
        entry.sync = None
        frame = frames.Subscribe(
            room=room,
            after=cursor.seq if cursor else None,
            epoch=cursor.epoch if cursor else None,
            id=f"sub:{room}:{self._next_id()}",
        )
        await self._write(frame)

    # ---- incoming frames --------------------------------------------------------------------

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

    def _on_subscribed(self, frame: frames.Subscribed) -> None:
        entry = self._rooms.get(frame.room)
        if entry is None:
            return
        # The server's backlog starts right after ``frame.after``: that is the cursor from now on
        # (equal to ours when we had one; the server's choice when we asked for "from now").
        cursor = entry.cursor = entry.start = Cursor(frame.epoch, frame.after)
        entry.sync = RoomSync.resumed(cursor.seq, cursor.epoch)
        entry.subscribed.set()

    def _on_message(self, message: Message) -> None:
        entry = self._rooms.get(message.room)
        if entry is None or entry.sync is None:
            return
        if entry.sync.live(message):
            self._deliver(entry, message)
        else:
            self._run_sync(message.room, entry)

    def _deliver(self, entry: _Room, message: Message) -> None:
        epoch = entry.cursor.epoch if entry.cursor else None
        entry.cursor = Cursor(epoch, message.seq)
        self._incoming.put_nowait(message)

    def _run_sync(self, room: str, entry: _Room) -> None:
        assert entry.sync is not None
        for action in entry.sync.take_actions():
            if isinstance(action, Deliver):
                for message in action.items:
                    self._deliver(entry, message)
            elif isinstance(action, Fetch) and not entry.fetching:
                entry.fetching = True
                self._spawn(self._fill(room, entry, action))
            elif isinstance(action, Resync):
                self._resync(room, action.reason, action.position)

    async def _fill(self, room: str, entry: _Room, fetch: Fetch) -> None:
        """Repair a gap seen on the live stream from history."""
        sync = entry.sync
        try:
            page = await self.history(room, after=fetch.after, limit=fetch.limit)
        except (RequestFailed, ConnectionLost, ClientClosed) as exc:
            entry.fetching = False
            if sync is None or entry.sync is not sync:
                return
            sync.fetch_failed()
            if isinstance(exc, ClientClosed):
                return
            entry.fill_failures += 1
            entry.fetching = True  # the read is queued in the machine; nobody else may start it meanwhile
            await asyncio.sleep(retry_delay(None, entry.fill_failures))
            entry.fetching = False
            if entry.sync is sync and not self._closed:
                self._run_sync(room, entry)
            return
        entry.fetching = False
        entry.fill_failures = 0
        if sync is None or entry.sync is not sync:
            return
        sync.page(page.messages, Position(page.epoch, page.head, page.first))
        self._run_sync(room, entry)

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
                future.set_exception(RequestFailed(frame.reason, Code(frame.code)))
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

    def _retry_subscribe(self, room: str) -> None:
        entry = self._rooms.get(room)
        if entry is not None and not entry.subscribed.is_set() and self._ws is not None and not self._ws.closed:
            self._spawn(self._subscribe_quietly(room, entry))

    def _on_send_error(self, cmid: str, frame: frames.Error) -> None:
        out = self._outbox.get(cmid)
        if out is None:
            return
        code = Code(frame.code)
        if code.retryable:
            out.refusals += 1
            delay = retry_delay(frame.retry_after_s, out.refusals)
            out.not_before = asyncio.get_running_loop().time() + delay
            asyncio.get_running_loop().call_later(delay, self._transmit, out)
            return
        del self._outbox[cmid]
        if not out.future.done():
            out.future.set_exception(RequestFailed(frame.reason, code))

    def _resync(self, room: str, reason: str, position: Position | None) -> None:
        entry = self._rooms.get(room)
        if entry is None:
            return
        self._incoming.put_nowait(Resynced(room, reason, position))
        if position is not None:
            entry.cursor = Cursor(position.epoch, max(0, position.first - 1))
        else:
            entry.cursor = None
        if self._ws is not None and not self._ws.closed:
            self._spawn(self._subscribe_quietly(room, entry))

    # ---- outgoing ---------------------------------------------------------------------------

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _transmit(self, out: _Outgoing) -> None:
        if self._ws is None or self._ws.closed or out.future.done() or out.cmid not in self._outbox:
            return
        frame = frames.Send(room=out.room, cmid=out.cmid, body=out.body, id=f"send:{out.cmid}")
        self._spawn(self._write_quietly(frame))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _subscribe_quietly(self, room: str, entry: _Room) -> None:
        with contextlib.suppress(ConnectionLost, ConnectionError, RuntimeError):
            await self._subscribe(room, entry)

    async def _write_quietly(self, frame: frames.ClientFrame) -> None:
        with contextlib.suppress(ConnectionLost, ConnectionError, RuntimeError):
            await self._write(frame)

    async def _write(self, frame: frames.ClientFrame) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionLost("not connected")
        await ws.send_str(frames.encode(frame).decode())

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


def connect(urls: str | Sequence[str], token: str, **kwargs: Any) -> Client:
    """``async with connect(url, token) as client: ...``"""
    return Client(urls, token, **kwargs)
