"""What a node knows of the topic: every room's state, folded from the records in partition order.

``Replica.apply`` is one deterministic function of the log (no clock, no I/O): every node that applies the
same partitions in the same order holds the same rooms, seqs, members and read positions, which is what
makes the per-room seq the same everywhere and after every restart. Leases are folded the same way: who
holds a name is decided by partition order and the records' own timestamps, never by the applying node.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from ...protocol.errors import Conflict, NotFound
from ..idempotency import body_digest
from .records import Attr, Create, Erase, Lease, Member, Msg, Read, Record, Release

__all__ = ["LeaseState", "Replica", "RoomState"]


@dataclass(slots=True)
class RoomState:
    epoch: str
    partition: int
    first: int = 1
    head: int = 0
    offsets: array[int] = field(default_factory=lambda: array("q"))
    """The partition offset of each kept seq: ``offsets[seq - first]``."""
    stamps: array[int] = field(default_factory=lambda: array("q"))
    idem: dict[tuple[str, str], tuple[int, int, bytes]] = field(default_factory=dict)
    """``(sender, cmid) -> (seq, ts, digest)`` for every message ever stored, trimmed or not."""
    members: set[str] = field(default_factory=set)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Room attributes by namespace (``meta`` from the create record)."""
    erased: dict[int, tuple[str, str]] = field(default_factory=dict)
    """seq -> the kind and body an erased message is served with (its record in the topic is unchanged)."""


@dataclass(slots=True)
class LeaseState:
    holder: str
    token: int
    expires: int
    """``ts + ttl_ms`` of the record that granted or renewed it (that producer's clock); 0 once released."""


class Replica:
    """The rooms and the directory, as the records applied so far make them."""

    def __init__(self) -> None:
        self.rooms: dict[str, RoomState] = {}
        self.user_rooms: dict[str, set[str]] = {}
        self.reads: dict[str, dict[str, int]] = {}
        """Read positions, ``room -> user -> seq``, only ever raised; kept for any room name, like every
        store's (the directory does not check the room: the service checks membership first)."""
        self.user_reads: dict[str, dict[str, int]] = {}
        self.leases: dict[str, LeaseState] = {}
        """Every lease name ever taken (a released one stays, expired, so its token keeps growing)."""

    def apply(self, p: int, offset: int, rec: Record) -> object:
        """Apply one record to the state; return what its producer is told. Deterministic: no clock, no I/O.

        A message's outcome is ``(seq, ts, duplicate)`` (``KafkaLog._apply`` builds the ``Appended`` only for a
        waiting producer: a replay builds nothing per record but the index entries)."""
        if isinstance(rec, Lease | Release):
            return self._lease(rec)
        room = self.rooms.get(rec.room)
        if isinstance(rec, Create):
            if room is not None:
                return False
            attrs = {"meta": dict(rec.meta)} if rec.meta else {}
            self.rooms[rec.room] = RoomState(epoch=rec.epoch, partition=p, members={rec.owner}, attrs=attrs)
            self.user_rooms.setdefault(rec.owner, set()).add(rec.room)
            return True
        if isinstance(rec, Read):
            reads = self.reads.setdefault(rec.room, {})
            value = max(reads.get(rec.user, 0), rec.seq)
            reads[rec.user] = value
            self.user_reads.setdefault(rec.user, {})[rec.room] = value
            return value
        if room is None:
            return NotFound(f"no room {rec.room!r}")
        if isinstance(rec, Msg):
            key = (rec.sender, rec.cmid)
            digest = body_digest(rec.body, rec.kind, 16)
            earlier = room.idem.get(key)
            if earlier is not None:
                if earlier[2] != digest:
                    return Conflict(f"client message id {rec.cmid!r} was used for another message")
                return (earlier[0], earlier[1], True)
            room.head += 1
            room.offsets.append(offset)
            room.stamps.append(rec.ts)
            room.idem[key] = (room.head, rec.ts, digest)
            return (room.head, rec.ts, False)
        if isinstance(rec, Member):
            if rec.add:
                if rec.user in room.members:
                    return False
                room.members.add(rec.user)
                self.user_rooms.setdefault(rec.user, set()).add(rec.room)
                return True
            if rec.user not in room.members:
                return False
            room.members.discard(rec.user)
            mine = self.user_rooms.get(rec.user)
            if mine is not None:
                mine.discard(rec.room)
                if not mine:
                    del self.user_rooms[rec.user]
            return True
        if isinstance(rec, Attr):
            values = room.attrs.setdefault(rec.ns, {})
            if rec.value is None:
                values.pop(rec.key, None)
            else:
                values[rec.key] = rec.value
            return True
        if isinstance(rec, Erase):
            replaced = 0
            for seq, kind, body in rec.redactions:
                if room.first <= seq <= room.head and room.erased.get(seq) != (kind, body):
                    room.erased[seq] = (kind, body)
                    replaced += 1
            return replaced
        if rec.below > 0:
            first = max(room.first, min(rec.below, room.head + 1))
        else:
            first = max(room.first, room.head - max(rec.keep, 0) + 1)
        gone = first - room.first
        if gone > 0:
            del room.offsets[:gone]
            del room.stamps[:gone]
            room.first = first
            for seq in [s for s in room.erased if s < first]:
                del room.erased[seq]
        return gone

    def _lease(self, rec: Lease | Release) -> int | None:
        """A lease is granted when the name is free, held by the same holder, or its expiry is not after the
        record's ``ts``; a renewal of a live lease keeps the token, any other grant takes the next. The answer
        is the token, or ``None`` (refused, or a release)."""
        held = self.leases.get(rec.name)
        if isinstance(rec, Release):
            if held is not None and held.holder == rec.holder:
                held.expires = 0
            return None
        if held is None:
            token = 1
        elif rec.ts < held.expires:
            if held.holder != rec.holder:
                return None
            token = held.token
        else:
            token = held.token + 1
        self.leases[rec.name] = LeaseState(rec.holder, token, rec.ts + rec.ttl_ms)
        return token
