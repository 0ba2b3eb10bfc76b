"""Retention policies: how many messages a room keeps, and for how long.

The server's defaults (``Limits.retention_max_messages``, ``retention_max_age_s``; 0: no limit) apply to every
room; a room's owner or admin, or a server administrator, may give the room its own, kept in the room's
``retention`` attributes (``None`` for a value: the server's default again; 0: no limit for this room). Every
change is a sequenced ``retention`` event of the room, so a member who was offline learns it by reading the
room. The server's pseudo-rooms (``~...``) follow the defaults only.

The rooms with a policy of their own are also listed in the attributes of the pseudo-room ``~roost-retention``
(``rooms``), so a retention pass with no server default visits those rooms only, not every room. The pass itself
(which node, how often, the trimming) is ``roost/retention.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from ..config import Limits
from ..ports import Directory
from ..protocol.codes import Code
from ..protocol.errors import AuthError, ProtocolError
from ..protocol.types import KIND_RETENTION
from .rooms import ADMIN, DIRECT, NS_META, RANK, Rooms, kind_of

__all__ = ["INDEX_ROOM", "MAX_AGE_S", "MAX_MESSAGES", "NS_RETENTION", "Policy", "RetentionRules", "effective"]

NS_RETENTION: Final = "retention"
"""``max_messages``, ``max_age_s``: the room's own values (absent: the server's default)."""
INDEX_ROOM: Final = "~roost-retention"
INDEX_NS: Final = "rooms"
"""room -> "1" for every room with a policy of its own (kept when it goes back to the defaults: harmless)."""
OWNER: Final = "~roost"
MAX_MESSAGES: Final = 1_000_000_000
MAX_AGE_S: Final = 100 * 366 * 86_400
"""The largest values a policy takes (a billion messages; a century): past them, 4400."""


@dataclass(frozen=True, slots=True)
class Policy:
    max_messages: int
    """What applies to the room: the room's own value, else the server's (0: no limit)."""
    max_age_s: int
    room_max_messages: int | None = None
    """The room's own value (``None``: it follows the server's default)."""
    room_max_age_s: int | None = None


def _own(attrs: dict[str, str], key: str) -> int | None:
    value = attrs.get(key)
    return int(value) if value is not None and value.isdigit() else None


def effective(limits: Limits, attrs: dict[str, str]) -> Policy:
    """The policy of a room whose ``retention`` attributes are ``attrs`` (empty for a pseudo-room)."""
    count, age = _own(attrs, "max_messages"), _own(attrs, "max_age_s")
    return Policy(
        max(0, limits.retention_max_messages) if count is None else count,
        max(0, limits.retention_max_age_s) if age is None else age,
        count,
        age,
    )


def _check(name: str, value: int | None, most: int) -> None:
    if value is not None and not 0 <= value <= most:
        raise ProtocolError(f"{name} must be between 0 (no limit) and {most}, or null (the default)", Code.BAD_FRAME)


class RetentionRules:
    def __init__(self, rooms: Rooms, limits: Limits) -> None:
        self.rooms = rooms
        self.directory: Directory = rooms.directory
        self.limits = limits

    async def policy(self, user: str, room: str) -> Policy:
        """The room's policy, for its members."""
        await self.rooms.check_member(user, room)
        return effective(self.limits, await self.directory.room_attrs(room, NS_RETENTION))

    async def set_policy(
        self, actor: str, room: str, max_messages: int | None, max_age_s: int | None, *, as_admin: bool = False
    ) -> Policy:
        """Give ``room`` its own policy (``None``: the server's default for that value), as its owner or an admin
        of it, or (``as_admin``) as a server administrator. A change is a ``retention`` event by ``actor``;
        setting what is set already stores nothing."""
        _check("max_messages", max_messages, MAX_MESSAGES)
        _check("max_age_s", max_age_s, MAX_AGE_S)
        if as_admin:
            await self.rooms.require_room(room)
        else:
            await self.rooms.check_member(actor, room)  # first: an outsider learns nothing of a private room
            meta = await self.directory.room_attrs(room, NS_META)
            if kind_of(room, meta) == DIRECT:
                raise AuthError(f"{room!r} is a direct conversation: it has no moderators", Code.FORBIDDEN)
            self.rooms.churn.check(actor)
            if RANK[await self.rooms.role(room, actor, meta)] < RANK[ADMIN]:
                raise AuthError(f"only the owner or an admin of {room!r} sets its retention", Code.FORBIDDEN)
        own = await self.directory.room_attrs(room, NS_RETENTION)
        if (_own(own, "max_messages"), _own(own, "max_age_s")) == (max_messages, max_age_s):
            return effective(self.limits, own)
        await self._listed(room)
        for key, value in (("max_messages", max_messages), ("max_age_s", max_age_s)):
            await self.directory.set_room_attr(room, NS_RETENTION, key, None if value is None else str(value))
        body = msgspec.json.encode({"by": actor, "max_messages": max_messages, "max_age_s": max_age_s}).decode()
        await self.rooms.writer.event(room, actor, KIND_RETENTION, body)
        return effective(self.limits, await self.directory.room_attrs(room, NS_RETENTION))

    async def _listed(self, room: str) -> None:
        """Put ``room`` in the index before its policy is written: a pass never misses a room that has one."""
        if room in await self.directory.room_attrs(INDEX_ROOM, INDEX_NS):
            return
        if not await self.directory.room_exists(INDEX_ROOM):
            await self.directory.create_room(INDEX_ROOM, OWNER)  # False when another node was first: fine
        await self.directory.set_room_attr(INDEX_ROOM, INDEX_NS, room, "1")

    async def rooms_with_policies(self) -> list[str]:
        return sorted(await self.directory.room_attrs(INDEX_ROOM, INDEX_NS))
