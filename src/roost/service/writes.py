"""The write path: what a user's message must be, and the one function that persists, then publishes.

Every stored event (a send, an edit, a deletion, a reaction, a membership change) goes through
``Writer.append``, so the order "durable in the store, then on the bus" is written once: a failed append
raises and publishes nothing, and a retried one is re-published, which heals a crash between the two.
"""

from __future__ import annotations

import time
import uuid

import msgspec

from ..metrics import NodeMetrics
from ..ports import Appended, Bus, Store
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError
from ..protocol.types import Draft, Message, valid_cmid
from ..relindex import RelationIndex

__all__ = ["Writer", "check_cmid", "check_text"]


def check_cmid(cmid: str) -> None:
    if not valid_cmid(cmid):
        raise ProtocolError("cmid must be 1-64 printable ASCII characters", Code.BAD_FRAME)


def check_text(cmid: str, body: str, max_body_bytes: int) -> None:
    """A text a user stores (a send or an edit): a valid key and a non-empty body within the size limit."""
    check_cmid(cmid)
    if len(body.encode()) > max_body_bytes:
        raise ProtocolError(f"body over {max_body_bytes} bytes", Code.TOO_LARGE)
    if not body.strip():
        raise ProtocolError("body is empty", Code.BAD_FRAME)


class Writer:
    """Persist, then publish. ``relations`` serves a re-published duplicate as a tombstone once deleted."""

    def __init__(self, store: Store, bus: Bus, relations: RelationIndex, metrics: NodeMetrics) -> None:
        self.store = store
        self.bus = bus
        self.relations = relations
        self.metrics = metrics

    async def append(self, draft: Draft, *, counted: bool = True) -> Appended:
        """Persist, then publish: the one write path of every message (sends, relations, membership events).

        ``Store.append`` is durable when it returns; only then is the message published, unless the store
        published it atomically with the write. A failed append raises and publishes nothing. A duplicate is
        re-published (healing a crash between the two), as a tombstone if it was deleted since.
        ``counted``: a user's message (send, edit, delete, react), which the append metrics count."""
        started = time.perf_counter()
        appended = await self.store.append(draft)
        if counted:
            self.metrics.append_seconds.observe(time.perf_counter() - started)
            if appended.duplicate:
                self.metrics.tally.appended_again += 1
            else:
                self.metrics.tally.appended_new += 1
        if appended.duplicate:
            appended = msgspec.structs.replace(appended, message=await self.relations.redact_one(appended.message))
        if not appended.published:
            await self.publish(appended.message)
        return appended

    async def publish(self, message: Message) -> None:
        await self.bus.publish(message.room, frames.encode(message))

    async def event(self, room: str, user: str, kind: str, body: str = "", key: str | None = None) -> Message:
        """A membership event: a sequenced message of its own, under ``~<kind>-<key>``; a fresh key unless the
        caller derives one (an invitation's id), so that a retry stores it once."""
        cmid = f"~{kind}-{key or uuid.uuid4().hex}"
        return (await self.append(Draft(room, user, cmid, body, kind), counted=False)).message
