"""ChatService: the rules of Roost, written once against the ports, the same for every backend.

Where the contract is enforced:

* Persist, then publish: ``_append``, the one write path of every message (sends, relations, membership
  events), awaits ``Store.append`` (durable on return) and only then publishes the encoded message on the
  bus; a failed append raises and publishes nothing.
* Idempotency: the store answers a retried ``(room, sender, cmid)`` with the original message; the
  service re-publishes it, which heals a crash between commit and publish (receivers drop the
  duplicate by seq).
* Membership: every read and write checks it here, so no gateway or backend can skip it.
* Encode once: the message is encoded a single time per publish; every node and session forwards
  those bytes unchanged.
* Rooms (docs/security.md, "Authorization"): kinds, roles, invitations and bans are rules here, over the
  Directory's generic per-room attributes, so they are the same on every backend. Every membership
  change is also a message in the room's sequence (``join``, ``leave``, ``invite``, ``kick``, ``ban``,
  ``unban``, ``role``), so a member who was offline converges by reading the room.
* Relations (edit, delete, react; see ``protocol/relations.py``): their rules are here, and every
  read path (``history``, ``catchup``, a re-published duplicate) serves deleted messages as
  tombstones, through one ``RelationIndex``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Final

import msgspec

from .config import Limits
from .metrics import NodeMetrics
from .ports import Appended, Bus, Directory, Store
from .protocol import frames
from .protocol.codes import Code
from .protocol.errors import AuthError, Conflict, NotFound, ProtocolError, RoostError
from .protocol.relations import (
    KIND_DELETE,
    KIND_EDIT,
    KIND_REACT,
    KIND_UNREACT,
    MAX_EMOJI_BYTES,
    DeleteContent,
    EditContent,
    ReactContent,
    Relations,
    encode_content,
    react_cmid,
)
from .protocol.types import (
    KIND_BAN,
    KIND_INVITE,
    KIND_JOIN,
    KIND_KICK,
    KIND_LEAVE,
    KIND_ROLE,
    KIND_TEXT,
    KIND_UNBAN,
    MAX_SEQ,
    Draft,
    Message,
    Page,
    valid_cmid,
    valid_room,
    valid_user,
)
from .ratelimit import RateLimiter
from .relindex import RelationIndex

__all__ = ["MAX_SEQ", "ROOM_KINDS", "ChatService", "HistoryResult", "RoomInfo", "dm_room"]

PUBLIC: Final = "public"
PRIVATE: Final = "private"
DIRECT: Final = "direct"
ROOM_KINDS: Final = (PUBLIC, PRIVATE, DIRECT)
OWNER: Final = "owner"
ADMIN: Final = "admin"
MEMBER: Final = "member"
_RANK: Final = {MEMBER: 0, ADMIN: 1, OWNER: 2}
DM_PREFIX: Final = "dm:"
# Attribute namespaces of the Directory, and what they hold.
NS_META: Final = "meta"
"""``kind`` and ``owner``, fixed at creation. A room without them predates kinds: public, no owner."""
NS_ROLES: Final = "roles"
"""user -> ``admin`` (absent: a plain member; the owner is in ``meta``)."""
NS_BANS: Final = "bans"
"""user -> who banned them."""
NS_INVITES: Final = "invites"
"""user -> who invited them; used up by the join it allows."""


def dm_room(a: str, b: str) -> str:
    """The one room of two users: ``dm:<a>:<b>`` with the names sorted (user names contain no ``:``)."""
    first, second = sorted((a, b))
    return f"{DM_PREFIX}{first}:{second}"


def _dm_pair(room: str) -> tuple[str, ...]:
    return tuple(room.removeprefix(DM_PREFIX).split(":")) if room.startswith(DM_PREFIX) else ()


def _kind(room: str, meta: dict[str, str]) -> str:
    """A room's kind. Any ``dm:`` room is direct, also one made by the web page's old naming convention
    (a public room then, created before kinds existed); other rooms without a kind are public."""
    return DIRECT if room.startswith(DM_PREFIX) else meta.get("kind", PUBLIC)


def _by(actor: str, **more: str) -> str:
    """The body of a moderation event: who did it (and the new role), as a small JSON object."""
    return msgspec.json.encode({"by": actor, **more}).decode()


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room: str
    kind: str
    owner: str
    members: dict[str, str]
    """member -> role"""
    bans: list[str]
    invites: list[str]


@dataclass(frozen=True, slots=True)
class HistoryResult:
    page: Page
    has_more: bool


class ChatService:
    def __init__(
        self, store: Store, directory: Directory, bus: Bus, limits: Limits, metrics: NodeMetrics | None = None
    ) -> None:
        self.metrics = metrics or NodeMetrics()
        self.store = store
        self.directory = directory
        self.bus = bus
        self.limits = limits
        self.sends = RateLimiter(limits.sends_per_s, limits.send_burst, "sends")
        self.typings = RateLimiter(limits.typing_per_s, limits.typing_per_s * 2, "typing signals")
        self.relations = RelationIndex(store)

    # ---- rooms ------------------------------------------------------------------------------

    async def create_room(self, user: str, room: str, kind: str = PUBLIC) -> None:
        """Create a public or private room; the creator is its owner and first member."""
        self._check_room_name(room)
        if kind not in (PUBLIC, PRIVATE):
            raise ProtocolError("kind must be public or private (direct conversations come from dm)", Code.BAD_FRAME)
        if room.startswith(DM_PREFIX):
            raise ProtocolError("room names starting with dm: are direct conversations: use dm", Code.BAD_FRAME)
        await self._check_room_limit(user)
        if not await self.directory.create_room(room, user, {"kind": kind, "owner": user}):
            raise Conflict(f"room {room!r} already exists")
        await self._event(room, user, KIND_JOIN)

    async def dm(self, user: str, other: str) -> str:
        """The direct conversation of ``user`` and ``other``: created on first use with both as members.

        Idempotent: later calls only bring ``user`` back in (after a ``leave``). Nobody else may join it."""
        if not valid_user(other):
            raise ProtocolError("user names are 1-64 characters of A-Z a-z 0-9 _ . @ -", Code.BAD_FRAME)
        if other == user:
            raise ProtocolError("a direct conversation needs two different users", Code.BAD_FRAME)
        room = dm_room(user, other)
        if await self.directory.is_member(room, user):
            return room
        await self._check_room_limit(user)
        if await self.directory.create_room(room, user, {"kind": DIRECT}):
            await self._event(room, user, KIND_JOIN)
            if await self.directory.add_member(room, other):
                await self._event(room, other, KIND_JOIN)
        elif await self.directory.add_member(room, user):
            await self._event(room, user, KIND_JOIN)
        return room

    async def join(self, user: str, room: str) -> None:
        await self._require_room(room)
        if await self.directory.is_member(room, user):
            return
        meta = await self.directory.room_attrs(room, NS_META)
        kind = _kind(room, meta)
        invited = False
        if kind == DIRECT:
            if user not in _dm_pair(room):
                raise AuthError(f"{room!r} is a direct conversation of two other users", Code.FORBIDDEN)
        else:
            if await self._banned(room, user):
                raise AuthError(f"banned from {room!r}", Code.FORBIDDEN)
            if kind == PRIVATE and user != meta.get("owner"):
                invited = user in await self.directory.room_attrs(room, NS_INVITES)
                if not invited:
                    raise AuthError(f"{room!r} is private: an invitation is needed", Code.FORBIDDEN)
        await self._check_room_limit(user)
        if not await self.directory.add_member(room, user):
            return
        # A ban that raced this join wins: the ban is written before its removal, so either this check
        # sees it, or the ban's removal comes after the add above.
        if kind != DIRECT and await self._banned(room, user):
            await self.directory.remove_member(room, user)
            raise AuthError(f"banned from {room!r}", Code.FORBIDDEN)
        if invited:
            await self.directory.set_room_attr(room, NS_INVITES, user, None)
        await self._event(room, user, KIND_JOIN)

    async def leave(self, user: str, room: str) -> None:
        await self._require_room(room)
        if await self.directory.remove_member(room, user):
            await self._drop_role(room, user)
            await self._event(room, user, KIND_LEAVE)

    async def invite(self, actor: str, room: str, user: str) -> None:
        """Owner or admin: let ``user`` join (needed for a private room; recorded for any room)."""
        await self._moderated(actor, room, user)
        if await self._banned(room, user):
            raise AuthError(f"{user!r} is banned from {room!r}: unban first", Code.FORBIDDEN)
        if await self.directory.is_member(room, user):
            raise Conflict(f"{user!r} is already a member of {room!r}")
        if user in await self.directory.room_attrs(room, NS_INVITES):
            return
        await self.directory.set_room_attr(room, NS_INVITES, user, actor)
        await self._event(room, user, KIND_INVITE, _by(actor))

    async def kick(self, actor: str, room: str, user: str) -> None:
        """Owner or admin, over a lower role: remove ``user``; their subscriptions end as after a leave."""
        meta = await self._moderated(actor, room, user)
        await self._outrank(actor, room, user, meta)
        if not await self.directory.remove_member(room, user):
            raise NotFound(f"{user!r} is not a member of {room!r}", Code.UNKNOWN_ROOM)
        await self._drop_role(room, user)
        await self._event(room, user, KIND_KICK, _by(actor))

    async def ban(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> None:
        """Kick (if a member) and refuse every later join and invitation until ``unban``.

        ``as_admin``: a server administrator (admin HTTP API), who needs no role in the room."""
        meta = await self._moderated(actor, room, user, as_admin=as_admin)
        if not as_admin:
            await self._outrank(actor, room, user, meta)
        if await self._banned(room, user):
            return
        await self.directory.set_room_attr(room, NS_BANS, user, actor)  # before the removal: see join
        await self.directory.set_room_attr(room, NS_INVITES, user, None)
        if await self.directory.remove_member(room, user):
            await self._drop_role(room, user)
        await self._event(room, user, KIND_BAN, _by(actor))

    async def unban(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> None:
        await self._moderated(actor, room, user, as_admin=as_admin)
        if not await self._banned(room, user):
            return
        await self.directory.set_room_attr(room, NS_BANS, user, None)
        await self._event(room, user, KIND_UNBAN, _by(actor))

    async def set_role(self, actor: str, room: str, user: str, role: str) -> None:
        """Owner only: make a member an ``admin`` or a plain ``member`` again."""
        if role not in (ADMIN, MEMBER):
            raise ProtocolError("role must be admin or member", Code.BAD_FRAME)
        meta = await self._moderated(actor, room, user)
        if await self._role(room, actor, meta) != OWNER:
            raise AuthError(f"only the owner of {room!r} gives roles", Code.FORBIDDEN)
        if not await self.directory.is_member(room, user):
            raise NotFound(f"{user!r} is not a member of {room!r}", Code.UNKNOWN_ROOM)
        if await self._role(room, user, meta) == role:
            return
        await self.directory.set_room_attr(room, NS_ROLES, user, role if role == ADMIN else None)
        await self._event(room, user, KIND_ROLE, _by(actor, role=role))

    async def rooms_of(self, user: str) -> list[str]:
        return await self.directory.rooms_of(user)

    async def public_rooms(self) -> list[str]:
        """Rooms anyone may find and join: not private ones, not direct conversations."""
        out = []
        for room in await self.directory.all_rooms():
            if not room.startswith(DM_PREFIX) and _kind(room, await self.directory.room_attrs(room, NS_META)) == PUBLIC:
                out.append(room)
        return out

    async def all_rooms(self) -> list[str]:
        return await self.directory.all_rooms()

    async def room_info(self, room: str) -> RoomInfo:
        """Everything about a room's membership (admin API; members see their own rooms' roles)."""
        await self._require_room(room)
        meta = await self.directory.room_attrs(room, NS_META)
        roles = await self.directory.room_attrs(room, NS_ROLES)
        owner = meta.get("owner", "")
        members = {u: OWNER if u == owner else roles.get(u, MEMBER) for u in await self.directory.members(room)}
        bans = sorted(await self.directory.room_attrs(room, NS_BANS))
        invites = sorted(await self.directory.room_attrs(room, NS_INVITES))
        return RoomInfo(room, _kind(room, meta), owner, members, bans, invites)

    async def check_member(self, user: str, room: str) -> None:
        """Raise unless ``user`` may read and write ``room``."""
        if await self.directory.is_member(room, user):
            return
        await self._require_room(room)
        raise AuthError(f"not a member of {room!r}", Code.FORBIDDEN)

    # ---- messages ---------------------------------------------------------------------------

    async def send(self, user: str, room: str, cmid: str, body: str) -> Appended:
        self._check_text(cmid, body)
        self.sends.check(user)  # per user, over every connection and HTTP alike
        await self.check_member(user, room)
        return await self._append(Draft(room, user, cmid, body, KIND_TEXT))

    # ---- relations: edits, deletions, reactions -----------------------------------------------

    async def edit(self, user: str, room: str, target: int, body: str, cmid: str) -> Appended:
        """Store ``kind: edit`` replacing the text of ``target``. Only its sender may; not once deleted."""
        self._check_text(cmid, body)
        self.sends.check(user)
        await self.check_member(user, room)
        original, relations = await self._target(room, target)
        if original.sender != user:
            raise AuthError(f"only {original.sender} may edit message {target}", Code.FORBIDDEN)
        self._refuse_deleted(relations, target)
        return await self._append(Draft(room, user, cmid, encode_content(EditContent(target, body)), KIND_EDIT))

    async def delete(
        self, user: str, room: str, target: int, cmid: str | None = None, *, moderator: bool = False
    ) -> Appended:
        """Store ``kind: delete`` of ``target``: its sender, the room's moderators, or a caller that has
        authorized the request itself (``moderator=True``: an admin API; membership is then not checked).

        Without ``cmid`` the key is ``~delete-<target>``: a retry is answered with the first delete."""
        cmid = f"~delete-{target}" if cmid is None else cmid
        self._check_cmid(cmid)
        self.sends.check(user)
        if moderator:
            await self._require_room(room)
        else:
            await self.check_member(user, room)
        original, relations = await self._target(room, target)
        if original.sender != user and not moderator and not await self._can_moderate(user, room):
            raise AuthError(f"only {original.sender} or a moderator may delete message {target}", Code.FORBIDDEN)
        existing = relations.deleted(target)
        if existing is not None and (existing.sender, existing.cmid) != (user, cmid):
            raise Conflict(f"message {target} is already deleted")
        return await self._append(Draft(room, user, cmid, encode_content(DeleteContent(target)), KIND_DELETE))

    async def react(self, user: str, room: str, target: int, emoji: str, *, remove: bool = False) -> Appended:
        """Store ``kind: react`` (or ``unreact`` with ``remove``) of ``emoji`` on ``target``.

        One reaction per (user, target, emoji): the cmid is derived (``react_cmid``), so a retry or a
        double click, even on two nodes at once, is one stored event answered as a duplicate."""
        if not emoji.strip() or len(emoji.encode()) > MAX_EMOJI_BYTES or any(_control(c) for c in emoji):
            raise ProtocolError(f"emoji must be 1-{MAX_EMOJI_BYTES} bytes of visible text", Code.BAD_FRAME)
        self.sends.check(user)
        await self.check_member(user, room)
        _, relations = await self._target(room, target)
        self._refuse_deleted(relations, target)
        on, unreacts = relations.reaction(target, user, emoji)
        if not remove:
            kind, generation = KIND_REACT, unreacts  # when ``on``, this key exists: the store says duplicate
        elif on:
            kind, generation = KIND_UNREACT, unreacts
        elif unreacts:
            kind, generation = KIND_UNREACT, unreacts - 1  # removed already: answered with that unreact
        else:
            raise NotFound(f"{user} has no {emoji} on message {target}")
        cmid = react_cmid(kind, target, emoji, generation)
        return await self._append(Draft(room, user, cmid, encode_content(ReactContent(target, emoji)), kind))

    async def _can_moderate(self, user: str, room: str) -> bool:
        """May ``user`` delete others' messages in ``room``? Its owner and admins may."""
        meta = await self.directory.room_attrs(room, NS_META)
        return _RANK[await self._role(room, user, meta)] >= _RANK[ADMIN]

    async def _target(self, room: str, target: int) -> tuple[Message, Relations]:
        """The stored text message ``target`` of ``room`` and the relations known up to the head."""
        if not 1 <= target <= MAX_SEQ:
            raise ProtocolError(f"target must be between 1 and {MAX_SEQ}", Code.BAD_FRAME)
        page = await self.store.read(room, target - 1, 1)
        if not page.messages or page.messages[0].seq != target:
            gone = " (no longer kept)" if target < page.position.first else ""
            raise NotFound(f"no message {target} in {room!r}{gone}")
        original = page.messages[0]
        if original.kind != KIND_TEXT:
            raise ProtocolError(f"message {target} is a {original.kind!r} event, not a text message", Code.BAD_FRAME)
        return original, await self.relations.relations(room, target, page.position)

    @staticmethod
    def _refuse_deleted(relations: Relations, target: int) -> None:
        if relations.deleted(target) is not None:
            raise Conflict(f"message {target} is deleted")

    async def _append(self, draft: Draft, *, counted: bool = True) -> Appended:
        """Persist, then publish: the one write path of every message (sends, relations, membership events).

        ``Store.append`` is durable when it returns; only then is the message published, unless the store
        published it atomically with the write. A failed append raises and publishes nothing. A duplicate is
        re-published (healing a crash between the two), as a tombstone if it was deleted since.
        ``counted``: a user's message (send, edit, delete, react), which the append metrics count."""
        started = time.perf_counter()
        appended = await self.store.append(draft)
        if counted:
            self.metrics.append_seconds.observe(time.perf_counter() - started)
            if appended.duplicate:
                self.metrics.tally.appended_again += 1
            else:
                self.metrics.tally.appended_new += 1
        if appended.duplicate:
            appended = msgspec.structs.replace(appended, message=await self.relations.redact_one(appended.message))
        if not appended.published:
            await self.publish(appended.message)
        return appended

    async def publish(self, message: Message) -> None:
        await self.bus.publish(message.room, frames.encode(message))

    async def history(
        self, user: str, room: str, *, after: int | None = None, before: int | None = None, limit: int = 50
    ) -> HistoryResult:
        await self.check_member(user, room)
        limit = max(1, min(limit, self.limits.max_history_page))
        for name, value in (("after", after), ("before", before)):
            if value is not None and not 0 <= value <= MAX_SEQ:
                raise ProtocolError(f"{name} must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        if after is not None and before is not None:
            raise ProtocolError("give after or before, not both", Code.BAD_FRAME)
        if before is not None:
            page = await self.relations.redact_page(room, await self.store.read_before(room, before, limit))
            oldest = page.messages[0].seq if page.messages else before
            return HistoryResult(page, has_more=oldest > page.position.first)
        if after is None:
            page = await self.relations.redact_page(room, await self.store.read_before(room, MAX_SEQ, limit))
            oldest = page.messages[0].seq if page.messages else page.position.head + 1
            return HistoryResult(page, has_more=oldest > page.position.first)
        if after < 0:
            raise ProtocolError("after must be >= 0", Code.BAD_FRAME)
        page = await self.catchup(room, after, limit)
        newest = page.messages[-1].seq if page.messages else after
        return HistoryResult(page, has_more=newest < page.position.head)

    async def catchup(self, room: str, after: int, limit: int) -> Page:
        """A store page with tombstones applied: what a subscription's catch-up delivers (membership is
        checked by the subscribe)."""
        return await self.relations.redact_page(room, await self.store.read(room, after, limit))

    async def seq_before_time(self, user: str, room: str, ts_ms: int) -> int:
        await self.check_member(user, room)
        return await self.store.seq_before_time(room, ts_ms)

    async def mark_read(self, user: str, room: str, seq: int) -> int:
        """Move the user's read position forward (clamped to the head) and tell the room's followers."""
        await self.check_member(user, room)
        if not 0 <= seq <= MAX_SEQ:
            raise ProtocolError(f"seq must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        head = (await self.store.position(room)).head
        value = await self.directory.mark_read(room, user, min(seq, head))
        await self.bus.publish(room, frames.encode(frames.Receipt(room=room, user=user, seq=value)))
        return value

    async def unread(self, user: str) -> dict[str, dict[str, int]]:
        """Per room of the user: its head, the user's read position, and the unread count (head - read)."""
        positions = await self.directory.read_positions(user)
        out: dict[str, dict[str, int]] = {}
        for room in await self.directory.rooms_of(user):
            head = (await self.store.position(room)).head
            read = min(positions.get(room, 0), head)
            out[room] = {"head": head, "read": read, "unread": head - read}
        return out

    async def receipts(self, user: str, room: str) -> dict[str, int]:
        """Who has read how far ("seen by"): members' read positions."""
        await self.check_member(user, room)
        return await self.directory.readers(room)

    async def typing(self, user: str, room: str) -> None:
        """Ephemeral: through the bus only, never stored. Over the rate it is dropped, not refused."""
        if self.typings.wait(user):
            return
        await self.check_member(user, room)
        await self.bus.publish(room, frames.encode(frames.TypingEvent(room=room, user=user)))

    # ---- internals --------------------------------------------------------------------------

    async def _moderated(self, actor: str, room: str, user: str, *, as_admin: bool = False) -> dict[str, str]:
        """Common checks of a moderation request; returns the room's meta.

        The actor must be an owner or admin member of a room that is not a direct conversation."""
        if not valid_user(user):
            raise ProtocolError("user names are 1-64 characters of A-Z a-z 0-9 _ . @ -", Code.BAD_FRAME)
        if user == actor:
            raise ProtocolError("not on oneself (use leave)", Code.BAD_FRAME)
        await self._require_room(room)
        meta = await self.directory.room_attrs(room, NS_META)
        if _kind(room, meta) == DIRECT:
            raise AuthError(f"{room!r} is a direct conversation: it has no moderators", Code.FORBIDDEN)
        if as_admin:
            return meta
        if not await self.directory.is_member(room, actor):
            raise AuthError(f"not a member of {room!r}", Code.FORBIDDEN)
        if _RANK[await self._role(room, actor, meta)] < _RANK[ADMIN]:
            raise AuthError(f"only the owner or an admin of {room!r} may do that", Code.FORBIDDEN)
        return meta

    async def _outrank(self, actor: str, room: str, user: str, meta: dict[str, str]) -> None:
        if _RANK[await self._role(room, actor, meta)] <= _RANK[await self._role(room, user, meta)]:
            raise AuthError(f"{user!r} has the same or a higher role in {room!r}", Code.FORBIDDEN)

    async def _role(self, room: str, user: str, meta: dict[str, str]) -> str:
        if user == meta.get("owner"):
            return OWNER
        return (await self.directory.room_attrs(room, NS_ROLES)).get(user, MEMBER)

    async def _drop_role(self, room: str, user: str) -> None:
        if user in await self.directory.room_attrs(room, NS_ROLES):
            await self.directory.set_room_attr(room, NS_ROLES, user, None)

    async def _banned(self, room: str, user: str) -> bool:
        return user in await self.directory.room_attrs(room, NS_BANS)

    async def _check_room_limit(self, user: str) -> None:
        """Approximate under concurrent joins of one user (checked, then joined): a guard, not a quota."""
        if len(await self.directory.rooms_of(user)) >= self.limits.max_rooms_per_user:
            raise RoostError(
                f"in {self.limits.max_rooms_per_user} rooms already (the per-user limit): leave one first",
                Code.TOO_MANY_ROOMS,
            )

    async def _event(self, room: str, user: str, kind: str, body: str = "") -> None:
        """A membership event: a sequenced message of its own, under a fresh key (never a retry)."""
        await self._append(Draft(room, user, f"~{kind}-{uuid.uuid4().hex}", body, kind), counted=False)

    def _check_text(self, cmid: str, body: str) -> None:
        self._check_cmid(cmid)
        if len(body.encode()) > self.limits.max_body_bytes:
            raise ProtocolError(f"body over {self.limits.max_body_bytes} bytes", Code.TOO_LARGE)
        if not body.strip():
            raise ProtocolError("body is empty", Code.BAD_FRAME)

    @staticmethod
    def _check_cmid(cmid: str) -> None:
        if not valid_cmid(cmid):
            raise ProtocolError("cmid must be 1-64 printable ASCII characters", Code.BAD_FRAME)

    async def _require_room(self, room: str) -> None:
        self._check_room_name(room)
        if not await self.directory.room_exists(room):
            raise NotFound(f"no room {room!r}")

    @staticmethod
    def _check_room_name(room: str) -> None:
        if not valid_room(room):
            raise ProtocolError("room names are 1-128 characters of A-Z a-z 0-9 _ . : @ -", Code.BAD_FRAME)


def _control(char: str) -> bool:
    """C0/C1 control characters (newlines, escapes): not part of any emoji."""
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0
