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
  ``react``, ``unreact``), replies and thread replies as ``rich`` messages; ``fold``/``Timeline``
  (``roost.protocol.relations``) turn them into what an app shows (``Timeline.thread(root)`` a thread).
* The wire: JSON by default; ``encoding="msgpack"`` asks for the subprotocol ``roost.v1.msgpack`` (the same
  frames as MessagePack maps in binary frames), ``compression=True`` offers permessage-deflate, which a server
  with ``ws_compression = deflate`` accepts (docs/protocol.md, "Encodings and compression").
* The user's event stream (invitations, rooms they were added to or removed from, mentions, read
  positions: docs/protocol.md section 19) is followed after every welcome, from its cursor in ``cursors``
  like a room's, and yields typed ``InboxEvent`` items through ``inbox_events()``; a room someone else
  added the user to is followed at once.

The parts: ``outbox.py`` (sends until acked), ``rooms.py`` (RoomSync per room, gap repair, resync),
``link.py`` (the connection loop and frame routing), ``core.py`` (their shared state and the wire);
this module is the application's API on top of them.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import msgspec

from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.rich import Attachment
from .core import FollowedRoom, Outgoing
from .errors import ClientClosed, ConnectionLost, RequestFailed
from .events import Cursor, InboxItem, Incoming, Resynced, Sent
from .link import Link

__all__ = ["Client", "Cursor", "Resynced", "Sent", "connect"]


class _ErrorBody(msgspec.Struct):
    code: int
    reason: str
    retry_after_s: float | None = None


class _ErrorAnswer(msgspec.Struct):
    error: _ErrorBody


