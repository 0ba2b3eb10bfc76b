"""KafkaStore: the Store and Directory ports, answered from the replica after a fence.

Writes are records produced through the log and answered by this node's own consumer once applied (the seq,
"duplicate" or "conflict"); reads first fence (wait until this node has applied what the broker had), so no
node answers older than an ack another node gave.

Leases are records too (``records.Lease``): the first record in the partition that finds the name free wins,
whichever node produced it, and ``Replica`` says so identically on every node. Every grant and renewal is a
record the topic keeps for ever (and a start replays); a refusal the node can already see costs none.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Mapping, Sequence

from ...ports import Appended, Redaction
from ...protocol.errors import Conflict, NotFound, Unavailable, UsageError
from ...protocol.types import Draft, Message, Page, Position
from ..idempotency import body_digest
from .clients import now_ms
from .log import KafkaLog
from .records import Attr, Create, Erase, Lease, Member, Msg, Read, Release, Trim, decode
from .state import RoomState

__all__ = ["KafkaStore", "replication_warnings"]


def replication_warnings(topic: str, factor: int, min_insync: int) -> list[str]:
    """What is unsafe in a topic's replication for the no-loss promise: at least 3 replicas, 2 of them in sync
    before an ack, so that losing any one broker (its power, its disk) loses no acked record."""
    if factor >= 3 and min_insync >= 2:
        return []
    return [
        f"kafka: topic {topic!r} has {factor} replica(s) and min.insync.replicas={min_insync}: Kafka acks from "
        "memory (no fsync), so a power loss of a broker that held the only in-sync copy loses acked messages; "
        "use a topic with 3 replicas and min.insync.replicas=2 (store URL ?replicas=3, docs/kafka.md)"
    ]


class KafkaStore(KafkaLog):
    """``KafkaStore(bootstrap, topic, ...)`` or ``KafkaStore.from_url(url)``, then ``await open()``: the constructor
    and lifecycle are ``KafkaLog``'s; this class answers the ports from its replica."""

    async def durability_warnings(self) -> list[str]:
        """Kafka acks a write once the in-sync replicas have it in memory, never after an fsync: the no-loss
        promise rests on replication (R-DUR-14, docs/kafka.md)."""
        try:
            factor, min_insync = await self.replication()
        except Unavailable as exc:
            return [f"kafka: cannot read the topic's replication ({exc.reason}): check replicas/min.insync.replicas"]
        return replication_warnings(self.topic, factor, min_insync)

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        self._check_open()
        room = self._state.rooms.get(draft.room)
        if room is not None:  # a retry this node has already seen is answered without a record
            earlier = room.idem.get((draft.sender, draft.cmid))
            if earlier is not None:
                seq, ts, digest = earlier
                if digest != body_digest(draft.body, draft.kind, 16):
                    raise Conflict(f"client message id {draft.cmid!r} was used for another message")
                message = Message(draft.room, seq, draft.cmid, draft.sender, draft.body, ts, draft.kind)
                return Appended(message, duplicate=True)
        rec = Msg(draft.room, draft.sender, draft.cmid, draft.body, now_ms(), draft.kind)
        outcome = await self._produce(draft.room, rec)
        assert isinstance(outcome, Appended)
        return outcome

    async def read(self, room: str, after: int, limit: int) -> Page:
        state = await self._synced_room(room)
        position = Position(epoch=state.epoch, head=state.head, first=state.first)
        start = max(after + 1, state.first)
        stop = min(state.head, start + limit - 1)  # from the first kept seq when ``after`` is below it
        return Page(await self._load(room, state, start, stop), position)

    async def read_before(self, room: str, before: int, limit: int) -> Page:
        state = await self._synced_room(room)
        position = Position(epoch=state.epoch, head=state.head, first=state.first)
        stop = min(before - 1, state.head)
        start = max(state.first, stop - limit + 1)
        return Page(await self._load(room, state, start, stop), position)

    async def _load(self, room: str, state: RoomState, start: int, stop: int) -> list[Message]:
        if stop < start:
            return []
        offsets = state.offsets[start - state.first : stop - state.first + 1].tolist()  # this snapshot's
        records = await self._readers.fetch(state.partition, offsets)
        messages: list[Message] = []
        for seq, offset in enumerate(offsets, start):
            rec = decode(records[offset])
            if not isinstance(rec, Msg) or rec.room != room:
                raise Unavailable(f"kafka: offset {offset} is not message {seq} of {room!r}")
            kind, body = state.erased.get(seq, (rec.kind, rec.body))
            messages.append(Message(room, seq, rec.cmid, rec.sender, body, rec.ts, kind))
        return messages

    async def position(self, room: str) -> Position:
        state = await self._synced_room(room)
        return Position(epoch=state.epoch, head=state.head, first=state.first)

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        state = await self._synced_room(room)
        return max(0, state.first + bisect.bisect_left(state.stamps, ts_ms) - 1)

    async def trim(self, room: str, keep_last: int) -> int:
        await self._synced_room(room)
        gone = await self._produce(room, Trim(room, keep_last))
        assert isinstance(gone, int)
        return gone

    async def trim_before(self, room: str, seq: int) -> int:
        await self._synced_room(room)
        gone = await self._produce(room, Trim(room, 0, max(1, seq)))
        assert isinstance(gone, int)
        return gone

    async def erase(self, room: str, redactions: Sequence[Redaction]) -> int:
        """An ``Erase`` record: every node serves the messages as their redactions from then on, but the topic
        keeps the original records (the store's offsets must stay dense: R-DUR-16), so this is not a physical
        erasure (R-ERASE-6)."""
        state = await self._synced_room(room)
        wanted = [(r.seq, r.kind, r.body) for r in redactions if state.first <= r.seq <= state.head]
        if not wanted:
            return 0
        replaced = await self._produce(room, Erase(room, wanted))
        assert isinstance(replaced, int)
        return replaced

    # ---- Directory --------------------------------------------------------------------------

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        created = await self._produce(room, Create(room, owner, secrets.token_hex(8), now_ms(), dict(meta or {})))
        return bool(created)

    async def room_exists(self, room: str) -> bool:
        self._check_open()
        if room in self._state.rooms:
            return True  # rooms are never deleted
        await self._fence([self._partition_of(room)])
        return room in self._state.rooms

    async def is_member(self, room: str, user: str) -> bool:
        self._check_open()
        state = self._state.rooms.get(room)
        if state is not None and user in state.members:
            return True
        await self._fence([self._partition_of(room)])
        state = self._state.rooms.get(room)
        return state is not None and user in state.members

    async def add_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        return bool(await self._produce(room, Member(room, user, True)))

    async def remove_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        return bool(await self._produce(room, Member(room, user, False)))

    async def rooms_of(self, user: str) -> list[str]:
        await self._fence(range(self._n))
        return sorted(self._state.user_rooms.get(user, ()))

    async def all_rooms(self) -> list[str]:
        await self._fence(range(self._n))
        return sorted(self._state.rooms)

    async def members(self, room: str) -> list[str]:
        await self._fence([self._partition_of(room)])
        state = self._state.rooms.get(room)
        return sorted(state.members) if state is not None else []

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        await self._fence([self._partition_of(room)])
        state = self._state.rooms.get(room)
        return dict(state.attrs.get(ns, {})) if state is not None else {}

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        await self._produce(room, Attr(room, ns, key, value))

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        await self._fence([self._partition_of(room)])
        current = self._state.reads.get(room, {}).get(user, 0)
        if seq <= current:
            return current  # a position is only raised: no record needed
        value = await self._produce(room, Read(room, user, seq))
        assert isinstance(value, int)
        return value

    async def read_positions(self, user: str) -> dict[str, int]:
        await self._fence(range(self._n))
        return dict(self._state.user_reads.get(user, {}))

    async def readers(self, room: str) -> dict[str, int]:
        await self._fence([self._partition_of(room)])
        return dict(self._state.reads.get(room, {}))

    # ---- Leases -----------------------------------------------------------------------------

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        await self._fence([self._partition_of(name)])
        held = self._state.leases.get(name)
        if held is not None and held.holder != holder and now_ms() < held.expires:
            return None  # what a record stamped now would be told: refusing needs no record, only a grant does
        token = await self._produce(name, Lease(name, holder, ttl_ms, now_ms()))
        assert token is None or isinstance(token, int)
        return token

    async def release(self, name: str, holder: str) -> None:
        await self._fence([self._partition_of(name)])
        held = self._state.leases.get(name)
        if held is not None and held.holder == holder and held.expires != 0:
            await self._produce(name, Release(name, holder))
