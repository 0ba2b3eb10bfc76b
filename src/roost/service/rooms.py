"""Rooms and membership: kinds (public, private, direct), who may join, and who is a member.

The rules are here, not in a backend (docs/security.md, "Authorization"): they are kept in the
Directory's generic per-room attributes (the namespaces below), which every engine stores and none
interprets, so the rules are the same everywhere. Every membership change is also a message in the
room's sequence, written through the one write path, so a member who was offline converges by reading
the room. ``check_member`` is the membership check of every read and write, HTTP and WebSocket alike.
Moderation (invitations, kicks, bans, roles) is ``moderation.py``, over the role and ban lookups here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import msgspec

from ..config import Limits
from ..ports import Directory
from ..protocol.codes import Code
from ..protocol.errors import AuthError, Conflict, NotFound, ProtocolError, RoostError
from ..protocol.inbox import HOW_LEAVE, Added, Removed, inbox_owner
from ..protocol.types import KIND_JOIN, KIND_LEAVE, valid_room, valid_user
from ..ratelimit import RateLimiter
from .inbox import Inbox
from .writes import Writer

__all__ = [
    "ROOM_KINDS",
    "Invitation",
    "RoomInfo",
    "Rooms",
    "by_body",
    "check_room_name",
    "dm_room",
    "kind_of",
    "missing",
]

PUBLIC: Final = "public"
PRIVATE: Final = "private"
DIRECT: Final = "direct"
ROOM_KINDS: Final = (PUBLIC, PRIVATE, DIRECT)
OWNER: Final = "owner"
ADMIN: Final = "admin"
MEMBER: Final = "member"
RANK: Final = {MEMBER: 0, ADMIN: 1, OWNER: 2}
DM_PREFIX: Final = "dm:"
# Attribute namespaces of the Directory, and what they hold.
NS_META: Final = "meta"
"""``kind`` and ``owner`` (``opener`` for a direct conversation), fixed at creation. A room without them
predates kinds: public, no owner."""
OPENER: Final = "opener"
"""Who opened a direct conversation: it counts against their limit only (``_check_dm_limit``)."""
NS_ROLES: Final = "roles"
"""user -> ``admin`` (absent: a plain member; the owner is in ``meta``)."""
NS_BANS: Final = "bans"
"""user -> who banned them."""
NS_INVITES: Final = "invites"
"""user -> the invitation (``Invitation``: who invited them, and its id); used up by the join it allows."""


@dataclass(frozen=True, slots=True)
class Invitation:
    """One pending invitation, stored as ``"<by> <id>"``. The id (32 hex digits, fixed when it is made) keys
    its ``invite`` and ``uninvite`` events and the invitee's stream events, so a retry of any step re-emits
    the same ones. An invitation recorded before ids existed holds only ``by`` (``id`` is empty)."""

    by: str
    id: str

    def encode(self) -> str:
        return f"{self.by} {self.id}" if self.id else self.by

    @classmethod
    def decode(cls, value: str) -> Invitation:
        by, _, ident = value.partition(" ")
        return cls(by, ident)


def by_body(actor: str, **more: str) -> str:
    """The body of a moderation event: who did it (and the new role), as a small JSON object."""
    return msgspec.json.encode({"by": actor, **more}).decode()


def dm_room(a: str, b: str) -> str:
    """The one room of two users: ``dm:<a>:<b>`` with the names sorted (user names contain no ``:``)."""
    first, second = sorted((a, b))
    return f"{DM_PREFIX}{first}:{second}"


def _dm_pair(room: str) -> tuple[str, ...]:
    return tuple(room.removeprefix(DM_PREFIX).split(":")) if room.startswith(DM_PREFIX) else ()


def kind_of(room: str, meta: dict[str, str]) -> str:
    """A room's kind. Any ``dm:`` room is direct, also one made by the web page's old naming convention
    (a public room then, created before kinds existed); other rooms without a kind are public."""
    return DIRECT if room.startswith(DM_PREFIX) else meta.get("kind", PUBLIC)


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room: str
    kind: str
    owner: str
    members: dict[str, str]
    """member -> role"""
    bans: list[str]
    invites: list[str]


def missing(room: str) -> NotFound:
    """The one answer for a room that does not exist, and for a private or direct room to an outsider."""
    return NotFound(f"no room {room!r}")


def check_room_name(room: str) -> None:
    if not valid_room(room):
        raise ProtocolError("room names are 1-128 characters of A-Z a-z 0-9 _ . : @ -", Code.BAD_FRAME)


class Rooms:
    """Who is in which room, with which role; every change is also a sequenced event (``writer``)."""

    def __init__(self, directory: Directory, writer: Writer, limits: Limits, inbox: Inbox) -> None:
        self.directory = directory
        self.writer = writer
        self.limits = limits
        self.inbox = inbox
        self.churn = RateLimiter(limits.membership_per_s, limits.membership_burst, "membership changes")
        """Per user (the actor): create, join, leave, dm and the moderation requests, each a stored event."""

    async def create_room(self, user: str, room: str, kind: str = PUBLIC) -> None:
        """Create a public or private room; the creator is its owner and first member."""
        check_room_name(room)
        self.churn.check(user)
        if kind not in (PUBLIC, PRIVATE):
            raise ProtocolError("kind must be public or private (direct conversations come from dm)", Code.BAD_FRAME)
        if room.startswith(DM_PREFIX):
            raise ProtocolError("room names starting with dm: are direct conversations: use dm", Code.BAD_FRAME)
        await self.check_room_limit(user)
        if not await self.directory.create_room(room, user, {"kind": kind, "owner": user}):
            raise Conflict(f"room {room!r} already exists")
        await self._joined(room, user, user)

    async def dm(self, user: str, other: str) -> str:
        """The direct conversation of ``user`` and ``other``: created on first use with both as members.

        Idempotent: later calls only bring ``user`` back in (after a ``leave``). Nobody else may join it."""
        if not valid_user(other):
            raise ProtocolError(
                "user names are 1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)", Code.BAD_FRAME
            )
        if other == user:
            raise ProtocolError("a direct conversation needs two different users", Code.BAD_FRAME)
        room = dm_room(user, other)
        self.churn.check(user)
        if await self.directory.is_member(room, user):
            return room
        await self._check_dm_limit(user)
        if await self.directory.create_room(room, user, {"kind": DIRECT, OPENER: user}):
            await self._joined(room, user, user)
            if await self.directory.add_member(room, other):
                await self._joined(room, other, user)  # the conversation shows up in the other's stream
        elif await self.directory.add_member(room, user):
            await self._joined(room, user, user)
        return room

    async def _joined(self, room: str, user: str, by: str) -> None:
        """Store ``user``'s ``join`` in the room, then ``added`` in their stream [R-INBOX-5]."""
        join = await self.writer.event(room, user, KIND_JOIN)
        await self.inbox.emit(user, Added(room, by, join.seq), join.seq)

    async def join(self, user: str, room: str, *, by: str | None = None) -> None:
        """``by``: who made ``user`` a member, when it was not ``user`` (an API key adding them)."""
        self.churn.check(user)
        self.refuse_inbox(user, room)
        await self.require_room(room)
        if await self.directory.is_member(room, user):
            return
        meta = await self.directory.room_attrs(room, NS_META)
        kind = kind_of(room, meta)
        invited = False
        if kind == DIRECT:
            if user not in _dm_pair(room):
                raise missing(room)  # [R-SEC-63] as if there were none
        else:
            if kind == PRIVATE and user != meta.get("owner"):
                invited = user in await self.directory.room_attrs(room, NS_INVITES)
                if not invited:
                    raise missing(room)  # [R-SEC-63] a banned user is never invited
            if await self.banned(room, user):
                raise AuthError(f"banned from {room!r}", Code.FORBIDDEN)
        await self.check_room_limit(user)
        if not await self.directory.add_member(room, user):
            return
        # A ban that raced this join wins: the ban is written before its removal, so either this check
        # sees it, or the ban's removal comes after the add above.
        if kind != DIRECT and await self.banned(room, user):
            await self.directory.remove_member(room, user)
            raise AuthError(f"banned from {room!r}", Code.FORBIDDEN)
        if invited or user in await self.directory.room_attrs(room, NS_INVITES):
            await self.directory.set_room_attr(room, NS_INVITES, user, None)
            await self.inbox.unindex_invitation(user, room)
        await self._joined(room, user, by or user)

    async def leave(self, user: str, room: str) -> None:
        """Leaving a room one is not in is a no-op, but 4404 in a private or direct one that one is not invited
        to, as for a room that does not exist (R-SEC-63)."""
        self.churn.check(user)
        self.refuse_inbox(user, room)
        await self.require_room(room)
        if await self.directory.remove_member(room, user):
            await self.drop_role(room, user)
            left = await self.writer.event(room, user, KIND_LEAVE)
            await self.inbox.emit(user, Removed(room, user, HOW_LEAVE, left.seq), left.seq)
        elif await self.hidden(room, user):
            raise missing(room)

    async def rooms_of(self, user: str) -> list[str]:
        """The rooms ``user`` is a member of, without their own event stream (a pseudo-room)."""
        return [room for room in await self.directory.rooms_of(user) if valid_room(room)]

    async def public_rooms(self) -> list[str]:
        """Rooms anyone may find and join: not private ones, not direct conversations."""
        out = []
        for room in await self.all_rooms():
            if room.startswith(DM_PREFIX):
                continue
            if kind_of(room, await self.directory.room_attrs(room, NS_META)) == PUBLIC:
                out.append(room)
        return out

    async def all_rooms(self) -> list[str]:
        """Every room of every kind, but not the server's own pseudo-rooms (``~``, outside the room names:
        where API keys are kept, apikeys.py)."""
        return [room for room in await self.directory.all_rooms() if valid_room(room)]

    async def room_info(self, room: str) -> RoomInfo:
        """Everything about a room's membership (admin API; members see their own rooms' roles)."""
        await self.require_room(room)
        meta = await self.directory.room_attrs(room, NS_META)
        roles = await self.directory.room_attrs(room, NS_ROLES)
        owner = meta.get("owner", "")
        members = {u: OWNER if u == owner else roles.get(u, MEMBER) for u in await self.directory.members(room)}
        bans = sorted(await self.directory.room_attrs(room, NS_BANS))
        invites = sorted(await self.directory.room_attrs(room, NS_INVITES))
        return RoomInfo(room, kind_of(room, meta), owner, members, bans, invites)

    async def is_member(self, user: str, room: str) -> bool:
        """One directory read, for a check repeated on a path that must stay cheap (a catch-up page)."""
        return await self.directory.is_member(room, user)

    async def check_member(self, user: str, room: str) -> None:
        """Raise unless ``user`` may read and write ``room``: 4403 in a public room (which anyone may see
        exists), 4404 in a private or direct one, the same answer as for a room that does not exist, so an
        outsider cannot tell which private names are taken [R-SEC-63].

        A user's own event stream passes (created now if need be: a client may follow it before its first
        event); anyone else's is 4404, as a private room. Writes to a stream are refused before this check
        (``refuse_inbox``)."""
        owner = inbox_owner(room)
        if owner is not None:
            if owner != user:
                raise missing(room)
            await self.inbox.ensure(user)
            return
        if await self.directory.is_member(room, user):
            return
        await self.require_room(room)
        if await self.hidden(room, user):
            raise missing(room)
        raise AuthError(f"not a member of {room!r}", Code.FORBIDDEN)

    @staticmethod
    def refuse_inbox(user: str, room: str) -> None:
        """Nobody but the server writes an event stream [R-INBOX-2]: a request that would store something in
        one, or change its membership, is 4403 in the user's own stream and 4404 in anyone else's."""
        owner = inbox_owner(room)
        if owner is None:
            return
        if owner != user:
            raise missing(room)
        raise AuthError(f"{room!r} is your event stream: only the server writes it", Code.FORBIDDEN)

    async def hidden(self, room: str, user: str) -> bool:
        """Is the room's existence kept from ``user``, not a member? A private or direct room is, unless
        ``user`` holds an invitation to it (and so knows it)."""
        if kind_of(room, await self.directory.room_attrs(room, NS_META)) == PUBLIC:
            return False
        return user not in await self.directory.room_attrs(room, NS_INVITES)

    async def may_delete_for(self, user: str, room: str, sender: str) -> bool:
        """May ``user`` delete ``sender``'s messages in ``room``? [R-SEC-64] An owner or admin whose role is
        higher than the sender's role now: the owner deletes admins' and members' messages, an admin
        members' (and those of users no longer in the room); nobody but the owner deletes the owner's."""
        meta = await self.directory.room_attrs(room, NS_META)
        rank = RANK[await self.role(room, user, meta)]
        return rank >= RANK[ADMIN] and rank > RANK[await self.role(room, sender, meta)]

    async def require_room(self, room: str) -> None:
        check_room_name(room)
        if not await self.directory.room_exists(room):
            raise missing(room)

    async def role(self, room: str, user: str, meta: dict[str, str]) -> str:
        if user == meta.get("owner"):
            return OWNER
        return (await self.directory.room_attrs(room, NS_ROLES)).get(user, MEMBER)

    async def drop_role(self, room: str, user: str) -> None:
        if user in await self.directory.room_attrs(room, NS_ROLES):
            await self.directory.set_room_attr(room, NS_ROLES, user, None)

    async def banned(self, room: str, user: str) -> bool:
        return user in await self.directory.room_attrs(room, NS_BANS)

    async def check_room_limit(self, user: str) -> None:
        """Rooms (not direct conversations) the user is in, before a create or join [R-SEC-65].

        Approximate under concurrent joins of one user (checked, then joined): a guard, not a quota."""
        rooms = [r for r in await self.rooms_of(user) if not r.startswith(DM_PREFIX)]
        if len(rooms) >= self.limits.max_rooms_per_user:
            raise RoostError(
                f"in {self.limits.max_rooms_per_user} rooms already (the per-user limit): leave one first",
                Code.TOO_MANY_ROOMS,
            )

    async def _check_dm_limit(self, user: str) -> None:
        """Direct conversations the user opened, before a ``dm`` [R-SEC-65]: those others opened with them
        do not count, so 1,000 accounts opening one each cannot use up the user's own budget. The rooms'
        ``meta`` is read only when the user is in that many direct conversations at all."""
        dms = [r for r in await self.directory.rooms_of(user) if r.startswith(DM_PREFIX)]
        limit = self.limits.max_rooms_per_user
        if len(dms) < limit:
            return
        metas = await asyncio.gather(*(self.directory.room_attrs(r, NS_META) for r in dms))
        # A conversation from before ``opener`` was recorded counts for both of its users.
        if sum(1 for meta in metas if meta.get(OPENER, user) == user) >= limit:
            raise RoostError(
                f"opened {limit} direct conversations already (the per-user limit): leave one first",
                Code.TOO_MANY_ROOMS,
            )
