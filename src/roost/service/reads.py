"""Reading a room: history pages, catch-up pages, multi-room sync and read positions, each behind the
membership check.

Every page is served through the node's ``RelationIndex``, so a deleted message is a tombstone on every
read path (``history``, a subscription's ``catchup``, ``sync``), and bounded by bytes as well as by count
(``pages.PageReader``: ``max_page_bytes`` per page, ``max_sync_bytes`` per sync answer). A read position is
one per user per room, shared by the user's devices; moving it is stored and tells the room's followers with
an ephemeral ``receipt``, at most once per user and room per ``coalesce_s`` (the newest position wins), and
a ``read`` that moves nothing writes and tells nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Final

from ..coalesce import Coalescer
from ..config import Limits
from ..ports import Bus, Directory, Store
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError, RoostError
from ..protocol.inbox import ReadUpTo, is_inbox
from ..protocol.relations import counts_as_unread
from ..protocol.rich import mentions_user
from ..protocol.types import MAX_SEQ, Page, Position
from ..relindex import RelationIndex
from .pages import Bounded, PageReader
from .rooms import Rooms

__all__ = ["UNREAD_SCAN", "HistoryResult", "Reads", "SyncResult"]

UNREAD_SCAN: Final = 100
"""Messages after a read position that ``GET /api/rooms`` reads to count the unread ones by kind: exact up to
this many, each older one counted as a message (docs/protocol.md, R-READ-3)."""


@dataclass(frozen=True, slots=True)
class HistoryResult:
    page: Page
    has_more: bool
    size: int = 0
    """The encoded bytes of the page's messages."""


@dataclass(slots=True)
class SyncResult:
    """Per room read, its page or its error; ``next``: the rooms to ask for again, with the cursor to send
    (the rooms this answer left unread first, then those whose page has more)."""

    rooms: dict[str, HistoryResult | RoostError] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=dict)


