"""The topic's value format: one record per change of a room, a JSON array whose first element is the tag.

Every node rebuilds its state from these records alone (``state.Replica``), so this format is what the
topic holds for ever: a field may only be added with a default, never removed or reinterpreted.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

__all__ = [
    "TOKEN_HEADER",
    "Attr",
    "Create",
    "Erase",
    "Lease",
    "Member",
    "Msg",
    "Read",
    "Record",
    "Release",
    "Trim",
    "decode",
    "encode",
    "value_digest",
]


class Create(msgspec.Struct, frozen=True, array_like=True, tag="c"):
    room: str
    owner: str
    epoch: str
    ts: int
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    """The room's ``meta`` attributes (absent in records written before rooms had kinds)."""


class Member(msgspec.Struct, frozen=True, array_like=True, tag="m"):
    room: str
    user: str
    add: bool


class Msg(msgspec.Struct, frozen=True, array_like=True, tag="s"):
    room: str
    sender: str
    cmid: str
    body: str
    ts: int
    kind: str


class Attr(msgspec.Struct, frozen=True, array_like=True, tag="a"):
    """Set (or, with ``value`` None, delete) one room attribute."""

    room: str
    ns: str
    key: str
    value: str | None


class Trim(msgspec.Struct, frozen=True, array_like=True, tag="t"):
    room: str
    keep: int
    below: int = 0
    """Drop the seqs below this one instead (0: keep the newest ``keep``); absent in records before it existed."""


class Erase(msgspec.Struct, frozen=True, array_like=True, tag="e"):
    """Serve messages of the room as these ``(seq, kind, body)`` from now on. Only a marker: the topic keeps
    the original record (docs/backends.md, "Erasure": Kafka's limitation, R-ERASE-6)."""

    room: str
    redactions: list[tuple[int, str, str]]


class Read(msgspec.Struct, frozen=True, array_like=True, tag="r"):
    room: str
    user: str
    seq: int


class Lease(msgspec.Struct, frozen=True, array_like=True, tag="l"):
    """Take or renew lease ``name`` for ``holder`` until ``ts + ttl_ms``; ``ts`` is the producer's clock."""

    name: str
    holder: str
    ttl_ms: int
    ts: int

    @property
    def room(self) -> str:
        """The partition key: a lease's records share the partition its name hashes to, as a room's do."""
        return self.name


class Release(msgspec.Struct, frozen=True, array_like=True, tag="u"):
    """End ``holder``'s lease on ``name`` (nothing if another holds it)."""

    name: str
    holder: str

    @property
    def room(self) -> str:
        return self.name


Record = Create | Member | Msg | Trim | Read | Attr | Lease | Release | Erase
decode: Final = msgspec.json.Decoder(Record).decode
encode: Final = msgspec.json.Encoder().encode
TOKEN_HEADER: Final = "roost-t"
"""The header carrying the producing node's token: how a node finds its own record among everyone's."""


def value_digest(value: bytes | None) -> bytes:
    """A short fingerprint of a record: what ``KafkaLog._verify`` compares to notice a rewritten log."""
    return hashlib.blake2b(value or b"", digest_size=8).digest()
