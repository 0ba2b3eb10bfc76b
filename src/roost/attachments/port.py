"""The ``Blobs`` port: where attachment bytes and their metadata live. Two engines: ``local.py`` (files under the
node's data directory: the embedded default, one node) and ``s3.py`` (an S3-compatible bucket shared by nodes).

Each blob has a server-made id (``new_id``: 32 hex digits; the client's file name is never part of a path or a
key) and up to three objects under it: ``blob`` (the bytes), ``thumb`` (an image's thumbnail) and ``meta`` (a small
JSON record, ``BlobMeta``). The metadata lives in the blob store, not in the message store, so no store engine
needs a schema change and the sweeper (sweeper.py) finds every blob by listing the store.

Contracts (tests/integration/test_attachments.py runs both engines):
  * ``put`` stores a part from a local file and returns only once it is durable (local: written to a temporary
    name, fsynced, renamed, the folder fsynced; S3: the PUT was answered). A part is never seen half written.
  * ``open`` returns the part's size and its bytes in chunks, or None when it is not there.
  * ``put_meta`` replaces the record whole; ``meta`` reads it (None when absent or unreadable).
  * ``ids`` lists every blob that has a record; ``remove`` deletes every part and the record (no-op when absent).
  * Engine failures raise ``Unavailable`` (4503).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import msgspec

__all__ = [
    "PARTS",
    "STATE_ATTACHED",
    "STATE_CLAIMED",
    "STATE_PENDING",
    "BlobMeta",
    "Blobs",
    "Opened",
    "decode_meta",
    "encode_meta",
    "new_id",
    "valid_id",
]

Part = Literal["blob", "thumb"]
PARTS: Final[tuple[Part, ...]] = ("blob", "thumb")

STATE_PENDING: Final = "pending"
"""Uploaded, named by no message yet: only its uploader may fetch it; removed ``attachment_orphan_s`` after upload."""
STATE_CLAIMED: Final = "claimed"
"""A send named it (``cmid``, ``sender``); the message may or may not be stored yet (``after``: the room's head
before the append, where the sweeper looks for it)."""
STATE_ATTACHED: Final = "attached"
"""Referenced by the stored message ``seq`` of its room: served to the room's members while that message is kept
and not deleted."""

_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    return secrets.token_hex(16)


def valid_id(blob_id: str) -> bool:
    """Only a server-made id ever reaches an engine: a path or key is built from nothing else."""
    return _ID_RE.fullmatch(blob_id) is not None


class BlobMeta(msgspec.Struct, omit_defaults=True):
    """The record kept beside each blob."""

    id: str
    room: str
    uploader: str
    name: str
    """The display name (names.display_name), never a path."""
    type: str
    """The sniffed media type (sniff.py)."""
    size: int
    created_ms: int
    width: int | None = None
    height: int | None = None
    thumb_type: str | None = None
    """The thumbnail's media type when one was made; an image without one is its own thumbnail."""
    state: str = STATE_PENDING
    sender: str | None = None
    """Who the message is from: the uploader, or ``system`` when an API key posts as the service."""
    cmid: str | None = None
    claimed_ms: int | None = None
    after: int | None = None
    seq: int | None = None


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(BlobMeta)


def encode_meta(meta: BlobMeta) -> bytes:
    return _encoder.encode(meta)


def decode_meta(raw: bytes) -> BlobMeta | None:
    try:
        return _decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


@dataclass(frozen=True)
class Opened:
    size: int
    chunks: AsyncGenerator[bytes, None]
    """The bytes; close it (``aclose``) when not read to the end."""


class Blobs(Protocol):
    shared: bool
    """True when every node sees the same blobs (S3); False for a node's own disk."""
    spool: Path
    """A folder on local disk where uploads are written while they arrive (then handed to ``put``)."""

    async def put(self, blob_id: str, part: Part, source: Path) -> None: ...

    async def open(self, blob_id: str, part: Part) -> Opened | None: ...

    async def put_meta(self, meta: BlobMeta) -> None: ...

    async def meta(self, blob_id: str) -> BlobMeta | None: ...

    async def ids(self) -> list[str]: ...

    async def remove(self, blob_id: str) -> None: ...

    async def aclose(self) -> None: ...
