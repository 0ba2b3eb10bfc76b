"""ChatService: the rules of Roost, written once against the ports, the same for every backend.

It is the one object the gateways and the node hold; the rules live in its parts, one job each:

* ``writes.Writer``: persist, then publish (``Writer.append``), the one write path of every message.
* ``rooms.Rooms``: room kinds, joining and leaving, and ``check_member``, the membership check of
  every read and write.
* ``moderation.Moderation``: kicks, bans and roles; ``invitations.Invitations``: invitations made,
  listed, declined and revoked.
* ``inbox.Inbox``: each user's event stream (``~u:<user>``), written after the room event that causes it.
* ``relations.RelationRules``: edits, deletions and reactions.
* ``threads.Threads``: replies and threads (what a ``rich`` message may point at) and a thread's pages.
* ``mentions.MentionRules``: who may mention the whole room, and who is told; ``notify.NotifySettings``: how
  each room notifies each member.
* ``reads.Reads``: history and catch-up pages (deleted messages as tombstones), read positions.
* ``retention.RetentionRules``: rooms' retention policies (the task that applies them is roost/retention.py).
* ``search.Search``: full-text search of the user's rooms (the index and its indexer are roost/search/).
* ``attachments.Attachments``: uploads, the files a message carries, downloads and the blobs' removal (the blob
  engines and the sweeper are roost/attachments/).

Sends and typing signals are composed here from those parts. Encode once: a message is encoded a single
time per publish; every node and session forwards those bytes unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..attachments.port import Blobs
from ..config import Limits
from ..metrics import NodeMetrics
from ..ports import Appended, Bus, Directory, Store
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import Conflict, RoostError
from ..protocol.rich import KIND_RICH, Attachment, encode_rich, mentions_of
from ..protocol.types import KIND_TEXT, SYSTEM_SENDER, Draft
from ..ratelimit import RateLimiter
from ..relindex import RelationIndex
from ..search.port import SearchIndex
from .attachments import DEFAULT_TYPES, Attachments
from .inbox import Inbox
from .invitations import Invitations
from .mentions import MentionRules
from .moderation import Moderation
from .notify import NotifySettings
from .reads import HistoryResult, Reads
from .relations import RelationRules
from .retention import RetentionRules
from .rooms import Rooms
from .search import Search
from .threads import Threads
from .writes import Writer, check_text

__all__ = ["ChatService"]


class ChatService:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        bus: Bus,
        limits: Limits,
        metrics: NodeMetrics | None = None,
        search_index: SearchIndex | None = None,
        blobs: Blobs | None = None,
        attachment_types: Sequence[str] = DEFAULT_TYPES,
    ) -> None:
        self.metrics = metrics or NodeMetrics()
        self.store = store
        self.directory = directory
        self.bus = bus
        self.limits = limits
        self.sends = RateLimiter(limits.sends_per_s, limits.send_burst, "sends")
        self.typings = RateLimiter(limits.typing_per_s, limits.typing_per_s * 2, "typing signals")
        relations = RelationIndex(store)
        self.writer = Writer(store, bus, relations, self.metrics)
        self.inbox = Inbox(directory, self.writer, limits)
        self.rooms = Rooms(directory, self.writer, limits, self.inbox)
        self.invitations = Invitations(self.rooms)
        self.moderation = Moderation(self.rooms, self.invitations)
        self.mention_rules = MentionRules(directory, self.rooms, limits)
        self.relation_rules = RelationRules(
            store, relations, self.rooms, self.writer, self.sends, limits, self.metrics, self.mention_rules
        )
        self.reads = Reads(store, directory, bus, relations, self.rooms, limits)
        self.retention = RetentionRules(self.rooms, limits)
        self.threads = Threads(store, relations, self.rooms, limits)
        self.notify = NotifySettings(directory, self.rooms, self.inbox)
        self.searches = Search(search_index, self.rooms, limits)
        self.attachments = Attachments(blobs, store, self.rooms, relations, limits, attachment_types)
        self.relation_rules.on_delete = self.attachments.message_deleted
        # The parts' entry points, under the names the gateways and tests call (one signature each).
        self.create_room = self.rooms.create_room
        self.dm = self.rooms.dm
        self.join = self.rooms.join
        self.leave = self.rooms.leave
        self.invite = self.moderation.invite
        self.decline = self.invitations.decline
        self.revoke_invite = self.invitations.revoke
        self.invitations_of = self.invitations.pending
        self.add_member = self.moderation.add
        self.kick = self.moderation.kick
        self.ban = self.moderation.ban
        self.unban = self.moderation.unban
        self.set_role = self.moderation.set_role
        self.rooms_of = self.rooms.rooms_of
        self.public_rooms = self.rooms.public_rooms
        self.all_rooms = self.rooms.all_rooms
        self.room_info = self.rooms.room_info
        self.check_member = self.rooms.check_member
        self.is_member = self.rooms.is_member
        self.edit = self.relation_rules.edit
        self.delete = self.relation_rules.delete
        self.react = self.relation_rules.react
        self.catchup = self.reads.catchup
        self.sync = self.reads.sync
        self.seq_before_time = self.reads.seq_before_time
        self.mark_read = self.reads.mark_read
        self.unread = self.reads.unread
        self.receipts = self.reads.receipts
        self.publish = self.writer.publish
        self.retention_policy = self.retention.policy
        self.set_retention = self.retention.set_policy
        self.search = self.searches.search

    @property
    def relations(self) -> RelationIndex:
        """The node's fold of relation events, shared by every part that serves or checks messages."""
        return self.writer.relations

    @relations.setter
    def relations(self, index: RelationIndex) -> None:
        """Replaced in every part at once (a node that starts cold, in tests), so they keep sharing one."""
        self.writer.relations = self.relation_rules.relations = self.reads.relations = index
        self.threads.relations = self.attachments.relations = index

    async def history(
        self,
        user: str,
        room: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 50,
        thread: int | None = None,
    ) -> HistoryResult:
        """A page of the room, or with ``thread`` of the thread of that root (``Threads.page``)."""
        if thread is None:
            return await self.reads.history(user, room, after=after, before=before, limit=limit)
        return await self.threads.page(user, room, thread, after=after, before=before, limit=limit)

    async def send(
        self,
        user: str,
        room: str,
        cmid: str,
        body: str,
        *,
        reply_to: int | None = None,
        thread: int | None = None,
        attachments: Sequence[str] = (),
    ) -> Appended:
        """A text; with ``reply_to`` or ``thread`` a reply (kind ``rich``, ``Threads.content``); with ``attachments``
        (ids of the sender's uploads to the room) a message carrying those files (kind ``rich``)."""
        return await self._send(user, Draft(room, user, cmid, body, KIND_TEXT), reply_to, thread, attachments)

    async def send_system(
        self,
        actor: str,
        room: str,
        cmid: str,
        body: str,
        *,
        reply_to: int | None = None,
        thread: int | None = None,
        attachments: Sequence[str] = (),
    ) -> Appended:
        """Post as the reserved sender ``system`` for ``actor`` (an API key's principal with ``publish:system``,
        checked by the gateway): ``actor``'s rate limit and membership, the idempotency key of ``system``
        (so a retry under the same cmid is one message), the one write path [R-SEC-84]."""
        draft = Draft(room, SYSTEM_SENDER, cmid, body, KIND_TEXT)
        return await self._send(actor, draft, reply_to, thread, attachments)

    async def _send(
        self, actor: str, draft: Draft, reply_to: int | None, thread: int | None, attachments: Sequence[str] = ()
    ) -> Appended:
        """The checks of every text, for ``actor`` (who sends, or posts as ``system``), then the store. A message
        with attachments may have no text [R-ATT-3]."""
        if attachments:
            Attachments.check_ids(attachments)
            check_text(draft.cmid, draft.body if draft.body.strip() else "-", self.limits.max_body_bytes)
        else:
            check_text(draft.cmid, draft.body, self.limits.max_body_bytes)
        self.sends.check(actor)  # per user, over every connection and HTTP alike
        self.rooms.refuse_inbox(actor, draft.room)
        await self.check_member(actor, draft.room)
        if attachments:
            return await self._store_with_files(actor, draft, reply_to, thread, attachments)
        return await self._store_text(actor, draft, reply_to, thread)

    async def _store_with_files(
        self, actor: str, draft: Draft, reply_to: int | None, thread: int | None, ids: Sequence[str]
    ) -> Appended:
        """A send that names attachments: claimed for its key, stored as ``rich`` with their records, then sealed
        with the message's seq (service/attachments.py) [R-ATT-3] [R-ATT-4]."""
        files, claimed = await self.attachments.claim(actor, draft.sender, draft.room, draft.cmid, ids)
        try:
            appended = await self._store_text(actor, draft, reply_to, thread, files)
        except RoostError as exc:
            if exc.code < Code.INTERNAL:  # refused (4409 a cmid taken, 4404 a reply_to, ...): never stored
                await self.attachments.release(claimed, draft.sender, draft.cmid)
            raise
        await self.attachments.seal(files, appended.message)
        return appended

    async def _store_text(
        self,
        actor: str,
        draft: Draft,
        reply_to: int | None,
        thread: int | None,
        files: tuple[Attachment, ...] = (),
    ) -> Appended:
        """Store a checked text: as it is, or as a ``rich`` message whose content (relations checked, mentions
        parsed) is built once, here, so no reader ever parses more than the stored JSON. Then tell the mentioned
        members in their streams, also for a retry (re-emitted under the same keys, once each) [R-INBOX-7].
        ``actor``: whose role decides a room mention (the sender, or an API key's principal posting as system)."""
        mentions = mentions_of(draft.body)
        await self.mention_rules.check(actor, draft.room, mentions)
        if reply_to is None and thread is None and not mentions and not files:
            appended = await self.writer.append(draft)
        else:
            content = await self.threads.content(draft.room, draft.body, reply_to, thread)
            content = msgspec.structs.replace(content, mentions=mentions.names, room=mentions.room, attachments=files)
            rich = Draft(draft.room, draft.sender, draft.cmid, encode_rich(content), KIND_RICH)
            plain = draft if reply_to is None and thread is None and not files else None
            appended = await self._append_rich(rich, plain)
        told = await self.mention_rules.told(draft.room, draft.sender, mentions)
        await self.inbox.mentioned(appended.message, told)
        return appended

    async def _append_rich(self, rich: Draft, plain: Draft | None) -> Appended:
        """Append ``rich``. When its key is taken, ``plain`` (the same text as a ``text``, for a message whose only
        structure is its mentions) is tried: a send stored as plain text by a server that did not parse mentions
        yet, retried across the upgrade, is answered as the duplicate it is, not 4409."""
        try:
            return await self.writer.append(rich)
        except Conflict:
            if plain is None:
                raise
            return await self.writer.append(plain)  # stores nothing new: the key exists (4409 if not this text)

    async def typing(self, user: str, room: str) -> None:
        """Ephemeral: through the bus only, never stored. Over the rate it is dropped, not refused."""
        if self.typings.wait(user):
            return
        self.rooms.refuse_inbox(user, room)
        await self.check_member(user, room)
        await self.bus.publish(room, frames.encode(frames.TypingEvent(room=room, user=user)))
