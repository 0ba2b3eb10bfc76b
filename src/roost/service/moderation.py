"""Moderation: invitations, kicks, bans and roles, by a room's owner and admins (docs/security.md).

Separate from membership (``rooms.py``) because every request here has two users, an actor and a
target, and is checked the same way (``_moderated``: not on oneself, not in a direct conversation, an
owner or admin actor) before its own rule: an invitation needs no ban, a kick and a ban need a higher
role, only the owner gives roles. Each change is a sequenced event with its actor in the body.
"""

from __future__ import annotations

import msgspec

from ..protocol.codes import Code
from ..protocol.errors import AuthError, Conflict, NotFound, ProtocolError
from ..protocol.types import KIND_BAN, KIND_INVITE, KIND_KICK, KIND_ROLE, KIND_UNBAN, valid_user
from .rooms import ADMIN, DIRECT, MEMBER, NS_BANS, NS_INVITES, NS_META, NS_ROLES, OWNER, RANK, Rooms, kind_of

__all__ = ["Moderation"]


def _by(actor: str, **more: str) -> str:
    """The body of a moderation event: who did it (and the new role), as a small JSON object."""
    return msgspec.json.encode({"by": actor, **more}).decode()


class Moderation:
    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self.directory = rooms.directory
        self.writer = rooms.writer

    async def invite(self, actor: str, room: str, user: str) -> None:
        """Owner or admin: let ``user`` join (needed for a private room; recorded for any room)."""
        await self._moderated(actor, room, user)
        if await self.rooms.banned(room, user):
            raise AuthError(f"{user!r} is banned from {room!r}: unban first", Code.FORBIDDEN)
        if await self.directory.is_member(room, user):
            raise Conflict(f"{user!r} is already a member of {room!r}")
        if user in await self.directory.room_attrs(room, NS_INVITES):
            return
        await self.directory.set_room_attr(room, NS_INVITES, user, actor)
        await self.writer.event(room, user, KIND_INVITE, _by(actor))

    async def add(self, actor: str, room: str, user: str) -> None:
        """Owner or admin: make ``user`` a member now, as an invitation (by ``actor``) and ``user``'s join, under
        every rule of those two (bans, the user's rooms limit). Only for API keys' principals (the gateway
        checks it, R-SEC-88): a user invites, and the invited user decides to join."""
        await self._moderated(actor, room, user)
        if await self.directory.is_member(room, user):
            return
        if await self.rooms.banned(room, user):
            raise AuthError(f"{user!r} is banned from {room!r}: unban first", Code.FORBIDDEN)
        await self.rooms.check_room_limit(user)  # before the invitation: a refused add leaves nothing behind
        if user not in await self.directory.room_attrs(room, NS_INVITES):
            await self.directory.set_room_attr(room, NS_INVITES, user, actor)
            await self.writer.event(room, user, KIND_INVITE, _by(actor))
        await self.rooms.join(user, room)

    async def kick(self, actor: str, room: str, user: str) -> None:
        """Owner or admin, over a lower role: remove ``user``; their subscriptions end as after a leave."""
        meta = await self._moderated(actor, room, user)
        await self._outrank(actor, room, user, meta)
        if not await self.directory.remove_member(room, user):
            raise NotFound(f"{user!r} is not a member of {room!r}", Code.UNKNOWN_ROOM)
        await self.rooms.drop_role(room, user)
        await self.writer.event(room, user, KIND_KICK, _by(actor))

    async def ban(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> None:
        """Kick (if a member) and refuse every later join and invitation until ``unban``.

        ``as_admin``: a server administrator (admin HTTP API), who needs no role in the room."""
        meta = await self._moderated(actor, room, user, as_admin=as_admin)
        if not as_admin:
            await self._outrank(actor, room, user, meta)
        if await self.rooms.banned(room, user):
            return
        await self.directory.set_room_attr(room, NS_BANS, user, actor)  # before the removal: see join
        await self.directory.set_room_attr(room, NS_INVITES, user, None)
        if await self.directory.remove_member(room, user):
            await self.rooms.drop_role(room, user)
        await self.writer.event(room, user, KIND_BAN, _by(actor))

    async def unban(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> None:
        await self._moderated(actor, room, user, as_admin=as_admin)
        if not await self.rooms.banned(room, user):
            return
        await self.directory.set_room_attr(room, NS_BANS, user, None)
        await self.writer.event(room, user, KIND_UNBAN, _by(actor))

    async def set_role(self, actor: str, room: str, user: str, role: str) -> None:
        """Owner only: make a member an ``admin`` or a plain ``member`` again."""
        if role not in (ADMIN, MEMBER):
            raise ProtocolError("role must be admin or member", Code.BAD_FRAME)
        meta = await self._moderated(actor, room, user)
        if await self.rooms.role(room, actor, meta) != OWNER:
            raise AuthError(f"only the owner of {room!r} gives roles", Code.FORBIDDEN)
        if not await self.directory.is_member(room, user):
            raise NotFound(f"{user!r} is not a member of {room!r}", Code.UNKNOWN_ROOM)
        if await self.rooms.role(room, user, meta) == role:
            return
        await self.directory.set_room_attr(room, NS_ROLES, user, role if role == ADMIN else None)
        await self.writer.event(room, user, KIND_ROLE, _by(actor, role=role))

    async def _moderated(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> dict[str, str]:
        """Common checks of a moderation request; returns the room's meta.

        The actor must be an owner or admin member of a room that is not a direct conversation, within the
        membership-change rate (a server administrator is not limited)."""
        if not valid_user(user):
            raise ProtocolError(
                "user names are 1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)", Code.BAD_FRAME
            )
        if user == actor:
            raise ProtocolError("not on oneself (use leave)", Code.BAD_FRAME)
        if as_admin:
            await self.rooms.require_room(room)
        else:
            await self.rooms.check_member(actor, room)  # first: an outsider learns nothing of a private room
        meta = await self.directory.room_attrs(room, NS_META)
        if kind_of(room, meta) == DIRECT:
            raise AuthError(f"{room!r} is a direct conversation: it has no moderators", Code.FORBIDDEN)
        if as_admin:
            return meta
        self.rooms.churn.check(actor)
        if RANK[await self.rooms.role(room, actor, meta)] < RANK[ADMIN]:
            raise AuthError(f"only the owner or an admin of {room!r} may do that", Code.FORBIDDEN)
        return meta

    async def _outrank(self, actor: str, room: str, user: str, meta: dict[str, str]) -> None:
        if RANK[await self.rooms.role(room, actor, meta)] <= RANK[await self.rooms.role(room, user, meta)]:
            raise AuthError(f"{user!r} has the same or a higher role in {room!r}", Code.FORBIDDEN)
