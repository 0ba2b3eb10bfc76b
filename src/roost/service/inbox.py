"""The per-user streams: each user's ``~u:<user>`` pseudo-room, written by the server only.

What goes in is decided by the operations that cause it (rooms.py, moderation.py, invitations.py, reads.py,
chat.py); this part writes it: through the one write path (``Writer.append``, sender ``system``), under a
key derived from the cause (``protocol.inbox.event_cmid``), after the room's own event and before the
request is answered. So an answered request has its stream events durable, and a retry of an unanswered
one that reaches the room's write again re-emits the same keys, which the store answers as duplicates.

A stream is a room of the Directory created on its first use (an event, or its user reading it), with its
user as the only member and no ``join`` in it: membership of the stream *is* being its user, so every read
path's membership check and every engine's storage, bus, catch-up and retention apply to it unchanged.

The stream's own attributes keep an index of the user's pending invitations (``NS_INVITED``: room -> who
invited), so listing them reads one map instead of every room; the rooms' own ``invites`` stay the truth
and the listing checks each entry against them (invitations.py).
"""

from __future__ import annotations

import asyncio
from typing import Final

from ..config import Limits
from ..ports import Directory
from ..protocol.inbox import KIND_OF, InboxContent, Mention, encode_content, event_cmid, inbox_room
from ..protocol.types import SYSTEM_SENDER, Draft, Message
from .writes import Writer

__all__ = ["INBOX_KIND", "NS_INVITED", "Inbox"]

INBOX_KIND: Final = "inbox"
"""The ``kind`` in a stream's ``meta``: not a room kind anyone can create."""
NS_INVITED: Final = "invited"
"""On a stream: room -> who invited its user there (an index; the room's ``invites`` are the truth)."""
_KNOWN_MAX: Final = 100_000


class Inbox:
    def __init__(self, directory: Directory, writer: Writer, limits: Limits) -> None:
        self.directory = directory
        self.writer = writer
        self.limits = limits
        self._creating: dict[str, asyncio.Lock] = {}
        self._known: set[str] = set()
        """Streams this node has seen exist (they are never deleted): no directory read before their events."""

    async def ensure(self, user: str) -> str:
        """The stream of ``user``, created now if it is not there yet.

        One creation at a time per stream on this node: concurrent requests about one user (joins racing a
        ban) otherwise each found it missing, and the later ones wrote to it while the first was still
        creating it (on a JetStream cluster: "no response from stream")."""
        room = inbox_room(user)
        if room in self._known:
            return room
        lock = self._creating.setdefault(room, asyncio.Lock())
        try:
            async with lock:
                if room in self._known:
                    return room
                if not await self.directory.is_member(room, user):
                    await self.directory.create_room(room, user, {"kind": INBOX_KIND})
                if len(self._known) >= _KNOWN_MAX:
                    self._known.clear()
                self._known.add(room)
        finally:
            if not lock.locked() and self._creating.get(room) is lock:
                del self._creating[room]
        return room

    async def emit(self, user: str, content: InboxContent, cause: str | int) -> None:
        """Store one event in ``user``'s stream, keyed by its kind, the room it is about and its ``cause``
        (the seq of the event that caused it there, or an invitation's id)."""
        room = await self.ensure(user)
        kind = KIND_OF[type(content)]
        draft = Draft(room, SYSTEM_SENDER, event_cmid(kind, content.room, cause), encode_content(content), kind)
        await self.writer.append(draft, counted=False)

    async def mentioned(self, message: Message, told: list[str]) -> None:
        """``mention`` events for ``told`` (``MentionRules.told``: members of the message's room whom its stored
        mentions name), all written before the send is answered; keyed by the message's seq, so a retried send
        writes each once [R-INBOX-7]."""
        event = Mention(message.room, message.seq, message.sender)
        await asyncio.gather(*(self.emit(name, event, message.seq) for name in told))

    async def index_invitation(self, user: str, room: str, by: str) -> None:
        await self.directory.set_room_attr(await self.ensure(user), NS_INVITED, room, by)

    async def unindex_invitation(self, user: str, room: str) -> None:
        stream = await self.ensure(user)
        if room in await self.directory.room_attrs(stream, NS_INVITED):
            await self.directory.set_room_attr(stream, NS_INVITED, room, None)

    async def indexed_invitations(self, user: str) -> dict[str, str]:
        """room -> inviter, as the index has it (possibly with entries a crash left behind)."""
        return await self.directory.room_attrs(inbox_room(user), NS_INVITED)
