"""ChatService: the rules of Roost, written once against the ports, the same for every backend.

Where the contract is enforced:

* Persist, then publish: ``send`` awaits ``Store.append`` (durable on return) and only then publishes
  the encoded message on the bus; a failed append raises and publishes nothing.
* Idempotency: the store answers a retried ``(room, sender, cmid)`` with the original message; the
  service re-publishes it, which heals a crash between commit and publish (receivers drop the
  duplicate by seq).
* Membership: every read and write checks it here, so no gateway or backend can skip it.
* Encode once: the message is encoded a single time per publish; every node and session forwards
  those bytes unchanged.
* Relations (edit, delete, react; see ``protocol/relations.py``): their rules are here, and every
  read path (``history``, ``catchup``, a re-published duplicate) serves deleted messages as
  tombstones, through one ``RelationIndex``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec

from .config import Limits
from .ports import Appended, Bus, Directory, Store
from .protocol import frames
from .protocol.codes import Code
from .protocol.errors import AuthError, Conflict, NotFound, ProtocolError
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
from .protocol.types import KIND_JOIN, KIND_LEAVE, KIND_TEXT, Draft, Message, Page, valid_cmid, valid_room
from .ratelimit import RateLimiter
from .relindex import RelationIndex

__all__ = ["MAX_SEQ", "ChatService", "HistoryResult"]

MAX_SEQ = 2**53
"""The largest seq a request may name: exact in every JSON parser and every store's integer type."""


@dataclass(frozen=True, slots=True)
class HistoryResult:
    page: Page
    has_more: bool


class ChatService:
    def __init__(self, store: Store, directory: Directory, bus: Bus, limits: Limits) -> None:
        self.store = store
        self.directory = directory
        self.bus = bus
        self.limits = limits
        self.sends = RateLimiter(limits.sends_per_s, limits.send_burst, "sends")
        self.typings = RateLimiter(limits.typing_per_s, limits.typing_per_s * 2, "typing signals")
        self.relations = RelationIndex(store)

    # ---- rooms ------------------------------------------------------------------------------

    async def create_room(self, user: str, room: str) -> None:
        self._check_room_name(room)
        if not await self.directory.create_room(room, user):
            raise Conflict(f"room {room!r} already exists")
        await self._event(room, user, KIND_JOIN)

    async def join(self, user: str, room: str) -> None:
        await self._require_room(room)
        if await self.directory.add_member(room, user):
            await self._event(room, user, KIND_JOIN)

    async def leave(self, user: str, room: str) -> None:
        await self._require_room(room)
        if await self.directory.remove_member(room, user):
            await self._event(room, user, KIND_LEAVE)

    async def rooms_of(self, user: str) -> list[str]:
        return await self.directory.rooms_of(user)

    async def public_rooms(self) -> list[str]:
        return await self.directory.public_rooms()

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
        """May ``user`` delete others' messages in ``room``? The hook for roles (the directory has none
        yet): today only the room's creator, the sender of its seq-1 ``join`` (False once trimmed)."""
        page = await self.store.read(room, 0, 1)
        first = page.messages[0] if page.messages else None
        return first is not None and first.seq == 1 and first.kind == KIND_JOIN and first.sender == user

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

    async def _append(self, draft: Draft) -> Appended:
        """Persist, then publish. A duplicate is re-published (healing a crash between the two), as a
        tombstone if it was deleted since."""
        appended = await self.store.append(draft)
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

    async def _event(self, room: str, user: str, kind: str) -> None:
        appended = await self.store.append(Draft(room, user, f"~{kind}-{uuid.uuid4().hex}", "", kind))
        if not appended.published:
            await self.publish(appended.message)

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
