"""Edits, deletions and reactions: the rules of relation events (see ``protocol/relations.py``).

A relation is a message of its own (kind ``edit``, ``delete``, ``react``, ``unreact``, a JSON body naming
the target seq), stored through the one write path, so it is sequenced, delivered and caught up like text
on every engine. Who may do what is decided here only: the sender edits, the sender or a moderator whose
role is higher than the sender's deletes (``Rooms.may_delete_for``; a server admin through the admin API),
and the target is a kept ``text`` message that is not deleted.

Erasure (``delete(..., erase=True)``, or every delete with ``Limits.erase_deletes``): the delete event says so
(``"erase": true``) and the store then replaces the target and its edits by their tombstones
(``Store.erase``), physically removing the text (docs/backends.md, R-ERASE-*). Who may erase is who may delete.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..config import Limits
from ..metrics import NodeMetrics
from ..ports import Appended, Redaction, Store
from ..protocol.codes import Code
from ..protocol.errors import AuthError, Conflict, NotFound, ProtocolError
from ..protocol.relations import (
    KIND_DELETE,
    KIND_DELETED,
    KIND_EDIT,
    KIND_REACT,
    KIND_UNREACT,
    MAX_EMOJI_BYTES,
    DeleteContent,
    EditContent,
    ReactContent,
    Relations,
    encode_content,
    erases,
    react_cmid,
    tombstones,
)
from ..protocol.rich import TEXT_KINDS, mentions_of
from ..protocol.types import MAX_SEQ, Draft, Message
from ..ratelimit import RateLimiter
from ..relindex import RelationIndex
from .mentions import MentionRules
from .rooms import Rooms
from .writes import Writer, check_cmid, check_text

__all__ = ["RelationRules"]


class RelationRules:
    """Relation events on a room's text messages; ``sends`` is the user's send rate, which they share."""

    def __init__(
        self,
        store: Store,
        relations: RelationIndex,
        rooms: Rooms,
        writer: Writer,
        sends: RateLimiter,
        limits: Limits,
        metrics: NodeMetrics | None = None,
        mentions: MentionRules | None = None,
    ) -> None:
        self.mentions = mentions or MentionRules(rooms.directory, rooms, limits)
        self.store = store
        self.relations = relations
        self.rooms = rooms
        self.writer = writer
        self.sends = sends
        self.limits = limits
        self.metrics = metrics
        self.on_delete: Callable[[Message], Awaitable[None]] | None = None
        """Called with the deleted message (as stored before) once its delete is stored: the attachments' removal
        (service/attachments.py); also for a retried delete, so a removal cut short is done again."""

    async def edit(self, user: str, room: str, target: int, body: str, cmid: str) -> Appended:
        """Store ``kind: edit`` replacing the text of ``target``. Only its sender may; not once deleted."""
        check_text(cmid, body, self.limits.max_body_bytes)
        self.sends.check(user)
        self.rooms.refuse_inbox(user, room)
        await self.rooms.check_member(user, room)
        original, relations = await self._target(room, target)
        if original.sender != user:
            raise AuthError(f"only {original.sender} may edit message {target}", Code.FORBIDDEN)
        self._refuse_deleted(relations, target)
        mentions = mentions_of(body)  # shown with the new text, never told (an edit notifies nobody)
        await self.mentions.check(user, room, mentions)
        content = EditContent(target, body, mentions.names, mentions.room)
        try:
            appended = await self.writer.append(Draft(room, user, cmid, encode_content(content), KIND_EDIT))
        except Conflict:
            if not mentions:
                raise
            # Stored by a server that did not parse mentions yet, retried across the upgrade: that one.
            plain = encode_content(EditContent(target, body))
            appended = await self.writer.append(Draft(room, user, cmid, plain, KIND_EDIT))
        await self._erase_if_erased(room, target)
        return appended

    async def delete(
        self,
        user: str,
        room: str,
        target: int,
        cmid: str | None = None,
        *,
        moderator: bool = False,
        erase: bool = False,
    ) -> Appended:
        """Store ``kind: delete`` of ``target``: its sender, a moderator of a higher role than the sender, or a
        caller that has authorized the request itself (``moderator=True``: the admin API; membership is then not
        checked). ``erase`` (or ``Limits.erase_deletes``): an erasure too (``_erase``).

        Without ``cmid`` the key is ``~delete-<target>``: a retry is answered with the first delete. A message
        deleted already is erased on request by whoever may delete it, answered with that first delete."""
        cmid = f"~delete-{target}" if cmid is None else cmid
        check_cmid(cmid)
        self.sends.check(user)
        self.rooms.refuse_inbox(user, room)
        if moderator:
            await self.rooms.require_room(room)
        else:
            await self.rooms.check_member(user, room)
        original, relations = await self._target(room, target)
        allowed = original.sender == user or moderator
        if not allowed and not await self.rooms.may_delete_for(user, room, original.sender):
            reason = f"only {original.sender} or a moderator of a higher role may delete message {target}"
            raise AuthError(reason, Code.FORBIDDEN)
        erase = erase or self.limits.erase_deletes
        existing = relations.deleted(target)
        if existing is None:
            body = encode_content(DeleteContent(target, erase=erase))
            appended = await self.writer.append(Draft(room, user, cmid, body, KIND_DELETE))
        elif (existing.sender, existing.cmid) == (user, cmid):  # a retry: answered with the delete stored first
            appended = await self.writer.append(Draft(room, user, cmid, existing.body, KIND_DELETE))
        elif erase:
            appended = Appended(existing, duplicate=True)
        else:
            raise Conflict(f"message {target} is already deleted")
        if erase or erases(appended.message):
            await self._erase(room, target)
        if self.on_delete is not None:
            await self.on_delete(original)
        return appended

    async def _erase(self, room: str, target: int) -> None:
        """Have the store replace ``target`` and its edits by their tombstones. Run after the delete is stored, so
        a failure here leaves a deletion that a retry erases (R-ERASE-1); and the edits are read from the room up
        to the head after it, so an edit stored before the delete is among them, and one stored after it finds
        the delete (``_erase_if_erased``): a race of the two leaves no text either way."""
        page = await self.store.read(room, target - 1, 1)
        if not page.messages or page.messages[0].seq != target:
            return  # trimmed since: nothing left to erase
        relations = await self.relations.relations(room, target, page.position)
        seqs = tombstones(page.messages[0], relations.edited.get(target, []))
        erased = await self.store.erase(room, [Redaction(seq, kind, body) for seq, kind, body in seqs])
        if self.metrics is not None:
            self.metrics.erased.inc(erased)

    async def _erase_if_erased(self, room: str, target: int) -> None:
        """An edit stored just after an erasing delete of its target (a race the checks cannot exclude: R-REL-10)
        is erased too, so no text of an erased message stays in the store. One position read per edit."""
        position = await self.store.position(room)
        relations = await self.relations.relations(room, target, position)
        delete = relations.deleted(target)
        if delete is not None and erases(delete):
            await self._erase(room, target)

    async def react(self, user: str, room: str, target: int, emoji: str, *, remove: bool = False) -> Appended:
        """Store ``kind: react`` (or ``unreact`` with ``remove``) of ``emoji`` on ``target``.

        One reaction per (user, target, emoji): the cmid is derived (``react_cmid``), so a retry or a
        double click, even on two nodes at once, is one stored event answered as a duplicate."""
        if not emoji.strip() or len(emoji.encode()) > MAX_EMOJI_BYTES or any(_control(c) for c in emoji):
            raise ProtocolError(f"emoji must be 1-{MAX_EMOJI_BYTES} bytes of visible text", Code.BAD_FRAME)
        self.sends.check(user)
        self.rooms.refuse_inbox(user, room)
        await self.rooms.check_member(user, room)
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
        return await self.writer.append(Draft(room, user, cmid, encode_content(ReactContent(target, emoji)), kind))

    async def _target(self, room: str, target: int) -> tuple[Message, Relations]:
        """The stored text message ``target`` of ``room`` and the relations known up to the head."""
        if not 1 <= target <= MAX_SEQ:
            raise ProtocolError(f"target must be between 1 and {MAX_SEQ}", Code.BAD_FRAME)
        page = await self.store.read(room, target - 1, 1)
        if not page.messages or page.messages[0].seq != target:
            gone = " (no longer kept)" if target < page.position.first else ""
            raise NotFound(f"no message {target} in {room!r}{gone}")
        original = page.messages[0]
        if original.kind not in TEXT_KINDS and original.kind != KIND_DELETED:  # ``deleted``: held erased
            raise ProtocolError(f"message {target} is a {original.kind!r} event, not a text message", Code.BAD_FRAME)
        return original, await self.relations.relations(room, target, page.position)

    @staticmethod
    def _refuse_deleted(relations: Relations, target: int) -> None:
        if relations.deleted(target) is not None:
            raise Conflict(f"message {target} is deleted")


def _control(char: str) -> bool:
    """C0/C1 control characters (newlines, escapes): not part of any emoji."""
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0
