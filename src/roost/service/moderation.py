"""Moderation: invitations, kicks, bans and roles, by a room's owner and admins (docs/security.md).

Separate from membership (``rooms.py``) because every request here has two users, an actor and a
target, and is checked the same way (``_moderated``: not on oneself, not in a direct conversation, an
owner or admin actor) before its own rule: an invitation needs no ban, a kick and a ban need a higher
role, only the owner gives roles. Each change is a sequenced event with its actor in the body, and a kick
or a ban is also an event in the target's own stream (``removed``; invitations: invitations.py).
"""

from __future__ import annotations

from ..protocol.codes import Code
from ..protocol.errors import AuthError, Conflict, NotFound, ProtocolError
from ..protocol.inbox import HOW_BAN, HOW_KICK, REASON_BANNED, Removed, Uninvited
from ..protocol.types import KIND_BAN, KIND_KICK, KIND_ROLE, KIND_UNBAN, valid_user
from .invitations import Invitations
from .rooms import (
    ADMIN,
    DIRECT,
    MEMBER,
    NS_BANS,
    NS_INVITES,
    NS_META,
    NS_ROLES,
    OWNER,
    RANK,
    Invitation,
    Rooms,
    by_body,
    kind_of,
)

__all__ = ["Moderation"]


class Moderation:
    def __init__(self, rooms: Rooms, invitations: Invitations) -> None:
        self.rooms = rooms
        self.invitations = invitations
        self.directory = rooms.directory
        self.writer = rooms.writer
        self.inbox = rooms.inbox

    async def invite(self, actor: str, room: str, user: str) -> None:
        """Owner or admin: let ``user`` join (needed for a private room; recorded for any room)."""
        await self._moderated(actor, room, user)
        if await self.rooms.banned(room, user):
            raise AuthError(f"{user!r} is banned from {room!r}: unban first", Code.FORBIDDEN)
        if await self.directory.is_member(room, user):
            raise Conflict(f"{user!r} is already a member of {room!r}")
        await self.invitations.record(actor, room, user)

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
        await self.invitations.record(actor, room, user)
        await self.rooms.join(user, room, by=actor)

    async def kick(self, actor: str, room: str, user: str) -> None:
        """Owner or admin, over a lower role: remove ``user``; their subscriptions end as after a leave."""
        meta = await self._moderated(actor, room, user)
        await self._outrank(actor, room, user, meta)
        if not await self.directory.remove_member(room, user):
            raise NotFound(f"{user!r} is not a member of {room!r}", Code.UNKNOWN_ROOM)
        await self.rooms.drop_role(room, user)
        kick = await self.writer.event(room, user, KIND_KICK, by_body(actor))
        await self.inbox.emit(user, Removed(room, actor, HOW_KICK, kick.seq), kick.seq)

    async def ban(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> None:
        """Kick (if a member) and refuse every later join and invitation until ``unban``.

        ``as_admin``: a server administrator (admin HTTP API), who needs no role in the room."""
        meta = await self._moderated(actor, room, user, as_admin=as_admin)
        if not as_admin:
            await self._outrank(actor, room, user, meta)
        if await self.rooms.banned(room, user):
            return
        invited = (await self.directory.room_attrs(room, NS_INVITES)).get(user)
        await self.directory.set_room_attr(room, NS_BANS, user, actor)  # before the removal: see join
        await self.directory.set_room_attr(room, NS_INVITES, user, None)
        removed = await self.directory.remove_member(room, user)
        if removed:
            await self.rooms.drop_role(room, user)
        ban = await self.writer.event(room, user, KIND_BAN, by_body(actor))
        if removed:
            await self.inbox.emit(user, Removed(room, actor, HOW_BAN, ban.seq), ban.seq)
        elif invited is not None:
            # The invitation goes with the ban: its holder is told so, as for a revocation.
            await self.inbox.emit(user, Uninvited(room, actor, REASON_BANNED), Invitation.decode(invited).id or ban.seq)
            await self.inbox.unindex_invitation(user, room)

    async def unban(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> None:
        await self._moderated(actor, room, user, as_admin=as_admin)
        if not await self.rooms.banned(room, user):
            return
        await self.directory.set_room_attr(room, NS_BANS, user, None)
        await self.writer.event(room, user, KIND_UNBAN, by_body(actor))

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
        await self.writer.event(room, user, KIND_ROLE, by_body(actor, role=role))

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
        self.rooms.refuse_inbox(actor, room)
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
