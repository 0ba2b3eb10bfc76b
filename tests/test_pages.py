"""PageReader: pages bounded by count and bytes, read in chunks from a room held in memory.

The chunks' stitching is the part no engine test reaches on purpose (a trim or a recreated history between
two chunks of one page), so a room here is a list the test changes between reads."""

from __future__ import annotations

from roost.protocol import frames
from roost.protocol.types import Message, Page, Position
from roost.service.pages import PageReader


class _Room:
    """A room's messages; ``read``/``read_before`` answer like a store, and count what they were asked."""

    def __init__(self, sizes: list[int], epoch: str = "e1") -> None:
        self.messages = [Message("r", i + 1, f"c{i:04d}", "alice", "x" * size, 0) for i, size in enumerate(sizes)]
        self.epoch = epoch
        self.first = 1
        self.asked: list[int] = []
        self.between: list[object] = []
        """Changes to make after each read (a callable per read), to race the next chunk."""

    def _position(self) -> Position:
        return Position(self.epoch, len(self.messages), self.first)

    def _after_read(self) -> None:
        if self.between:
            change = self.between.pop(0)
            if callable(change):
                change()

    async def read(self, after: int, count: int) -> Page:
        self.asked.append(count)
        kept = [m for m in self.messages if m.seq > after and m.seq >= self.first][:count]
        page = Page(kept, self._position())
        self._after_read()
        return page

    async def read_before(self, before: int, count: int) -> Page:
        self.asked.append(count)
        kept = [m for m in self.messages if m.seq < before and m.seq >= self.first][-count:] if count else []
        page = Page(kept, self._position())
        self._after_read()
        return page


async def _same(page: Page) -> Page:
    return page


def _size(message: Message) -> int:
    return len(frames.encode(message))


async def test_a_page_stops_before_the_message_that_would_pass_the_budget() -> None:
    """[R-HIST-50] Forward, the oldest messages that fit; backward, the newest; one message always comes."""
    room = _Room([1000] * 50)
    ten = sum(_size(m) for m in room.messages[:10])
    reader = PageReader()
    got = await reader.forward("r", room.read, _same, 0, 500, ten + 500)
    assert [m.seq for m in got.page.messages] == list(range(1, 11)) and got.size == ten
    assert got.encoded == tuple(frames.encode(m) for m in got.page.messages)
    ten = sum(_size(m) for m in room.messages[40:])
    back = await reader.backward("r", room.read_before, _same, 51, 500, ten + 500)
    assert [m.seq for m in back.page.messages] == list(range(41, 51))
    tiny = await reader.forward("r", room.read, _same, 0, 500, 10)
    assert [m.seq for m in tiny.page.messages] == [1]
    none = await reader.forward("r", room.read, _same, 0, 500, 10, at_least_one=False)
    assert none.page.messages == [] and none.page.position.head == 50


async def test_a_room_of_big_messages_is_read_in_chunks_that_fit() -> None:
    """The first chunk guesses 2 KiB per message; later pages of the room ask for about what fits."""
    room = _Room([16 * 1024] * 500)
    reader = PageReader()
    budget = 256 * 1024
    first = await reader.forward("r", room.read, _same, 0, 500, budget)
    assert len(first.page.messages) == 15 and room.asked == [129]
    room.asked.clear()
    second = await reader.forward("r", room.read, _same, 15, 500, budget)
    assert second.page.messages[0].seq == 16 and len(second.page.messages) == 15
    assert room.asked == [16]
    small = _Room([10] * 500)
    small_reader = PageReader()
    await small_reader.forward("r", small.read, _same, 0, 500, budget)
    small.asked.clear()
    page = await small_reader.forward("r", small.read, _same, 0, 500, budget)
    assert len(page.page.messages) == 500 and small.asked == [500]


async def test_chunks_are_stitched_only_where_they_continue_each_other() -> None:
    """A history trimmed or recreated between two chunks of one page ends the page at the first chunk: a
    shorter page, never a hole nor messages of two epochs."""
    room = _Room([10] * 300)
    reader = PageReader()

    def trim() -> None:
        room.first = 200

    room.between = [trim]
    page = await reader.forward("r", room.read, _same, 0, 300, 256 * 1024)
    assert [m.seq for m in page.page.messages] == list(range(1, 130))
    assert page.page.position.first == 1
    room = _Room([10] * 300)

    def recreate() -> None:
        room.epoch = "e2"

    room.between = [recreate]
    reader = PageReader()  # a room not seen yet: its first chunk is a guess, so the page takes two
    page = await reader.forward("r", room.read, _same, 0, 300, 256 * 1024)
    assert [m.seq for m in page.page.messages] == list(range(1, 130)) and page.page.position.epoch == "e1"
    room = _Room([10] * 300)
    reader = PageReader()
    page = await reader.forward("r", room.read, _same, 0, 300, 256 * 1024)
    assert [m.seq for m in page.page.messages] == list(range(1, 301)) and room.asked == [129, 171]
    back = await reader.backward("r", room.read_before, _same, 301, 300, 256 * 1024)
    assert [m.seq for m in back.page.messages] == list(range(1, 301))
