"""Following rooms: one client-side RoomSync per room drops duplicates and repairs gaps from history.

The cursor advances before a message is handed over; a gap seen on the live stream is read from history
(with a growing wait after failed reads), and a room whose continuity is lost is announced with
``Resynced`` and followed again from the oldest message the server still has.

The user's event stream (``welcome.inbox``) is followed the same way, as a room; its messages are handed
over as typed ``InboxEvent`` items on their own queue, and a room someone else added the user to (``added``,
a direct conversation opened with them) is followed at once, from the user's join on [R-CLIENT-73].
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from ..protocol import frames
from ..protocol.inbox import Added, decode_event
from ..protocol.sync import Deliver, Fetch, Resync, RoomSync
from ..protocol.types import Message, Position
from .backoff import retry_delay
from .core import ClientCore, FollowedRoom
from .errors import ClientClosed, ConnectionLost, RequestFailed
from .events import Cursor, Resynced

__all__ = ["Rooms"]

GAP_PAGE: Final = 100
"""Messages asked per gap-repair read. A ``history`` request costs frame budget by the messages it asks for,
and the server bounds a page by bytes anyway (16 of 16 KiB messages fill one): asking 100 rather than 500
repairs a gap of big messages five times cheaper, and one of small ones at the same price per message."""


class Rooms(ClientCore):
    """``history`` lives here: it serves the application's page reads and this part's gap repair alike."""

    async def history(
        self,
        room: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 50,
        thread: int | None = None,
    ) -> frames.HistoryPage:
        """A page of at most ``limit`` messages, and at most the server's page bytes (256 KiB by default, at
        least one message): ``has_more`` says more follow (R-HIST-50). Gap repair reads on from each page's
        last seq while it is below the page's ``head`` (R-CLIENT-50), so a short page is never an end.
        ``thread``: only the thread of that root, the root and its replies (its seqs are not dense)."""
        reply = await self._request(
            frames.History(room=room, after=after, before=before, limit=limit, id=self._next_id(), thread=thread)
        )
        assert isinstance(reply, frames.HistoryPage)
        return reply

    async def _subscribe(self, room: str, entry: FollowedRoom) -> None:
        cursor = entry.cursor
        entry.sync = None
        entry.sub_id = f"sub:{room}:{self._next_id()}"
        frame = frames.Subscribe(
            room=room,
            after=cursor.seq if cursor else None,
            epoch=cursor.epoch if cursor else None,
            id=entry.sub_id,
        )
        await self._write(frame)

    async def _subscribe_quietly(self, room: str, entry: FollowedRoom) -> None:
        with contextlib.suppress(ConnectionLost, ConnectionError, RuntimeError):
            await self._subscribe(room, entry)

    def _on_subscribed(self, frame: frames.Subscribed) -> None:
        entry = self._rooms.get(frame.room)
        if entry is None or (frame.ref is not None and frame.ref != entry.sub_id):
            return  # not ours, or answers a subscribe that a later one replaced
        # The server's backlog starts right after ``frame.after``: that is the cursor from now on
        # (equal to ours when we had one; the server's choice when we asked for "from now").
        cursor = entry.cursor = entry.start = Cursor(frame.epoch, frame.after)
        entry.sync = RoomSync.resumed(cursor.seq, cursor.epoch, page_limit=GAP_PAGE)
        entry.subscribed.set()

    def _on_message(self, message: Message) -> None:
        entry = self._rooms.get(message.room)
        if entry is None or entry.sync is None:
            return
        if entry.sync.live(message):
            self._deliver(entry, message)
        else:
            self._run_sync(message.room, entry)

    def _deliver(self, entry: FollowedRoom, message: Message) -> None:
        epoch = entry.cursor.epoch if entry.cursor else None
        entry.cursor = Cursor(epoch, message.seq)
        if message.room == self.inbox:
            self._on_inbox_event(message)
        else:
            self._incoming.put_nowait(message)

    def _on_inbox_event(self, message: Message) -> None:
        event = decode_event(message)
        content = event.content
        if isinstance(content, Added) and content.by != self.user and content.room not in self._rooms:
            # Someone else made the user a member (a direct conversation, an API key): follow it from the join.
            self._follow_added(content.room, Cursor(None, max(0, content.seq - 1)))
        self._inbox_items.put_nowait(event)

    def _follow_added(self, room: str, cursor: Cursor) -> None:
        entry = self._rooms[room] = FollowedRoom(cursor)
        if self._ws is not None and not self._ws.closed:
            self._spawn(self._subscribe_quietly(room, entry))

    def _run_sync(self, room: str, entry: FollowedRoom) -> None:
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

    async def _fill(self, room: str, entry: FollowedRoom, fetch: Fetch) -> None:
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
            # A 4429 (over the frame budget) names its wait: asking sooner only earns strikes (R-RATE-4x).
            retry_after = exc.retry_after_s if isinstance(exc, RequestFailed) else None
            await asyncio.sleep(retry_delay(retry_after, entry.fill_failures))
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

    def _retry_subscribe(self, room: str) -> None:
        entry = self._rooms.get(room)
        if entry is not None and not entry.subscribed.is_set() and self._ws is not None and not self._ws.closed:
            self._spawn(self._subscribe_quietly(room, entry))

    def _resync(self, room: str, reason: str, position: Position | None) -> None:
        entry = self._rooms.get(room)
        if entry is None:
            return
        resynced = Resynced(room, reason, position)
        if room == self.inbox:
            self._inbox_items.put_nowait(resynced)
        else:
            self._incoming.put_nowait(resynced)
        if position is not None:
            entry.cursor = Cursor(position.epoch, max(0, position.first - 1))
        else:
            entry.cursor = None
        if self._ws is not None and not self._ws.closed:
            self._spawn(self._subscribe_quietly(room, entry))
