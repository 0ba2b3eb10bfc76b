"""Follows: the rooms one connection follows, each with its RoomSync, driven from the hub and the store.

Gap-free catch-up (docs/architecture.md, "The subscribe path"): ``subscribe`` arms the room's RoomSync
(buffering live messages) and attaches to the hub, whose bus subscription is confirmed, *before* the first
store read; ``_run`` then carries out what the machine asks for. Catch-up reads are paced by the client:
the next page is read only once the outbox has drained, and each page is bounded by bytes
(``max_page_bytes``) as well as by count, so the outbox never holds more than one page of catch-up. As
the hub's ``Listener`` it gets live messages (already encoded, forwarded unchanged), bus resets and head
checks, and ends a subscription after the event that took the user out of the room.
"""

from __future__ import annotations

import asyncio
import logging

from ..config import Limits
from ..hub import Hub, Wire
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError
from ..protocol.sync import Accepted, CaughtUp, Deliver, Fetch, Resync, RoomSync
from ..protocol.types import MAX_SEQ, REMOVING_KINDS, Position
from ..service import ChatService
from .outbox import Outbox

__all__ = ["Follows"]

log = logging.getLogger(__name__)


class _Follow:
    """One followed room: its sync machine, the subscribe request's id, and its fetch task."""

    __slots__ = ("accepted", "attached", "fetching", "ref", "start", "sync")

    def __init__(self, sync: RoomSync[Wire], ref: str | None) -> None:
        self.sync = sync
        self.ref = ref
        self.start = sync.last
        self.accepted = False
        self.fetching: asyncio.Task[None] | None = None
        self.attached = False
        """False until the bus subscription is confirmed: no store read may run before that."""


