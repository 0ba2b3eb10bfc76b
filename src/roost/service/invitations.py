"""Invitations: made by a room's moderators (moderation.py checks who may), listed, declined and revoked.

An invitation lives in the room's ``invites`` attribute (``rooms.Invitation``: who invited, and an id fixed
when it is made) until the join it allows uses it up, or it ends: declined by the invited user, revoked by
who invited them (or an owner or admin of the room), or cleared by a ban. Each step is an event in the room
(``invite``, ``uninvite``) and one in the invited user's stream (``invited``, ``uninvited``), all keyed by
the invitation's id, so a retried step stores each of them once. The attribute is set first and cleared
last: until the end is complete, the invitation stands and a retry finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from ..protocol.codes import Code
from ..protocol.errors import AuthError, Conflict, NotFound, ProtocolError
from ..protocol.inbox import REASON_DECLINED, REASON_REVOKED, Invited, Uninvited
from ..protocol.types import KIND_INVITE, KIND_UNINVITE, valid_user
from .rooms import ADMIN, DIRECT, NS_INVITES, NS_META, RANK, Invitation, Rooms, by_body, check_room_name, kind_of

__all__ = ["Invitations"]


class Invitations:
    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self.directory = rooms.directory
        self.writer = rooms.writer
        self.inbox = rooms.inbox

    async def record(self, actor: str, room: str, user: str) -> None:
        """Invite ``user`` (the caller has checked that ``actor`` may): the index in their stream, the room's
        attribute, the room's ``invite`` event, then ``invited`` in their stream [R-INBOX-3].

        Repeating it stores nothing new (R-ROOM-5): the standing invitation's events are written again under
        their keys, which heals a request that failed half way."""
        current = (await self.directory.room_attrs(room, NS_INVITES)).get(user)
        if current is None:
            invitation = Invitation(actor, uuid.uuid4().hex)
            await self.inbox.index_invitation(user, room, actor)  # first: the listing checks it against the room
            await self.directory.set_room_attr(room, NS_INVITES, user, invitation.encode())
        else:
            invitation = Invitation.decode(current)
            if not invitation.id:
                return  # made before invitations had ids: its events cannot be named again
            await self.inbox.index_invitation(user, room, invitation.by)
        await self.writer.event(room, user, KIND_INVITE, by_body(invitation.by), key=invitation.id)
        await self.inbox.emit(user, Invited(room, invitation.by), invitation.id)

    async def decline(self, user: str, room: str) -> None:
        """The invited user says no [R-INBOX-4]: the invitation ends (joining needs a new one). 4404 when there
        is none, whether or not the room exists (a private room stays hidden)."""
        self.rooms.churn.check(user)
        self.rooms.refuse_inbox(user, room)
        check_room_name(room)
        current = (await self.directory.room_attrs(room, NS_INVITES)).get(user)
        if current is None:
            raise NotFound(f"no invitation to {room!r}")
        await self._end(room, user, Invitation.decode(current), user, REASON_DECLINED)

    async def revoke(self, actor: str, room: str, user: str) -> None:
        """Who invited ``user``, or an owner or admin of the room, takes the invitation back [R-INBOX-4].
        Nothing to revoke is no error (as ``unban``)."""
        if not valid_user(user):
            raise ProtocolError(
                "user names are 1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)", Code.BAD_FRAME
            )
        self.rooms.refuse_inbox(actor, room)
        await self.rooms.check_member(actor, room)  # first: an outsider learns nothing of a private room
        meta = await self.directory.room_attrs(room, NS_META)
        if kind_of(room, meta) == DIRECT:
            raise AuthError(f"{room!r} is a direct conversation: it has no invitations", Code.FORBIDDEN)
        self.rooms.churn.check(actor)
        current = (await self.directory.room_attrs(room, NS_INVITES)).get(user)
        if current is None:
            return
        invitation = Invitation.decode(current)
        if actor != invitation.by and RANK[await self.rooms.role(room, actor, meta)] < RANK[ADMIN]:
            raise AuthError(f"only {invitation.by} or an owner or admin of {room!r} may revoke it", Code.FORBIDDEN)
        await self._end(room, user, invitation, actor, REASON_REVOKED)

    async def _end(self, room: str, user: str, invitation: Invitation, by: str, reason: str) -> None:
        """The room's ``uninvite`` (its ``sender`` the invited user, ``by`` who ended it), ``uninvited`` in the
        user's stream, then the attribute and the index go."""
        key = invitation.id or uuid.uuid4().hex
        # A Conflict: the other party ended it meanwhile (a decline racing a revoke), and the first one stands.
        with contextlib.suppress(Conflict):
            await self.writer.event(room, user, KIND_UNINVITE, by_body(by), key=key)
        with contextlib.suppress(Conflict):
            await self.inbox.emit(user, Uninvited(room, by, reason), key)
        await self.directory.set_room_attr(room, NS_INVITES, user, None)
        await self.inbox.unindex_invitation(user, room)

    async def pending(self, user: str) -> list[tuple[str, str]]:
        """``(room, who invited)`` of each invitation ``user`` holds, by room name [R-INBOX-3]. The index in the
        user's stream names the candidates; each is checked against its room, so one a crash left in the
        index after the invitation ended is not listed."""
        rooms = sorted(await self.inbox.indexed_invitations(user))
        attrs = await asyncio.gather(*(self.directory.room_attrs(room, NS_INVITES) for room in rooms))
        return [(room, Invitation.decode(a[user]).by) for room, a in zip(rooms, attrs, strict=True) if user in a]
