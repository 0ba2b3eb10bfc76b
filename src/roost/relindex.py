"""RelationIndex: what each node knows about deletions, reactions and threads, read from the store, never stored.

Why it exists: the rules ("not already deleted", "one reaction per user and emoji") and the
tombstones on read paths need the relation events that follow a message, and the stores have no
index by target (adding one would be a schema change on every engine). The room's seqs are dense and
a stored message never changes (an erasure replaces a text or an edit by its tombstone, never a delete or a
reaction, so the fold is the same), so a node can fold the relation events of a contiguous seq range
once and only ever extend the range: downwards when an older message is asked about, upwards to the
head of each read. Every relation event has a higher seq than its target, so knowing ``(seq, head]``
is enough to answer for ``seq``.

The same fold keeps each thread's replies (``thread``): a reply has a higher seq than its root, and its thread
survives a deletion and an erasure (the tombstone keeps it, ``rich.tombstone_body``), so the range rule holds
for threads too, and a thread's page is read by seq from the index instead of scanning the room.

Cost: the first question about an old message of a big room reads the room from there to the head
once per node (500 messages per store read); after that each read costs only the new messages.
Rooms are kept in LRU order, at most ``max_rooms``; an evicted room is simply read again. The cache is
keyed by epoch: a recreated history starts over.
"""

from __future__ import annotations

import asyncio
from bisect import insort
from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

from .ports import Store
from .protocol.relations import RELATION_KINDS, Relations, redact
from .protocol.rich import KIND_RICH, thread_of
from .protocol.types import KIND_DELETED, Message, Page, Position

__all__ = ["RelationIndex"]

_SCAN_PAGE = 500
_FOLDED: Final = RELATION_KINDS | {KIND_RICH, KIND_DELETED}
"""Kinds the index looks at: relation events, and what a reply in a thread is stored as (or erased to)."""
_THREADED: Final = '"thread":'
"""In the body of every reply in a thread (and its tombstone): most messages are skipped without a JSON decode."""


class _RoomIndex:
    __slots__ = ("epoch", "high", "lock", "low", "relations", "threads")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.low = 0
        self.high = -1
        """Seqs ``low..high`` (inclusive) are folded; ``high < low`` means nothing yet."""
        self.lock = asyncio.Lock()
        self.relations = Relations(keep_edits=False)
        self.threads: dict[int, list[int]] = {}
        """root -> the seqs of the replies in its thread, ascending (deleted ones too: their tombstones keep it)."""

    def reset(self) -> None:
        self.relations = Relations(keep_edits=False)
        self.threads = {}

    def add(self, message: Message) -> None:
        """Fold one message of the range: a relation event, or a reply in a thread."""
        if message.kind in RELATION_KINDS:
            self.relations.add(message)
            return
        if _THREADED not in message.body:
            return
        root = thread_of(message)
        if root is not None:
            insort(self.threads.setdefault(root, []), message.seq)


class RelationIndex:
    def __init__(self, store: Store, max_rooms: int = 4096) -> None:
        self.store = store
        self.max_rooms = max_rooms
        self._rooms: OrderedDict[str, _RoomIndex] = OrderedDict()

    async def relations(self, room: str, since: int, position: Position, page: Sequence[Message] = ()) -> Relations:
        """Relations of every event with ``since < seq <= position.head``, at least (more may be known).

        ``page``, dense messages just read from the store, is folded in without reading it again."""
        return (await self._entry(room, since, position, page)).relations

    async def thread(self, room: str, root: int, position: Position) -> tuple[list[int], Relations]:
        """The seqs of the replies in the thread of ``root`` up to ``position.head``, ascending, and the relations
        of the same range (to serve deleted ones as tombstones)."""
        entry = await self._entry(room, root, position)
        return [seq for seq in entry.threads.get(root, ()) if seq <= position.head], entry.relations

    async def _entry(self, room: str, since: int, position: Position, page: Sequence[Message] = ()) -> _RoomIndex:
        entry = self._rooms.get(room)
        if entry is None or entry.epoch != position.epoch:
            entry = self._rooms[room] = _RoomIndex(position.epoch)
            while len(self._rooms) > self.max_rooms:
                self._rooms.popitem(last=False)
        self._rooms.move_to_end(room)
        low = max(since + 1, position.first)
        async with entry.lock:
            if page and page[0].seq <= low <= page[-1].seq and (entry.high < entry.low or entry.high < low):
                entry.reset()  # start over from the page (a gap otherwise)
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
        return entry

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
            if message.seq >= low and message.kind in _FOLDED:
                entry.add(message)

    async def _scan(self, room: str, entry: _RoomIndex, low: int, high: int) -> None:
        """Fold the relation events of seqs ``low..high``: all of them or, if a read fails, none (so a
        retry never counts one twice)."""
        found: list[Message] = []
        after = low - 1
        while after < high:
            page = await self.store.read(room, after, _SCAN_PAGE)
            if not page.messages:
                break
            found += [m for m in page.messages if low <= m.seq <= high and m.kind in _FOLDED]
            after = page.messages[-1].seq
        for message in found:
            entry.add(message)
