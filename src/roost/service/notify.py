"""Per-room notification settings: how each room notifies its member (all, mentions only, none).

Kept per user, server-side, in the Directory's attribute map ``notify`` (room -> level) of the user's own event
stream (``~u:<user>``, a room of the Directory): every engine stores those maps and none interprets them, so no
engine changes, and reading a user's settings is one map read. A change is also an event of the user's stream
(``notify``, written through the one write path), so the user's other devices learn it as it happens and an
offline one when it catches up (docs/protocol.md section 23, R-MENTION-5). A room without a setting notifies by
the client's default (the page: every message of a direct conversation, mentions elsewhere).

The server only keeps the choice: what to show (a desktop notification, a badge) is the client's business, so
nothing here is on the write path of a message.
"""

from __future__ import annotations

import uuid
from typing import Final

from ..ports import Directory
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError
from ..protocol.inbox import LEVELS, NotifyLevel, inbox_room
from .inbox import Inbox
from .rooms import Rooms

__all__ = ["NS_NOTIFY", "NotifySettings"]

NS_NOTIFY: Final = "notify"
"""On a user's stream: room -> that room's notification level for the user."""


class NotifySettings:
    def __init__(self, directory: Directory, rooms: Rooms, inbox: Inbox) -> None:
        self.directory = directory
        self.rooms = rooms
        self.inbox = inbox

    async def levels(self, user: str) -> dict[str, str]:
        """room -> level, for the rooms where ``user`` chose one (rooms they left included: harmless)."""
        return await self.directory.room_attrs(inbox_room(user), NS_NOTIFY)

    async def set_level(self, user: str, room: str, level: str) -> str:
        """Keep ``level`` for ``user`` in ``room`` (a member's choice), then tell the user's devices [R-MENTION-5]."""
        if level not in LEVELS:
            raise ProtocolError(f"level must be one of {', '.join(LEVELS)}", Code.BAD_FRAME)
        self.rooms.refuse_inbox(user, room)  # a stream is not a room that notifies: 4403, or 4404 if not one's own
        await self.rooms.check_member(user, room)
        stream = await self.inbox.ensure(user)
        await self.directory.set_room_attr(stream, NS_NOTIFY, room, level)
        await self.inbox.emit(user, NotifyLevel(room, level), uuid.uuid4().hex)
        return level
