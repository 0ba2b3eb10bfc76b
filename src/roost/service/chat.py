"""ChatService: the rules of Roost, written once against the ports, the same for every backend.

It is the one object the gateways and the node hold; the rules live in its parts, one job each:

* ``writes.Writer``: persist, then publish (``Writer.append``), the one write path of every message.
* ``rooms.Rooms``: room kinds, joining and leaving, and ``check_member``, the membership check of
  every read and write.
* ``moderation.Moderation``: invitations, kicks, bans and roles.
* ``relations.RelationRules``: edits, deletions and reactions.
* ``reads.Reads``: history and catch-up pages (deleted messages as tombstones), read positions.

Sends and typing signals are composed here from those parts. Encode once: a message is encoded a single
time per publish; every node and session forwards those bytes unchanged.
"""

from __future__ import annotations

from ..config import Limits
from ..metrics import NodeMetrics
from ..ports import Appended, Bus, Directory, Store
from ..protocol import frames
from ..protocol.types import KIND_TEXT, SYSTEM_SENDER, Draft
from ..ratelimit import RateLimiter
from ..relindex import RelationIndex
from .moderation import Moderation
from .reads import Reads
from .relations import RelationRules
from .rooms import Rooms
from .writes import Writer, check_text

__all__ = ["ChatService"]


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
        relations = RelationIndex(store)
        self.writer = Writer(store, bus, relations, self.metrics)
        self.rooms = Rooms(directory, self.writer, limits)
        self.moderation = Moderation(self.rooms)
        self.relation_rules = RelationRules(store, relations, self.rooms, self.writer, self.sends, limits)
        self.reads = Reads(store, directory, bus, relations, self.rooms, limits)
        # The parts' entry points, under the names the gateways and tests call (one signature each).
        self.create_room = self.rooms.create_room
        self.dm = self.rooms.dm
        self.join = self.rooms.join
        self.leave = self.rooms.leave
        self.invite = self.moderation.invite
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
        self.history = self.reads.history
        self.catchup = self.reads.catchup
        self.sync = self.reads.sync
        self.seq_before_time = self.reads.seq_before_time
        self.mark_read = self.reads.mark_read
        self.unread = self.reads.unread
        self.receipts = self.reads.receipts
        self.publish = self.writer.publish

    @property
    def relations(self) -> RelationIndex:
        """The node's fold of relation events, shared by every part that serves or checks messages."""
        return self.writer.relations

    @relations.setter
    def relations(self, index: RelationIndex) -> None:
        """Replaced in every part at once (a node that starts cold, in tests), so they keep sharing one."""
        self.writer.relations = self.relation_rules.relations = self.reads.relations = index

    async def send(self, user: str, room: str, cmid: str, body: str) -> Appended:
        check_text(cmid, body, self.limits.max_body_bytes)
        self.sends.check(user)  # per user, over every connection and HTTP alike
        await self.check_member(user, room)
        return await self.writer.append(Draft(room, user, cmid, body, KIND_TEXT))

    async def send_system(self, actor: str, room: str, cmid: str, body: str) -> Appended:
        """Post as the reserved sender ``system`` for ``actor`` (an API key's principal with ``publish:system``,
        checked by the gateway): ``actor``'s rate limit and membership, the idempotency key of ``system``
        (so a retry under the same cmid is one message), the one write path [R-SEC-84]."""
        check_text(cmid, body, self.limits.max_body_bytes)
        self.sends.check(actor)
        await self.check_member(actor, room)
        return await self.writer.append(Draft(room, SYSTEM_SENDER, cmid, body, KIND_TEXT))

    async def typing(self, user: str, room: str) -> None:
        """Ephemeral: through the bus only, never stored. Over the rate it is dropped, not refused."""
        if self.typings.wait(user):
            return
        await self.check_member(user, room)
        await self.bus.publish(room, frames.encode(frames.TypingEvent(room=room, user=user)))