class Follows:
    """One connection's followed rooms; registered with the hub as its listener for each of them."""

    def __init__(self, service: ChatService, hub: Hub, limits: Limits, user: str, outbox: Outbox) -> None:
        self.service = service
        self._tally = service.metrics.tally
        self.hub = hub
        self.limits = limits
        self.user = user
        self.outbox = outbox
        self._follows: dict[str, _Follow] = {}

    async def subscribe(self, room: str, after: int | None, epoch: str | None, ref: str | None) -> None:
        await self.service.check_member(self.user, room)
        if after is not None and not 0 <= after <= MAX_SEQ:
            raise ProtocolError(f"after must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        await self.unfollow(room)
        if after is None:
            position = await self.service.store.position(room)
            if epoch is not None and epoch != position.epoch:
                # A cursor's epoch is checked whether or not it comes with a seq: "from now" in a
                # history that was recreated is still a break the app must hear about.
                reason = "the room's history was recreated (epoch changed)"
                error = frames.position_error(Code.RESYNC_REQUIRED, reason, room, position, ref)
                self.outbox.push(frames.encode(error))
                return
            after, epoch = position.head, position.epoch
        sync: RoomSync[Wire] = RoomSync(
            after, epoch, page_limit=self.limits.catchup_page, max_buffer=self.limits.outbox_frames
        )
        follow = _Follow(sync, ref)
        self._follows[room] = follow
        sync.start()  # buffers live messages from here on; the Fetch runs once the bus confirms
        try:
            await self.hub.attach(room, self)
        except BaseException:
            self._follows.pop(room, None)
            raise
        follow.attached = True
        if self._follows.get(room) is follow:
            self._run(room, follow)

    async def unfollow(self, room: str) -> None:
        follow = self._follows.pop(room, None)
        if follow is None:
            return
        if follow.accepted:
            self.hub.presence.unfollow(room, self.user)
        follow.sync.close()
        if follow.fetching is not None:
            follow.fetching.cancel()
        self.hub.detach(room, self)

    async def release(self) -> None:
        """Unfollow every room (the connection ends)."""
        for room in list(self._follows):
            await self.unfollow(room)

    def _run(self, room: str, follow: _Follow) -> None:
        """Carry out what the room's sync machine asks for."""
        if not follow.attached:
            return  # subscribe first, read second: the queued Fetch waits for the bus
        for action in follow.sync.take_actions():
            if isinstance(action, Deliver):
                # Paced: the next page is only read once the outbox has drained (see _fetch).
                for wire in action.items:
                    self.outbox.push(wire.data, paced=True)
                    if wire.left == self.user:
                        self._lost_membership(room)
                        return
            elif isinstance(action, Fetch):
                follow.fetching = asyncio.create_task(self._fetch(room, follow, action))
            elif isinstance(action, Accepted):
                p = action.position
                follow.accepted = True
                self.outbox.push(frames.encode(frames.Subscribed(follow.ref, room, p.epoch, p.head, follow.start)))
                for other in self.hub.presence.online(room):
                    self.outbox.push(frames.encode(frames.PresenceEvent(room=room, user=other, status="online")))
                self.hub.presence.follow(room, self.user)
            elif isinstance(action, CaughtUp):
                self.outbox.push(frames.encode(frames.Live(room, action.seq)))
            elif isinstance(action, Resync):
                self._follows.pop(room, None)
                follow.sync.close()
                self.hub.detach(room, self)
                if follow.accepted:
                    self.hub.presence.unfollow(room, self.user)
                # The subscribe request's id only while it is still unanswered.
                error = _resync_error(action, room, None if follow.accepted else follow.ref)
                self.outbox.push(frames.encode(error))

    async def _fetch(self, room: str, follow: _Follow, fetch: Fetch) -> None:
        delay = 0.05
        while True:
            # Catch-up is paced by the client: the next page is read only when the last one is sent, and one
            # room at a time (the outbox's turn, shared with history replies): whatever the number of rooms
            # catching up, the outbox holds one page of them [R-SUB-50].
            async with self.outbox.pacing:
                await self.outbox.until_drained()
                if follow.sync.state.value in ("resync", "closed"):
                    return
                try:
                    page = await self.service.catchup(room, fetch.after, fetch.limit)
                except Exception as exc:  # whatever the engine raised: retry, never leave the room stuck
                    log.warning("catch-up read of %s failed: %s", room, getattr(exc, "reason", repr(exc)))
                    page = None
                if page is not None:
                    # Within max_page_bytes (at least one message), whatever the size of the room's messages.
                    wires = [
                        Wire(m.seq, data, m.sender if m.kind in REMOVING_KINDS else "")
                        for m, data in zip(page.page.messages, page.encoded, strict=True)
                    ]
                    self._tally.catchup_pages += 1
                    self._tally.catchup_messages += len(wires)
                    follow.fetching = None
                    follow.sync.page(wires, page.page.position)
                    self._run(room, follow)
                    return
            await asyncio.sleep(delay)  # outside the turn: other rooms catch up meanwhile
            delay = min(delay * 2, 2.0)

    # ---- the hub's listener -------------------------------------------------------------------

    def on_message(self, room: str, wire: Wire) -> None:
        follow = self._follows.get(room)
        if follow is None:
            return
        if follow.sync.live(wire):
            self._tally.delivered += 1
            self.outbox.push(wire.data)
            if wire.left and wire.left == self.user:
                self._lost_membership(room)
        elif follow.fetching is None:
            self._run(room, follow)

    def _lost_membership(self, room: str) -> None:
        """The user left (or was removed from) ``room``: the subscription ends after that event."""
        follow = self._follows.pop(room, None)
        if follow is None:
            return
        follow.sync.close()
        if follow.fetching is not None:
            follow.fetching.cancel()
        self.hub.detach(room, self)
        self.hub.presence.unfollow(room, self.user)
        error = frames.Error(code=int(Code.FORBIDDEN), reason=f"no longer a member of {room!r}", room=room)
        self.outbox.push(frames.encode(error))

    def on_ephemeral(self, room: str, data: bytes) -> None:
        if room in self._follows:
            self.outbox.push(data)

    def on_dropped(self, room: str) -> None:
        follow = self._follows.get(room)
        if follow is not None:
            follow.sync.dropped(1)
            if follow.fetching is None:
                self._run(room, follow)

    def on_head(self, room: str, position: Position) -> None:
        follow = self._follows.get(room)
        if follow is not None and follow.fetching is None:
            follow.sync.head_seen(position)
            self._run(room, follow)


def _resync_error(action: Resync, room: str, ref: str | None) -> frames.Error:
    if action.position is None:
        return frames.Error(code=int(action.code), reason=action.reason, ref=ref, room=room)
    return frames.position_error(action.code, action.reason, room, action.position, ref)
