"""Reading a room: history pages, catch-up pages and read positions, each behind the membership check.

Every page is served through the node's ``RelationIndex``, so a deleted message is a tombstone on every
read path (``history``, a subscription's ``catchup``). A read position is one per user per room, shared
by the user's devices; moving it is stored and tells the room's followers with an ephemeral ``receipt``, at
most once per user and room per ``coalesce_s`` (the newest position wins), and a ``read`` that moves nothing
writes and tells nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..coalesce import Coalescer
from ..config import Limits
from ..ports import Bus, Directory, Store
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError, RoostError
from ..protocol.types import MAX_SEQ, Page
from ..relindex import RelationIndex
from .rooms import Rooms

__all__ = ["HistoryResult", "Reads"]


@dataclass(frozen=True, slots=True)
class HistoryResult:
    page: Page
    has_more: bool


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
        self.receipts_out: Coalescer[tuple[str, str], int] = Coalescer(limits.coalesce_s, self._store_and_tell)
        self._known: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], int] = {}
        """(room, user) -> a position answered but not stored yet (coalesced): this node's reads show it."""
        """(room, user) -> a read position this node stored: a ``read`` at or below it moves nothing."""

    async def history(
        self, user: str, room: str, *, after: int | None = None, before: int | None = None, limit: int = 50
    ) -> HistoryResult:
        await self.rooms.check_member(user, room)
        limit = max(1, min(limit, self.limits.max_history_page))
        for name, value in (("after", after), ("before", before)):
            if value is not None and not 0 <= value <= MAX_SEQ:
                raise ProtocolError(f"{name} must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        if after is not None and before is not None:
            raise ProtocolError("give after or before, not both", Code.BAD_FRAME)
        if before is not None:
            page = await self.relations.redact_page(room, await self.store.read_before(room, before, limit))
            oldest = page.messages[0].seq if page.messages else before
            return HistoryResult(page, has_more=oldest > page.position.first)
        if after is None:
            page = await self.relations.redact_page(room, await self.store.read_before(room, MAX_SEQ, limit))
            oldest = page.messages[0].seq if page.messages else page.position.head + 1
            return HistoryResult(page, has_more=oldest > page.position.first)
        if after < 0:
            raise ProtocolError("after must be >= 0", Code.BAD_FRAME)
        page = await self.catchup(room, after, limit)
        newest = page.messages[-1].seq if page.messages else after
        return HistoryResult(page, has_more=newest < page.position.head)

    async def catchup(self, room: str, after: int, limit: int) -> Page:
        """A store page with tombstones applied: what a subscription's catch-up delivers (membership is
        checked by the subscribe)."""
        return await self.relations.redact_page(room, await self.store.read(room, after, limit))

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
        await self.bus.publish(room, frames.encode(frames.Receipt(room=room, user=user, seq=value)))

    async def unread(self, user: str) -> dict[str, dict[str, int]]:
        """Per room of the user: its head, the user's read position, and the unread count (head - read)."""
        positions = await self.directory.read_positions(user)
        for (room, reader), seq in list(self._pending.items()):
            if reader == user:
                positions[room] = max(positions.get(room, 0), seq)
        out: dict[str, dict[str, int]] = {}
        for room in await self.directory.rooms_of(user):
            head = (await self.store.position(room)).head
            read = min(positions.get(room, 0), head)
            out[room] = {"head": head, "read": read, "unread": head - read}
        return out

    async def receipts(self, user: str, room: str) -> dict[str, int]:
        """Who has read how far ("seen by"): members' read positions."""
        await self.rooms.check_member(user, room)
        readers = await self.directory.readers(room)
        for (where, reader), seq in list(self._pending.items()):
            if where == room:
                readers[reader] = max(readers.get(reader, 0), seq)
        return readers
