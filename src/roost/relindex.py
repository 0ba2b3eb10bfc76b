"""RelationIndex: what each node knows about deletions and reactions, read from the store, never stored.

Why it exists: the rules ("not already deleted", "one reaction per user and emoji") and the
tombstones on read paths need the relation events that follow a message, and the stores have no
index by target (adding one would be a schema change on every engine). The room's seqs are dense and
a stored message never changes, so a node can fold the relation events of a contiguous seq range
once and only ever extend the range: downwards when an older message is asked about, upwards to the
head of each read. Every relation event has a higher seq than its target, so knowing ``(seq, head]``
is enough to answer for ``seq``.

Cost: the first question about an old message of a big room reads the room from there to the head
once per node (500 messages per store read); after that each read costs only the new messages.
Rooms are kept in LRU order, at most ``max_rooms``; an evicted room is simply read again. The cache is
keyed by epoch: a recreated history starts over.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from .ports import Store
from .protocol.relations import RELATION_KINDS, Relations, redact
from .protocol.types import Message, Page, Position

__all__ = ["RelationIndex"]

_SCAN_PAGE = 500


class _RoomIndex:
    __slots__ = ("epoch", "high", "lock", "low", "relations")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.low = 0
        self.high = -1
        """Seqs ``low..high`` (inclusive) are folded; ``high < low`` means nothing yet."""
        self.lock = asyncio.Lock()
        self.relations = Relations(keep_edits=False)


class RelationIndex:
    def __init__(self, store: Store, max_rooms: int = 4096) -> None:
        self.store = store
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[str, _RoomIndex] = OrderedDict()

    async def relations(self, room: str, since: int, position: Position, page: Sequence[Message] = ()) -> Relations:
        """Relations of every event with ``since < seq <= position.head``, at least (more may be known).

        ``page``, dense messages just read from the store, is folded in without reading it again."""
        entry = self._rooms.get(room)
        if entry is None or entry.epoch != position.epoch:
            entry = self._rooms[room] = _RoomIndex(position.epoch)
            while len(self._rooms) > self.max_rooms:
                self._rooms.popitem(last=False)
        self._rooms.move_to_end(room)
        low = max(since + 1, position.first)
        async with entry.lock:
            if page and page[0].seq <= low <= page[-1].seq and (entry.high < entry.low or entry.high < low):
                entry.relations = Relations(keep_edits=False)  # start over from the page (a gap otherwise)
                self._fold(entry, page, low)
                entry.low, entry.high = low, page[-1].seq
            elif page and page[0].seq <= entry.high + 1 <= page[-1].seq and entry.low <= entry.high:
                self._fold(entry, page, entry.high + 1)
                entry.high = page[-1].seq
            if entry.high < entry.low:
                await self._scan(room, entry, low, position.head)
                entry.low, entry.high = low, max(position.head, low - 1)
            else:
                if low < entry.low:
                    await self._scan(room, entry, low, entry.low - 1)
                    entry.low = low
                if position.head > entry.high:
                    await self._scan(room, entry, entry.high + 1, position.head)
                    entry.high = position.head
        return entry.relations

    async def redact_page(self, room: str, page: Page) -> Page:
        """The page with deleted messages as tombstones: what every read path serves."""
        if not page.messages:
            return page
        relations = await self.relations(room, page.messages[0].seq, page.position, page.messages)
        if not relations.deletes:
            return page
        return Page([redact(m, relations) for m in page.messages], page.position)

    async def redact_one(self, message: Message) -> Message:
        position = await self.store.position(message.room)
        relations = await self.relations(message.room, message.seq, position)
        return redact(message, relations)

    @staticmethod
    def _fold(entry: _RoomIndex, page: Sequence[Message], low: int) -> None:
        for message in page:
            if message.seq >= low and message.kind in RELATION_KINDS:
                entry.relations.add(message)

    async def _scan(self, room: str, entry: _RoomIndex, low: int, high: int) -> None:
        """Fold the relation events of seqs ``low..high``: all of them or, if a read fails, none (so a
        retry never counts one twice)."""
        found: list[Message] = []
        after = low - 1
        while after < high:
            page = await self.store.read(room, after, _SCAN_PAGE)
            if not page.messages:
                break
            found += [m for m in page.messages if low <= m.seq <= high and m.kind in RELATION_KINDS]
            after = page.messages[-1].seq
        for message in found:
            entry.relations.add(message)
