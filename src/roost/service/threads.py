"""Replies and threads: what a ``rich`` message may point at, and a thread's pages (protocol/rich.py).

A reply (``reply_to``) or a reply in a thread (``thread``) is a text stored with kind ``rich`` through the one
write path, like any send (chat.py composes it); its relations are checked here before anything is stored
(docs/protocol.md section 22, R-THREAD-*): each names a kept message of the same room that is a text (not a
membership or relation event), a thread's root is not itself in a thread (threads are one level deep), and a
reply within a thread quotes the root or another reply of that thread. A deleted target is allowed (the quote
shows "message deleted", the thread goes on), so a retried send never fails because of a later deletion.

A thread's pages come from the node's ``RelationIndex``, which folds each thread's reply seqs with the relation
events of the range it has read (no store index, no schema change): a page costs one read per run of
consecutive seqs, not a scan of the room (measured in docs/protocol.md section 22).
"""

from __future__ import annotations

import asyncio

from ..config import Limits
from ..ports import Store
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import NotFound, ProtocolError
from ..protocol.relations import redact
from ..protocol.rich import TEXT_KINDS, RichContent, thread_of
from ..protocol.types import KIND_DELETED, MAX_SEQ, Message, Page
from ..relindex import RelationIndex
from .reads import HistoryResult
from .rooms import Rooms

__all__ = ["Threads"]


class Threads:
    def __init__(self, store: Store, relations: RelationIndex, rooms: Rooms, limits: Limits) -> None:
        self.store = store
        self.relations = relations
        self.rooms = rooms
        self.limits = limits

    async def content(self, room: str, body: str, reply_to: int | None, thread: int | None) -> RichContent:
        """The content of a reply, once its targets are checked [R-THREAD-1] [R-THREAD-2] [R-THREAD-3]."""
        root: Message | None = None
        if thread is not None:
            root = await self._message(room, thread, "thread")
            outer = thread_of(root)
            if outer is not None:
                reason = f"message {thread} is a reply in the thread of {outer}: a thread cannot start there"
                raise ProtocolError(reason, Code.BAD_FRAME)
        if reply_to is not None:
            quoted = (
                root if root is not None and reply_to == thread else await self._message(room, reply_to, "reply_to")
            )
            if thread is not None and reply_to != thread and thread_of(quoted) != thread:
                raise ProtocolError(f"message {reply_to} is not in the thread of {thread}", Code.BAD_FRAME)
        return RichContent(body, reply_to, thread)

    async def _message(self, room: str, seq: int, name: str) -> Message:
        """The kept text message ``seq`` of ``room`` (deleted ones too), as stored."""
        if not 1 <= seq <= MAX_SEQ:
            raise ProtocolError(f"{name} must be between 1 and {MAX_SEQ}", Code.BAD_FRAME)
        page = await self.store.read(room, seq - 1, 1)
        if not page.messages or page.messages[0].seq != seq:
            gone = " (no longer kept)" if seq < page.position.first else ""
            raise NotFound(f"no message {seq} in {room!r}{gone}")
        message = page.messages[0]
        if message.kind not in TEXT_KINDS and message.kind != KIND_DELETED:
            raise ProtocolError(f"message {seq} is a {message.kind!r} event, not a text message", Code.BAD_FRAME)
        return message

    async def page(
        self,
        user: str,
        room: str,
        root: int,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> HistoryResult:
        """A page of the thread of ``root``: the root, then its replies, by seq, with ``after``/``before``/
        ``limit`` and the byte bound of a history page over the thread's seqs (R-HIST-50) [R-THREAD-4]."""
        await self.rooms.check_member(user, room)
        limit = max(1, min(limit, self.limits.max_history_page))
        for name, value in (("after", after), ("before", before)):
            if value is not None and not 0 <= value <= MAX_SEQ:
                raise ProtocolError(f"{name} must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        if after is not None and before is not None:
            raise ProtocolError("give after or before, not both", Code.BAD_FRAME)
        first = await self._message(room, root, "thread")
        if thread_of(first) is not None:
            raise ProtocolError(f"message {root} is a reply in a thread, not a thread's root", Code.BAD_FRAME)
        position = await self.store.position(room)
        replies, relations = await self.relations.thread(room, root, position)
        seqs = [root, *replies]
        if after is not None:
            later = [seq for seq in seqs if seq > after]
            chosen, more = later[:limit], len(later) > limit
        else:
            start = MAX_SEQ + 1 if before is None else before
            earlier = [seq for seq in seqs if seq < start]
            chosen, more = earlier[-limit:], len(earlier) > limit
        messages = [redact(m, relations) for m in await self._read(room, chosen)]
        kept, size = _within(messages, self.limits.max_page_bytes, newest=after is None)
        return HistoryResult(Page(kept, position), more or len(kept) < len(messages), size)

    async def _read(self, room: str, seqs: list[int]) -> list[Message]:
        """The messages at ``seqs`` (ascending), one store read per run of consecutive seqs, run concurrently."""
        runs: list[list[int]] = []
        for seq in seqs:
            if runs and runs[-1][-1] + 1 == seq:
                runs[-1].append(seq)
            else:
                runs.append([seq])
        pages = await asyncio.gather(*(self.store.read(room, run[0] - 1, len(run)) for run in runs))
        wanted = set(seqs)
        return [m for page in pages for m in page.messages if m.seq in wanted]


def _within(messages: list[Message], max_bytes: int, *, newest: bool) -> tuple[list[Message], int]:
    """The messages that fit in ``max_bytes`` (each as its encoded ``msg``), at least one: the oldest ones when
    reading forward, the newest when reading back."""
    order = reversed(messages) if newest else iter(messages)
    kept: list[Message] = []
    size = 0
    for message in order:
        length = len(frames.encode(message))
        if kept and size + length > max_bytes:
            break
        kept.append(message)
        size += length
    if newest:
        kept.reverse()
    return kept, size