def http_base(ws_url: str) -> str:
    """The HTTP origin of a WebSocket URL: ``ws://host:port/ws`` is ``http://host:port``."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class Client(Link):
    """``Client(urls, token, cursors=..., ...)``: the parameters are ``ClientCore``'s, which holds the state."""

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
        self._inbox_items.put_nowait(None)

    # ---- the application's API --------------------------------------------------------------

    @property
    def cursors(self) -> dict[str, Cursor]:
        """Where each followed room stands: save this to resume after a restart."""
        return {room: r.cursor for room, r in self._rooms.items() if r.cursor is not None}

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

    async def decline(self, room: str) -> None:
        """Decline my invitation to ``room`` (4404 when I hold none)."""
        await self._request(frames.Decline(room=room, id=self._next_id()))

    async def revoke_invite(self, room: str, user: str) -> None:
        """Take back the invitation of ``user`` (mine, or any as an owner or admin of ``room``)."""
        await self._request(frames.Uninvite(room=room, user=user, id=self._next_id()))

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
            entry = self._rooms[room] = FollowedRoom(cursor)
        if self._ws is not None and not self._ws.closed:
            await self._subscribe(room, entry)
        await entry.subscribed.wait()
        return entry.start

    async def unsubscribe(self, room: str) -> None:
        if self._rooms.pop(room, None) is not None:
            await self._request(frames.Unsubscribe(room=room, id=self._next_id()))

    async def send(
        self,
        room: str,
        body: str,
        cmid: str | None = None,
        *,
        reply_to: int | None = None,
        thread: int | None = None,
        attachments: Sequence[str] = (),
    ) -> Sent:
        """Store ``body`` in ``room``; return after the durable ack. Safe to call while disconnected.

        ``reply_to``: the seq of the message this one replies to; ``thread``: the seq of the root of the thread
        this one is a reply in (docs/protocol.md section 22); ``attachments``: ids of my uploads to the room
        (``upload``, section 25) the message carries. Each makes it a ``rich`` message."""
        if self._closed:
            raise ClientClosed("client closed")
        cmid = cmid or uuid.uuid4().hex
        existing = self._outbox.get(cmid)
        if existing is not None:
            return await asyncio.shield(existing.future)
        future = asyncio.get_running_loop().create_future()
        out = Outgoing(room, cmid, body, future, reply_to=reply_to, thread=thread, attachments=tuple(attachments))
        # The outbox keeps sending after a caller gave up waiting (shield); if the client then closes, nobody is
        # left to read the future's ClientClosed, and asyncio would log it as an error. Marking it read is
        # enough: a caller still waiting gets the exception all the same.
        out.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._outbox[cmid] = out
        self._transmit(out)
        return await asyncio.shield(out.future)

    async def upload(self, room: str, data: bytes, name: str) -> Attachment:
        """Upload a file to ``room`` over HTTP (``POST /api/rooms/{room}/attachments``, docs/protocol.md section 25),
        to the node of the first URL; name the answer's ``id`` in ``send(..., attachments=[id])``. Raises
        ``RequestFailed`` with the server's code (4413 too large, 4415 a type not accepted, 4403/4404 not a member,
        4429), ``ConnectionLost`` when the node cannot be reached (upload again: an unsent upload is removed after
        ``attachment_orphan_s``)."""
        if self._closed:
            raise ClientClosed("client closed")
        base = http_base(self.urls[0])
        path = f"{base}/api/rooms/{quote(room, safe='')}/attachments"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/octet-stream"}
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.post(path, params={"name": name}, data=io.BytesIO(data), headers=headers) as answer,
            ):
                raw = await answer.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(f"upload to {base} failed: {exc}") from None
        if answer.status != 201:
            try:
                error = msgspec.json.decode(raw, type=_ErrorAnswer).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise RequestFailed(f"upload answered {answer.status}", None) from None
            raise RequestFailed(error.reason, Code(error.code), error.retry_after_s)
        return msgspec.json.decode(raw, type=Attachment)

    async def edit(self, room: str, target: int, body: str, cmid: str | None = None) -> Sent:
        """Replace the text of my message ``target``; returns after the durable ack of the ``edit`` event.

        Unlike ``send`` this is not kept in an outbox: on ``ConnectionLost`` call it again with the same
        ``cmid`` (the server answers a stored edit as a duplicate)."""
        cmid = cmid or uuid.uuid4().hex
        return await self._relation(frames.Edit(room=room, target=target, body=body, cmid=cmid, id=self._next_id()))

    async def delete(self, room: str, target: int, cmid: str | None = None, *, erase: bool = False) -> Sent:
        """Delete message ``target`` (mine, or any in a room I moderate). Safe to retry: without ``cmid``
        the server derives the key from the target, so a repeat is answered as a duplicate. ``erase``: the
        text also leaves the server's store (docs/protocol.md, R-ERASE-1)."""
        frame = frames.Delete(room=room, target=target, cmid=cmid, erase=erase, id=self._next_id())
        return await self._relation(frame)

    async def react(self, room: str, target: int, emoji: str, *, remove: bool = False) -> Sent:
        """Put ``emoji`` on message ``target`` (or take it back with ``remove``). Safe to retry: one
        reaction per user, target and emoji; a repeat is answered with the earlier event."""
        frame = frames.React(room=room, target=target, emoji=emoji, remove=remove, id=self._next_id())
        return await self._relation(frame)

    async def _relation(self, frame: frames.Edit | frames.Delete | frames.React) -> Sent:
        reply = await self._request(frame)
        assert isinstance(reply, frames.Ack)
        return Sent(reply.room, reply.cmid, reply.seq, reply.ts, reply.dup)

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

    def inbox_events(self) -> AsyncIterator[InboxItem]:
        """The user's event stream, each event once and in order (``InboxEvent``; ``Resynced`` when its
        continuity was lost), across reconnects. Ends when the client closes."""
        return self._iterate_inbox()

    async def _iterate_inbox(self) -> AsyncIterator[InboxItem]:
        while True:
            item = await self._inbox_items.get()
            if item is None:
                self._inbox_items.put_nowait(None)
                return
            yield item

    async def receive_inbox(self, timeout_s: float | None = None) -> InboxItem:
        """The next item of the user's event stream (raises TimeoutError after ``timeout_s``)."""
        item = await asyncio.wait_for(self._inbox_items.get(), timeout_s)
        if item is None:
            self._inbox_items.put_nowait(None)
            raise ClientClosed("client closed")
        return item

    async def receive(self, timeout_s: float | None = None) -> Incoming:
        """The next incoming item (raises TimeoutError after ``timeout_s``)."""
        item = await asyncio.wait_for(self._incoming.get(), timeout_s)
        if item is None:
            self._incoming.put_nowait(None)
            raise ClientClosed("client closed")
        return item


def connect(urls: str | Sequence[str], token: str, **kwargs: Any) -> Client:
    """``async with connect(url, token) as client: ...``"""
    return Client(urls, token, **kwargs)
