"""Pages bounded by bytes as well as by count: what every read path (history, catch-up, sync) serves.

Why: a count alone does not bound a page. 500 messages of 16 KiB (both documented limits) are a frame of
over 8 MB, which is twice the outbox's 4 MiB (the client was closed with 4508 right after it), and one
``POST /api/sync`` over 40 such rooms was a 163 MB answer built in memory. A page here stops before the
message that would take its messages' encoded size (each as its ``msg`` object) over the byte budget,
keeping at least one message when asked to, so every page makes progress (docs/protocol.md, R-HIST-50).

The store is read in chunks sized from the messages seen so far, so a room of big messages is not read
500 at a time to serve a few: at most one chunk more than the page is read. Chunks are stitched only
where they continue each other (same epoch, the next seq); otherwise the page ends at the last one that
did, which is a shorter page, never a hole. Each room's mean encoded message size is remembered (a
bounded LRU), so a room of small messages is read in one chunk, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ..protocol import frames
from ..protocol.types import Message, Page, Position

__all__ = ["Bounded", "PageReader"]

Read = Callable[[int, int], Awaitable[Page]]
"""``(seq, count) -> Page``: ``Store.read`` (after) or ``Store.read_before`` (before), of one room."""

_FIRST_GUESS: Final = 2048
"""Bytes per message assumed for a room not seen yet: the first chunk of a 256 KiB page is 128 messages."""


@dataclass(frozen=True, slots=True)
class Bounded:
    """A page within its byte budget, with each message encoded (the ``msg`` object) and their total size."""

    page: Page
    encoded: tuple[bytes, ...]
    size: int


class PageReader:
    """Reads pages within a count and a byte budget; remembers each room's mean message size."""

    def __init__(self, max_rooms: int = 10_000) -> None:
        self.max_rooms = max_rooms
        self._mean: OrderedDict[str, float] = OrderedDict()

    def _chunk(self, room: str, want: int, budget: int) -> int:
        mean = self._mean.get(room, float(_FIRST_GUESS))
        return max(1, min(want, int(budget / mean) + 1))

    def _learn(self, room: str, size: int, count: int) -> None:
        if count:
            self._mean[room] = size / count
            self._mean.move_to_end(room)
            while len(self._mean) > self.max_rooms:
                self._mean.popitem(last=False)

    async def forward(
        self,
        room: str,
        read: Read,
        redact: Callable[[Page], Awaitable[Page]],
        after: int,
        limit: int,
        max_bytes: int,
        *,
        at_least_one: bool = True,
    ) -> Bounded:
        """The oldest messages with ``seq > after``: at most ``limit``, and at most ``max_bytes`` encoded
        (but one message whatever its size, if ``at_least_one``)."""
        kept: list[Message] = []
        encoded: list[bytes] = []
        size = 0
        position: Position | None = None
        cursor = after
        while True:
            count = self._chunk(room, limit - len(kept), max_bytes - size)
            chunk = await redact(await read(cursor, count))
            p = chunk.position
            if position is not None and (
                p.epoch != position.epoch or (chunk.messages and chunk.messages[0].seq != cursor + 1)
            ):
                break  # the history changed between the chunks: end the page where it was continuous
            position = p if position is None else Position(p.epoch, p.head, position.first)
            size, full = _take(chunk.messages, kept, encoded, size, max_bytes, at_least_one)
            self._learn(room, size, len(kept))
            if full or len(kept) >= limit or len(chunk.messages) < count or not kept:
                break
            cursor = kept[-1].seq
        assert position is not None
        return Bounded(Page(kept, position), tuple(encoded), size)

    async def backward(
        self,
        room: str,
        read_before: Read,
        redact: Callable[[Page], Awaitable[Page]],
        before: int,
        limit: int,
        max_bytes: int,
    ) -> Bounded:
        """The newest messages with ``seq < before``, ascending: at most ``limit`` and ``max_bytes`` encoded
        (at least one)."""
        kept: list[Message] = []  # newest first while reading
        encoded: list[bytes] = []
        size = 0
        position: Position | None = None
        cursor = before
        while True:
            count = self._chunk(room, limit - len(kept), max_bytes - size)
            chunk = await redact(await read_before(cursor, count))
            p = chunk.position
            if position is not None and (
                p.epoch != position.epoch or (chunk.messages and chunk.messages[-1].seq != cursor - 1)
            ):
                break
            position = p
            size, full = _take(reversed(chunk.messages), kept, encoded, size, max_bytes, True)
            self._learn(room, size, len(kept))
            if full or len(kept) >= limit or len(chunk.messages) < count or not kept:
                break
            cursor = kept[-1].seq
        assert position is not None
        kept.reverse()
        encoded.reverse()
        return Bounded(Page(kept, position), tuple(encoded), size)


def _take(
    messages: Iterable[Message],
    kept: list[Message],
    encoded: list[bytes],
    size: int,
    max_bytes: int,
    at_least_one: bool,
) -> tuple[int, bool]:
    """Append ``messages`` (and their encodings) to the page while they fit in ``max_bytes``; the first one
    always fits when ``at_least_one``. Returns the page's new size and whether it is full."""
    for message in messages:
        data = frames.encode(message)
        if size + len(data) > max_bytes and (kept or not at_least_one):
            return size, True
        kept.append(message)
        encoded.append(data)
        size += len(data)
    return size, False