class Reads:
    def __init__(
        self, store: Store, directory: Directory, bus: Bus, relations: RelationIndex, rooms: Rooms, limits: Limits
    ) -> None:
        self.store = store
        self.directory = directory
        self.bus = bus
        self.relations = relations
        self.rooms = rooms
        self.limits = limits
        self.pages = PageReader()
        self.receipts_out: Coalescer[tuple[str, str], int] = Coalescer(limits.coalesce_s, self._store_and_tell)
        self._known: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], int] = {}
        """(room, user) -> a position answered but not stored yet (coalesced): this node's reads show it."""
        """(room, user) -> a read position this node stored: a ``read`` at or below it moves nothing."""

    async def history(
        self,
        user: str,
        room: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 50,
        max_bytes: int | None = None,
        at_least_one: bool = True,
    ) -> HistoryResult:
        """A page of at most ``limit`` messages and ``max_bytes`` (``max_page_bytes`` when None) encoded
        bytes; ``has_more`` is true whenever messages in the page's direction were left out, for either
        bound. Empty only if nothing is there, or ``at_least_one`` is False and the first did not fit."""
        await self.rooms.check_member(user, room)
        limit = max(1, min(limit, self.limits.max_history_page))
        budget = self.limits.max_page_bytes if max_bytes is None else min(max_bytes, self.limits.max_page_bytes)
        for name, value in (("after", after), ("before", before)):
            if value is not None and not 0 <= value <= MAX_SEQ:
                raise ProtocolError(f"{name} must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        if after is not None and before is not None:
            raise ProtocolError("give after or before, not both", Code.BAD_FRAME)
        if before is not None or after is None:
            start = MAX_SEQ if before is None else before
            bounded = await self._backward(room, start, limit, budget)
            page = bounded.page
            oldest = page.messages[0].seq if page.messages else min(start, page.position.head + 1)
            return HistoryResult(page, oldest > page.position.first, bounded.size)
        if after < 0:
            raise ProtocolError("after must be >= 0", Code.BAD_FRAME)
        bounded = await self._forward(room, after, limit, budget, at_least_one)
        page = bounded.page
        newest = page.messages[-1].seq if page.messages else after
        return HistoryResult(page, newest < page.position.head, bounded.size)

    async def catchup(self, room: str, after: int, limit: int) -> Bounded:
        """A page with tombstones applied, within ``max_page_bytes``, each message already encoded: what a
        subscription's catch-up delivers (membership is checked by the subscribe)."""
        return await self._forward(room, after, limit, self.limits.max_page_bytes, True)

    async def sync(self, user: str, cursors: dict[str, int], limit: int) -> SyncResult:
        """Each room's messages after its cursor, like ``history`` with ``after``, until the answer's messages
        reach ``max_sync_bytes`` [R-HTTP-50]: rooms after that are not read, and are in ``next`` (first) with
        their cursor unchanged; rooms whose page has more are in ``next`` with their page's last seq."""
        out = SyncResult()
        more: dict[str, int] = {}
        left = self.limits.max_sync_bytes
        for room, cursor in cursors.items():
            if left <= 0:
                out.next[room] = cursor
                continue
            empty = left == self.limits.max_sync_bytes  # the answer's first message comes whatever its size
            try:
                result = await self.history(user, room, after=cursor, limit=limit, max_bytes=left, at_least_one=empty)
            except RoostError as exc:
                out.rooms[room] = exc
                continue
            out.rooms[room] = result
            left -= result.size
            if result.has_more:
                more[room] = result.page.messages[-1].seq if result.page.messages else cursor
                if not result.page.messages:
                    left = 0  # not even one message fitted: the answer is full
        out.next.update(more)
        return out

    async def _forward(self, room: str, after: int, limit: int, budget: int, at_least_one: bool) -> Bounded:
        async def read(seq: int, count: int) -> Page:
            return await self.store.read(room, seq, count)

        return await self.pages.forward(
            room, read, partial(self.relations.redact_page, room), after, limit, budget, at_least_one=at_least_one
        )

    async def _backward(self, room: str, before: int, limit: int, budget: int) -> Bounded:
        async def read(seq: int, count: int) -> Page:
            return await self.store.read_before(room, seq, count)

        return await self.pages.backward(room, read, partial(self.relations.redact_page, room), before, limit, budget)

    async def seq_before_time(self, user: str, room: str, ts_ms: int) -> int:
        await self.rooms.check_member(user, room)
        return await self.store.seq_before_time(room, ts_ms)

    async def mark_read(self, user: str, room: str, seq: int) -> int:
        """Move the user's read position forward (clamped to the head) and tell the room's followers.

        A position that does not move is neither written nor told. One that moves is stored and told at once
        when the (room, user) has not moved within ``coalesce_s``; otherwise it is stored and told at the end
        of that interval, with the newest position (``receipts_out``): read positions and receipts cost at
        most one store write and one fan-out per user and room per interval."""
        await self.rooms.check_member(user, room)
        if not 0 <= seq <= MAX_SEQ:
            raise ProtocolError(f"seq must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        key = (room, user)
        known = self._known.get(key)
        if known is not None and seq <= known:
            return known  # positions never move back: nothing to write or tell
        target = min(seq, (await self.store.position(room)).head)
        if known is not None and target <= known:
            return known
        if len(self._known) >= 100_000:
            self._known.clear()
        self._known[key] = target
        self._pending[key] = target
        try:
            await self.receipts_out.offer(key, target)
        except RoostError:
            self._pending.pop(key, None)
            if known is None:
                self._known.pop(key, None)
            else:
                self._known[key] = known  # not stored: a retry must write it
            raise
        return self._known.get(key, target)

    async def _store_and_tell(self, key: tuple[str, str], seq: int) -> None:
        room, user = key
        try:
            value = await self.directory.mark_read(room, user, seq)  # the stored maximum (another node's, too)
        except RoostError:
            self._pending.pop(key, None)
            self._known.pop(key, None)  # not stored: the next read writes again
            raise
        if self._pending.get(key, 0) <= value:
            self._pending.pop(key, None)
        if value > self._known.get(key, 0):
            self._known[key] = value
        if not is_inbox(room):
            # The user's devices agree on unread counts [R-INBOX-8]: keyed by the position, so a position
            # stored again (a retry, another node) is one event.
            await self.rooms.inbox.emit(user, ReadUpTo(room, value), value)
        await self.bus.publish(room, frames.encode(frames.Receipt(room=room, user=user, seq=value)))

    async def unread(self, user: str) -> dict[str, dict[str, int]]:
        """Per room of the user: its head, the user's read position, the unread count (the messages after the read
        position the user has to read, ``counts_as_unread``) [R-READ-3] and how many of them mention the user
        (``mentions_user``) [R-MENTION-4]."""
        positions = await self.directory.read_positions(user)
        for (room, reader), seq in list(self._pending.items()):
            if reader == user:
                positions[room] = max(positions.get(room, 0), seq)
        out: dict[str, dict[str, int]] = {}
        for room in await self.rooms.rooms_of(user):  # not the user's own event stream
            position = await self.store.position(room)
            read = min(positions.get(room, 0), position.head)
            unread, mentioned = await self._unread_in(room, user, read, position)
            out[room] = {"head": position.head, "read": read, "unread": unread, "mentions": mentioned}
        return out

    async def _unread_in(self, room: str, user: str, read: int, position: Position) -> tuple[int, int]:
        """The unread and mention counts of one room: its newest ``UNREAD_SCAN`` messages after ``read`` are read
        (as served, deleted ones as tombstones) and counted by kind, sender and mentions; older kept seqs beyond
        them count one unread each (a count over the scan is a badge of "99+" either way) and no mention. Nothing
        is read when nothing follows ``read``."""
        if position.head <= read:
            return 0, 0
        page = await self.relations.redact_page(
            room, await self.store.read_before(room, position.head + 1, min(UNREAD_SCAN, position.head - read))
        )
        scanned = [m for m in page.messages if m.seq > read]
        oldest = scanned[0].seq if scanned else page.position.head + 1
        beyond = max(0, oldest - max(read + 1, page.position.first))
        unread = beyond + sum(1 for m in scanned if counts_as_unread(m, user))
        return unread, sum(1 for m in scanned if mentions_user(m, user))

    async def receipts(self, user: str, room: str) -> dict[str, int]:
        """Who has read how far ("seen by"): members' read positions."""
        await self.rooms.check_member(user, room)
        readers = await self.directory.readers(room)
        for (where, reader), seq in list(self._pending.items()):
            if where == room:
                readers[reader] = max(readers.get(reader, 0), seq)
        return readers
