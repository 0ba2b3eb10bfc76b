"""Where consumers live: the Directory every node shares, as attributes of the pseudo-room ``~roost-consumers``.

Like API keys (apikeys.py), so every engine keeps them with no backend code, in the same engine as the
messages: a node kill, a restart or a move to another node loses nothing. The pseudo-room is created on
first use with no member but ``~roost``; ``~`` is outside the room-name alphabet, so no request names it and
no room list shows it. Three kinds of attribute, each written by one party only, so that no read-modify-write
of one value can lose another party's change:

* namespace ``consumers``, field = consumer id: the ``Record`` (what the operator asked for). Written by the
  HTTP API only: creation, and the requests to resume or rewind, each a new random id the holder applies once.
* namespace ``status``, field = consumer id: the ``Status`` (active or paused, failures, the last error, the
  holder, the lag, which requests were applied). Written by the node holding the consumer's lease only.
* namespace ``cursor:<id>``, field = room: the last seq delivered (or skipped) in that room and the room's
  epoch, ``"<seq> <epoch>"``. Written by the holder only, and by the API at creation, before the record
  exists, for a consumer starting ``now``. ``set_room_attr`` overwrites, so a rewind can lower it.
"""

from __future__ import annotations

import logging
from typing import Final, NamedTuple

import msgspec

from ..ports import Directory
from .filters import DEFAULT_KINDS, EVENTS

__all__ = [
    "CHANNEL",
    "ROOM",
    "Cursor",
    "Record",
    "Registry",
    "Rewind",
    "Status",
    "cursor_ns",
    "decode_cursor",
    "encode_cursor",
]

log = logging.getLogger(__name__)

ROOM: Final = "~roost-consumers"
OWNER: Final = "~roost"
NS_RECORDS: Final = "consumers"
NS_STATUS: Final = "status"
CHANNEL: Final = "~roost-consumers"
"""Bus notices (a consumer's id) after a change through the API: nodes act at once instead of at their next
scan. Only an accelerator, like every notice (a lost one waits for the scan)."""

ACTIVE: Final = "active"
PAUSED: Final = "paused"


def cursor_ns(consumer: str) -> str:
    return f"cursor:{consumer}"


class Rewind(msgspec.Struct, frozen=True):
    """A request to set the cursor of ``room`` (or of every room) to ``seq``; ``id`` makes it apply once."""

    id: str
    seq: int
    room: str | None = None


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator asked for. The secret is kept: every delivery is signed with it (docs/security.md)."""

    url: str
    secret: str
    rooms: str = "*"
    kinds: tuple[str, ...] = DEFAULT_KINDS
    events: tuple[str, ...] = EVENTS
    start: int = 0
    """The cursor of a room that has none yet: 0 for a consumer starting ``now`` (rooms created later are
    delivered from their first event), N for one starting after seq N."""
    after: int | None = None
    """As asked at creation: None for ``now``, or N."""
    owner: str = ""
    """The API key's principal; empty for an administrator's consumer."""
    key: str = ""
    """The id of the API key that created it; empty for an administrator's."""
    by: str = ""
    """Who created it (the administrator's or the key principal's user name)."""
    created_at: int = 0
    max_failures: int = 0
    resume: str = ""
    """The newest resume request (a random id); the holder applies it once."""
    rewind: Rewind | None = None


class Status(msgspec.Struct, kw_only=True):
    """What the node delivering the consumer reports."""

    state: str = ACTIVE
    failures: int = 0
    """Consecutive failed attempts (0 after a success)."""
    last_error: str = ""
    resumed: str = ""
    """The id of the last resume request applied."""
    rewound: str = ""
    """The id of the last rewind request applied."""
    holder: str = ""
    """The node delivering it (its log id, host and port), as of its last takeover."""
    token: int = 0
    """That node's lease token (they grow with every change of holder)."""
    lag: int = 0
    """Events after the cursors up to the heads of the matching rooms, as of the holder's last scan."""
    updated_at: int = 0


class Cursor(NamedTuple):
    seq: int
    epoch: str
    """The room's epoch when ``seq`` was delivered; empty when not known (then the first page's is taken)."""


def encode_cursor(cursor: Cursor) -> str:
    return f"{cursor.seq} {cursor.epoch}".rstrip()


def decode_cursor(raw: str) -> Cursor | None:
    seq, _, epoch = raw.partition(" ")
    try:
        return Cursor(int(seq), epoch)
    except ValueError:
        return None


_encode: Final = msgspec.json.Encoder().encode
_decode_record: Final = msgspec.json.Decoder(Record).decode
_decode_status: Final = msgspec.json.Decoder(Status).decode


class Registry:
    """Records, statuses and cursors in the Directory: no cache, every call reads or writes it."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def ensure_room(self) -> None:
        await self.directory.create_room(ROOM, OWNER, {"kind": "internal"})  # False once it exists

    async def put(self, consumer: str, record: Record) -> None:
        await self.ensure_room()
        await self.directory.set_room_attr(ROOM, NS_RECORDS, consumer, _encode(record).decode())

    async def all(self) -> dict[str, Record]:
        """Every consumer by id (an unreadable record is left out and logged)."""
        out = {}
        for consumer, raw in (await self.directory.room_attrs(ROOM, NS_RECORDS)).items():
            try:
                out[consumer] = _decode_record(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.warning("ignored an unreadable consumer record %s", consumer)
        return out

    async def get(self, consumer: str) -> Record | None:
        return (await self.all()).get(consumer)

    async def statuses(self) -> dict[str, Status]:
        out = {}
        for consumer, raw in (await self.directory.room_attrs(ROOM, NS_STATUS)).items():
            try:
                out[consumer] = _decode_status(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.warning("ignored an unreadable consumer status %s", consumer)
        return out

    async def status(self, consumer: str) -> Status:
        return (await self.statuses()).get(consumer) or Status()

    async def put_status(self, consumer: str, status: Status) -> None:
        await self.ensure_room()
        await self.directory.set_room_attr(ROOM, NS_STATUS, consumer, _encode(status).decode())

    async def cursors(self, consumer: str) -> dict[str, Cursor]:
        out = {}
        for room, raw in (await self.directory.room_attrs(ROOM, cursor_ns(consumer))).items():
            cursor = decode_cursor(raw)
            if cursor is not None:
                out[room] = cursor
        return out

    async def set_cursor(self, consumer: str, room: str, cursor: Cursor) -> None:
        await self.directory.set_room_attr(ROOM, cursor_ns(consumer), room, encode_cursor(cursor))

    async def delete(self, consumer: str) -> None:
        """The record first (nodes stop delivering it), then its status and cursors."""
        await self.directory.set_room_attr(ROOM, NS_RECORDS, consumer, None)
        await self.forget(consumer)

    async def forget(self, consumer: str) -> None:
        """Remove the status and cursors of a consumer whose record is gone (idempotent)."""
        await self.directory.set_room_attr(ROOM, NS_STATUS, consumer, None)
        for room in await self.directory.room_attrs(ROOM, cursor_ns(consumer)):
            await self.directory.set_room_attr(ROOM, cursor_ns(consumer), room, None)
