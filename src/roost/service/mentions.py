"""Mentions: who may mention the whole room, and who is told (docs/protocol.md section 23, R-MENTION-*).

A text's mentions are parsed once, when it is stored (``protocol.rich.mentions_of``), into the stored ``rich``
content; this part decides what the server does with them. ``@name`` tells the named users who are members of
the room (never anyone else: a private room's text does not leak). ``@room`` and ``@here`` tell every member,
so they are bounded and permission-checked before anything is stored: in a room of at most
``max_room_mention_members`` members, by its owner or an admin (anyone in a direct conversation). A text that
breaks the rule is refused (4403), not stored without the room mention: the stored content stays a function of
the text alone, so a retried send is byte-equal and answered as a duplicate.
"""

from __future__ import annotations

import asyncio

from ..config import Limits
from ..ports import Directory
from ..protocol.codes import Code
from ..protocol.errors import AuthError
from ..protocol.inbox import Mentions
from .rooms import ADMIN, DIRECT, NS_META, OWNER, Rooms, kind_of

__all__ = ["MentionRules"]


class MentionRules:
    def __init__(self, directory: Directory, rooms: Rooms, limits: Limits) -> None:
        self.directory = directory
        self.rooms = rooms
        self.limits = limits

    async def check(self, user: str, room: str, mentions: Mentions) -> None:
        """Refuse a text that mentions the whole room when ``user`` may not [R-MENTION-2]."""
        if not mentions.room:
            return
        members = await self.directory.members(room)
        most = self.limits.max_room_mention_members
        if len(members) > most:
            raise AuthError(f"@room and @here reach rooms of at most {most} members; {room!r} has more", Code.FORBIDDEN)
        meta = await self.directory.room_attrs(room, NS_META)
        if kind_of(room, meta) == DIRECT:
            return
        if await self.rooms.role(room, user, meta) not in (OWNER, ADMIN):
            raise AuthError("only the room's owner and admins may mention @room or @here", Code.FORBIDDEN)

    async def told(self, room: str, sender: str, mentions: Mentions) -> list[str]:
        """The members to tell, in order: the named ones (at most ``max_mentions``), then with ``@room`` every other
        member; never the sender, never a non-member [R-INBOX-7] [R-MENTION-3]."""
        if not mentions:
            return []  # most texts: nothing read, nothing written
        names = [n for n in mentions.names[: max(self.limits.max_mentions, 0)] if n != sender]
        members = await asyncio.gather(*(self.directory.is_member(room, n) for n in names))
        told = [n for n, member in zip(names, members, strict=True) if member]
        if mentions.room:  # a room of at most max_room_mention_members when it was sent (``check``)
            told += sorted(m for m in await self.directory.members(room) if m != sender and m not in told)
        return told
