"""Attachments: who may upload, attach and fetch a file, and when its blob goes (docs/protocol.md, "Attachments").

The bytes and a small record per file live in a ``Blobs`` engine (attachments/port.py); the rules are here:

* ``upload``: a member who may send in the room streams a file in; it is refused past ``max_attachment_bytes``
  while it arrives (never buffered whole), its type is sniffed from the bytes (attachments/sniff.py) and checked
  against the allowed types, an image gets its size and a thumbnail from Pillow in a thread (attachments/images.py),
  and its record says ``pending``: an upload no message names yet, visible to its uploader only.
* ``claim`` and ``seal``: a send that names ids (the sender's own uploads in that room, named by no other message)
  claims them for its ``(sender, cmid)`` before the append and records the stored seq after it; the message's
  content lists them as the server recorded them (``rich.Attachment``), so a retry stores byte-equal content.
* ``fetch``: on every download, the room's membership (the refusals of a history read), then the message that
  carries the file must still be kept and not deleted (the relation index: a deleted message's files are not served
  again, like its text).
* ``message_deleted``: a delete (or an erasure) removes the message's blobs at once, after the delete is stored.
* ``sweep_one``: the sweeper's rule for one blob (attachments/sweeper.py): uploads never attached go after
  ``attachment_orphan_s``; a blob whose message was deleted or trimmed by retention goes; a claim whose message
  never got stored goes after ``attachment_orphan_s`` too. A crash between a delete and its blob's removal is
  caught here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from ..attachments.images import Probe, TooManyPixels, probe
from ..attachments.names import display_name
from ..attachments.port import (
    STATE_ATTACHED,
    STATE_CLAIMED,
    STATE_PENDING,
    BlobMeta,
    Blobs,
    Opened,
    new_id,
    valid_id,
)
from ..attachments.sniff import IMAGE_TYPES, SNIFF_BYTES, Texts, sniff
from ..config import Limits
from ..ports import Store
from ..protocol.codes import Code
from ..protocol.errors import AuthError, Conflict, NotFound, ProtocolError, RoostError
from ..protocol.rich import MAX_ATTACHMENTS, Attachment, decode_rich
from ..protocol.types import Message
from ..ratelimit import RateLimiter
from ..relindex import RelationIndex
from .rooms import Rooms

__all__ = ["DEFAULT_TYPES", "Attachments", "Fetched", "Sweep"]

log = logging.getLogger(__name__)

DEFAULT_TYPES: Final = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/octet-stream",
)
"""Every type ``sniff`` can name: by default any file may be uploaded (what is not an image, a PDF or text is
served as a download only). ``--attachment-type`` narrows it."""
SCAN_PAGES: Final = 20
"""Pages of a room the sweeper reads after a stale claim's ``after`` to find its message (500 messages each)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _no_attachment(blob_id: str, room: str) -> NotFound:
    return NotFound(f"no attachment {blob_id!r} in {room!r}")


@dataclass(frozen=True)
class Fetched:
    meta: BlobMeta
    opened: Opened
    type: str
    """The media type served: the file's, or its thumbnail's."""


@dataclass(slots=True)
class Sweep:
    """What one sweep did."""

    seen: int = 0
    removed: int = 0
    sealed: int = 0
    failed: int = 0


class Attachments:
    def __init__(
        self,
        blobs: Blobs | None,
        store: Store,
        rooms: Rooms,
        relations: RelationIndex,
        limits: Limits,
        types: Sequence[str] = DEFAULT_TYPES,
    ) -> None:
        self.blobs = blobs
        self.store = store
        self.rooms = rooms
        self.relations = relations
        self.limits = limits
        self.types = frozenset(types)
        self.uploads = RateLimiter(limits.uploads_per_s, max(1.0, limits.uploads_per_s * 5), "uploads")
        self._locks: dict[str, asyncio.Lock] = {}
        self._nameless: set[str] = set()

    def _store(self) -> Blobs:
        if self.blobs is None:
            raise AuthError("attachments are off on this server", Code.FORBIDDEN)
        return self.blobs

    # ---- upload -------------------------------------------------------------------------------

    async def check_upload(self, user: str, room: str, length: int | None) -> None:
        """What is refused before a byte of the body is read: no store, no membership, over the rate, a declared
        length over the limit."""
        self._store()
        self.rooms.refuse_inbox(user, room)
        await self.rooms.check_member(user, room)
        if length is not None and length > self.limits.max_attachment_bytes:
            raise ProtocolError(f"file over {self.limits.max_attachment_bytes} bytes", Code.TOO_LARGE)
        self.uploads.check(user)

    async def upload(self, user: str, room: str, name: str, chunks: AsyncIterator[bytes]) -> BlobMeta:
        """Store a file streamed in by a member (``check_upload`` first). Nothing is kept of a refused one."""
        blobs = self._store()
        limit = self.limits.max_attachment_bytes
        blob_id = new_id()
        spool = blobs.spool / blob_id
        thumb_file = blobs.spool / f"{blob_id}.thumb"
        try:
            size, head, text = await self._spool(chunks, spool, limit)
            if size == 0:
                raise ProtocolError("the file is empty", Code.BAD_FRAME)
            kind = sniff(head, text)
            if kind not in self.types:
                raise ProtocolError(f"files of type {kind} are not accepted here", Code.UNSUPPORTED_TYPE)
            image: Probe | None = None
            if kind in IMAGE_TYPES:
                try:
                    image = await asyncio.to_thread(probe, spool, self.limits.max_image_pixels)
                except TooManyPixels as exc:
                    raise ProtocolError(
                        f"image over {self.limits.max_image_pixels} pixels ({exc})", Code.TOO_LARGE
                    ) from None
            meta = BlobMeta(blob_id, room, user, display_name(name), kind, size, _now_ms())
            if image is not None:
                meta.width, meta.height = image.width, image.height
                if image.thumb is not None:
                    await asyncio.to_thread(thumb_file.write_bytes, image.thumb)
                    await blobs.put(blob_id, "thumb", thumb_file)
                    meta.thumb_type = image.thumb_type
            await blobs.put(blob_id, "blob", spool)
            await blobs.put_meta(meta)  # last: a blob without its record is not served, and swept
            return meta
        finally:
            for leftover in (spool, thumb_file):
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(leftover.unlink, True)

    @staticmethod
    async def _spool(chunks: AsyncIterator[bytes], path: Path, limit: int) -> tuple[int, bytes, bool]:
        """Write the stream to ``path`` while counting; refuse it (4413) the moment it passes ``limit``."""
        size, head, texts = 0, b"", Texts()
        out = await asyncio.to_thread(path.open, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(f"file over {limit} bytes", Code.TOO_LARGE)
                if len(head) < SNIFF_BYTES:
                    head = (head + chunk)[:SNIFF_BYTES]
                texts.feed(chunk)
                await asyncio.to_thread(out.write, chunk)
            texts.feed(b"", final=True)
        finally:
            await asyncio.to_thread(out.close)
        return size, head, texts.ok

    # ---- send ---------------------------------------------------------------------------------

    @staticmethod
    def check_ids(ids: Sequence[str]) -> None:
        if len(ids) > MAX_ATTACHMENTS:
            raise ProtocolError(f"at most {MAX_ATTACHMENTS} attachments per message", Code.BAD_FRAME)
        if len(set(ids)) != len(ids):
            raise ProtocolError("an attachment is named twice", Code.BAD_FRAME)
        for blob_id in ids:
            if not valid_id(blob_id):
                raise ProtocolError(f"{blob_id!r} is not an attachment id", Code.BAD_FRAME)

    async def claim(
        self, actor: str, sender: str, room: str, cmid: str, ids: Sequence[str]
    ) -> tuple[tuple[Attachment, ...], list[str]]:
        """The attachments of a send by ``actor`` (stored as from ``sender``): each id one of ``actor``'s uploads
        to ``room`` (else 4404), not claimed by another message (else 4409). Claimed for ``(sender, cmid)`` before
        the append, so a retry finds them its own and the sweeper can find the message [R-ATT-3]. Returns the
        attachments and the ids claimed now (``release`` gives those back if the send is refused)."""
        blobs = self._store()
        metas = []
        for blob_id in ids:
            meta = await blobs.meta(blob_id)
            if meta is None or meta.room != room or meta.uploader != actor:
                raise _no_attachment(blob_id, room)
            if meta.state != STATE_PENDING and (meta.sender, meta.cmid) != (sender, cmid):
                raise Conflict(f"attachment {blob_id!r} belongs to another message")
            metas.append(meta)
        pending = [m for m in metas if m.state == STATE_PENDING]
        if pending:
            after = (await self.store.position(room)).head
            for meta in pending:
                async with self._lock(meta.id):
                    current = await blobs.meta(meta.id)
                    if current is None:
                        raise _no_attachment(meta.id, room)
                    if current.state != STATE_PENDING and (current.sender, current.cmid) != (sender, cmid):
                        raise Conflict(f"attachment {meta.id!r} belongs to another message")
                    claimed = msgspec.structs.replace(
                        current, state=STATE_CLAIMED, sender=sender, cmid=cmid, claimed_ms=_now_ms(), after=after
                    )
                    await blobs.put_meta(claimed)
        files = tuple(Attachment(m.id, m.name, m.type, m.size, m.width, m.height) for m in metas)
        return files, [m.id for m in pending]

    async def release(self, ids: Sequence[str], sender: str, cmid: str) -> None:
        """Give back the uploads a refused send (a 44xx: it will not be stored) claimed: pending again, so another
        send may carry them."""
        blobs = self._store()
        for blob_id in ids:
            async with self._lock(blob_id):
                meta = await blobs.meta(blob_id)
                if meta is not None and meta.state == STATE_CLAIMED and (meta.sender, meta.cmid) == (sender, cmid):
                    pending = msgspec.structs.replace(
                        meta, state=STATE_PENDING, sender=None, cmid=None, claimed_ms=None, after=None
                    )
                    await blobs.put_meta(pending)

    async def seal(self, attachments: Sequence[Attachment], message: Message) -> None:
        """Record the stored message's seq in each claimed attachment: now it is served to the room."""
        blobs = self._store()
        for attachment in attachments:
            meta = await blobs.meta(attachment.id)
            if meta is not None and (meta.state, meta.seq) != (STATE_ATTACHED, message.seq):
                await blobs.put_meta(msgspec.structs.replace(meta, state=STATE_ATTACHED, seq=message.seq))

    def _lock(self, blob_id: str) -> asyncio.Lock:
        """One claim of a blob at a time on this node (two sends racing for one upload: one wins, one is 4409). Across
        nodes the record is last-writer-wins: docs/protocol.md, "Attachments", says what that allows."""
        if len(self._locks) > 4096:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(blob_id, asyncio.Lock())

    # ---- download -----------------------------------------------------------------------------

    async def fetch(self, user: str, room: str, blob_id: str, thumb: bool) -> Fetched:
        """The file (or its thumbnail) for ``user``, if ``allowed``."""
        meta = await self.allowed(user, room, blob_id)
        thumbnail = thumb and meta.thumb_type is not None
        kind = meta.thumb_type if thumbnail else meta.type
        opened = await self._store().open(blob_id, "thumb" if thumbnail else "blob")
        if opened is None or kind is None:
            raise _no_attachment(blob_id, room)
        return Fetched(meta, opened, kind)

    async def allowed(self, user: str, room: str, blob_id: str) -> BlobMeta:
        """The record of a file ``user`` may fetch: a member of ``room`` now (4403/4404 as for history), the file
        one of the room's, on a message still kept and not deleted, or the user's own upload not sent yet."""
        blobs = self._store()
        await self.rooms.check_member(user, room)
        meta = await blobs.meta(blob_id) if valid_id(blob_id) else None
        if meta is None or meta.room != room:
            raise _no_attachment(blob_id, room)
        if meta.state == STATE_ATTACHED:
            if not await self.kept(meta):
                raise _no_attachment(blob_id, room)
        elif meta.uploader != user:
            raise _no_attachment(blob_id, room)
        return meta

    async def kept(self, meta: BlobMeta) -> bool:
        """Is the message carrying ``meta`` still in its room (not trimmed) and not deleted?"""
        if meta.seq is None:
            return False
        position = await self.store.position(meta.room)
        if meta.seq < position.first or meta.seq > position.head:
            return False
        relations = await self.relations.relations(meta.room, meta.seq, position)
        return relations.deleted(meta.seq) is None

    # ---- deletion -----------------------------------------------------------------------------

    async def message_deleted(self, original: Message) -> None:
        """After a delete of ``original`` is stored: remove its blobs now [R-ATT-7]. A failure is logged and left
        to the sweeper (the delete stands either way)."""
        if self.blobs is None:
            return
        content = decode_rich(original)
        if content is None or not content.attachments:
            return
        for attachment in content.attachments:
            try:
                meta = await self.blobs.meta(attachment.id)
                if meta is not None and meta.room == original.room and self._carries(meta, original):
                    await self.blobs.remove(attachment.id)
            except RoostError as exc:
                log.warning("attachments: %s of a deleted message not removed yet (the sweep will): %s",
                            attachment.id, exc)  # fmt: skip

    @staticmethod
    def _carries(meta: BlobMeta, message: Message) -> bool:
        return meta.seq == message.seq or (meta.sender, meta.cmid) == (message.sender, message.cmid)

    # ---- the sweep ----------------------------------------------------------------------------

    async def sweep(self) -> Sweep:
        """One pass over every blob (attachments/sweeper.py runs it on the lease holder)."""
        blobs = self._store()
        done = Sweep()
        nameless = set()
        now = _now_ms()
        for blob_id in await blobs.ids():
            done.seen += 1
            try:
                meta = await blobs.meta(blob_id)
                if meta is None:  # an upload in progress, or a removal cut short: gone if still so next pass
                    if blob_id in self._nameless:
                        await blobs.remove(blob_id)
                        done.removed += 1
                    else:
                        nameless.add(blob_id)
                    continue
                verdict = await self.sweep_one(meta, now)
                if verdict == "remove":
                    await blobs.remove(blob_id)
                    done.removed += 1
                elif verdict == "sealed":
                    done.sealed += 1
            except RoostError as exc:
                done.failed += 1
                log.debug("attachments: %s not swept: %s", blob_id, exc)
        self._nameless = nameless
        return done

    async def sweep_one(self, meta: BlobMeta, now_ms: int) -> str:
        """``remove``, ``sealed`` or ``keep`` for one blob [R-ATT-8]."""
        orphan_ms = int(self.limits.attachment_orphan_s * 1000)
        if meta.state == STATE_PENDING:
            return "remove" if now_ms - meta.created_ms > orphan_ms else "keep"
        if meta.state == STATE_CLAIMED:
            if now_ms - (meta.claimed_ms or meta.created_ms) <= orphan_ms:
                return "keep"
            found = await self._find_claimed(meta)
            if found is None:
                return "remove"
            await self.seal([Attachment(meta.id, meta.name, meta.type, meta.size)], found)
            meta = msgspec.structs.replace(meta, state=STATE_ATTACHED, seq=found.seq)
            return "sealed" if await self.kept(meta) else "remove"
        try:
            return "keep" if await self.kept(meta) else "remove"
        except NotFound:
            return "keep"  # the room is unknown to this store (another deployment's bucket?): never guess

    async def _find_claimed(self, meta: BlobMeta) -> Message | None:
        """The stored message of a stale claim, read from the room after the head it saw (or None)."""
        after = meta.after or 0
        for _ in range(SCAN_PAGES):
            page = await self.store.read(meta.room, after, 500)
            for message in page.messages:
                if (message.sender, message.cmid) == (meta.sender, meta.cmid):
                    return message
            if not page.messages or page.messages[-1].seq >= page.position.head:
                return None
            after = page.messages[-1].seq
        return None
