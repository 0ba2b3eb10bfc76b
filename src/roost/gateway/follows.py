"""Follows: the rooms one connection follows, each with its RoomSync, driven from the hub and the store.

Gap-free catch-up (docs/architecture.md, "The subscribe path"): ``subscribe`` arms the room's RoomSync
(buffering live messages) and attaches to the hub, whose bus subscription is confirmed, *before* the first
store read; ``_run`` then carries out what the machine asks for. Catch-up reads are paced by the client:
the next page is read only once the outbox has drained, and each page is bounded by bytes
(``max_page_bytes``) as well as by count, so the outbox never holds more than one page of catch-up. As
the hub's ``Listener`` it gets live messages
(already encoded, forwarded unchanged), bus resets and head checks, and ends a subscription after the
event that took the user out of the room.

Removal ends reading whatever the cursor (docs/security.md, R-SEC-20). Which events a connection
delivers depends on its cursor, which the client chooses, and on how fast it reads; who may read does not.
So a removing event (``Wire.left``) for this user ends the subscription wherever it reaches the Follows
(delivered, buffered, below the cursor), and the directory is asked again once the bus subscription is
confirmed and after every store read, before its page is delivered. Between them: a removal stored
before the check is seen by the check (the directory changes before the event is stored); one stored after
it reaches the Follows on the bus, or is above the cursor and so in a later page (a cursor beyond the
head of the first read is a resync). A removal stored before a check that passed (the user came back
since: a historic event in a catch-up, a re-delivery) ends nothing. Ephemeral frames (typing, presence)
pass only while membership is confirmed: not before that check, nor from a bus reset (which may have lost
a removal) to the next one.
"""

from __future__ import annotations

import asyncio
import logging

from ..config import Limits
from ..hub import Hub, Wire
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.encoding import JSON, Codec
from ..protocol.errors import AuthError, NotFound, ProtocolError
from ..protocol.inbox import is_inbox
from ..protocol.sync import Accepted, CaughtUp, Deliver, Fetch, Resync, RoomSync
from ..protocol.types import MAX_SEQ, REMOVING_KINDS, Position
from ..service import ChatService
from .outbox import Outbox

__all__ = ["Follows"]

log = logging.getLogger(__name__)


class _Follow:
    """One followed room: its sync machine, the subscribe request's id, and its fetch task."""

    __slots__ = ("accepted", "attached", "confirmed", "fetching", "member", "ref", "resets", "start", "sync")

    def __init__(self, sync: RoomSync[Wire], ref: str | None) -> None:
        self.sync = sync
        self.ref = ref
        self.start = sync.last
        self.accepted = False
        self.fetching: asyncio.Task[None] | None = None
        self.attached = False
        """False until the bus subscription is confirmed: no store read may run before that."""
        self.member = False
        """Membership confirmed by the directory since the bus subscription (or its last reset) began: only
        then do ephemeral frames pass."""
        self.resets = 0
        """Bus resets seen: a membership check that a reset overlapped does not confirm membership."""
        self.confirmed = -1
        """A removal of the user at or below this seq was stored before a membership check that passed (so
        the user came back since): it ends nothing. A removal above it, or any while nothing is known, does."""


class Follows:
    """One connection's followed rooms; registered with the hub as its listener for each of them."""

    def __init__(
        self, service: ChatService, hub: Hub, limits: Limits, user: str, outbox: Outbox, codec: Codec = JSON
    ) -> None:
        self.service = service
        self.encode = codec.encode
        """Frames for this connection, in its encoding."""
        self._recode = codec.recode
        """None for JSON: live payloads and catch-up pages are forwarded as encoded; else the hub re-encodes live
        ones (once per fan-out, R-WIRE-11) and catch-up pages are encoded here."""
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
        known_head = -1
        if after is None:
            position = await self.service.store.position(room)
            if epoch is not None and epoch != position.epoch:
                # A cursor's epoch is checked whether or not it comes with a seq: "from now" in a
                # history that was recreated is still a break the app must hear about.
                reason = "the room's history was recreated (epoch changed)"
                error = frames.position_error(Code.RESYNC_REQUIRED, reason, room, position, ref)
                self.outbox.push(self.encode(error))
                return
            after, epoch = position.head, position.epoch
            known_head = position.head
        sync: RoomSync[Wire] = RoomSync(
            after, epoch, page_limit=self.limits.catchup_page, max_buffer=self.limits.outbox_frames
        )
        follow = _Follow(sync, ref)
        self._follows[room] = follow
        sync.start()  # buffers live messages from here on; the Fetch runs once the bus confirms
        try:
            await self.hub.attach(room, self, self._recode)
        except BaseException:
            self._follows.pop(room, None)
            raise
        follow.attached = True
        if self._follows.get(room) is not follow:
            return  # ended meanwhile (a removal on the bus): already answered
        # Asked again now that every later removal reaches us on the bus: one stored since the first check
        # (before the attach, so never seen live, and perhaps at or below the cursor) is seen here.
        resets = follow.resets
        try:
            await self.service.check_member(self.user, room)
        except BaseException as exc:
            if self._follows.get(room) is not follow:
                if isinstance(exc, (AuthError, NotFound)):
                    return  # the removal itself reached us meanwhile and answered the subscribe
                raise
            self._end(room, follow)
            raise
        if self._follows.get(room) is follow:
            follow.member = follow.resets == resets
            follow.confirmed = known_head  # read before the attach, so before the check
            self._run(room, follow)

    async def unfollow(self, room: str) -> None:
        follow = self._follows.pop(room, None)
        if follow is None:
            return
        self._stop(room, follow)

    def _end(self, room: str, follow: _Follow) -> None:
        if self._follows.get(room) is follow:
            del self._follows[room]
            self._stop(room, follow)

    def _stop(self, room: str, follow: _Follow) -> None:
        """Stop ``follow`` (already out of ``_follows``): no more store reads, bus messages or presence."""
        if follow.accepted and not is_inbox(room):
            self.hub.presence.unfollow(room, self.user)
        follow.sync.close()
        if follow.fetching is not None and follow.fetching is not asyncio.current_task():
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
                    if wire.left == self.user and wire.seq > follow.confirmed:
                        self._lost_membership(room)
                        return
            elif isinstance(action, Fetch):
                follow.fetching = asyncio.create_task(self._fetch(room, follow, action))
            elif isinstance(action, Accepted):
                p = action.position
                follow.accepted = True
                self.outbox.push(self.encode(frames.Subscribed(follow.ref, room, p.epoch, p.head, follow.start)))
                if is_inbox(room):
                    continue  # one user's own stream: nobody to tell that they are here
                for other in self.hub.presence.online(room):
                    self.outbox.push(self.encode(frames.PresenceEvent(room=room, user=other, status="online")))
                self.hub.presence.follow(room, self.user)
            elif isinstance(action, CaughtUp):
                self.outbox.push(self.encode(frames.Live(room, action.seq)))
            elif isinstance(action, Resync):
                self._follows.pop(room, None)
                follow.sync.close()
                self.hub.detach(room, self)
                if follow.accepted and not is_inbox(room):
                    self.hub.presence.unfollow(room, self.user)
                # The subscribe request's id only while it is still unanswered.
                error = _resync_error(action, room, None if follow.accepted else follow.ref)
                self.outbox.push(self.encode(error))

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
                member: bool | None = None
                resets = follow.resets
                if page is not None:
                    # Asked after the read, before its page is delivered: a removal stored before the read
                    # changed the directory before that, so a page is never delivered to a user removed
                    # before it was read.
                    try:
                        member = await self.service.is_member(self.user, room)
                    except Exception as exc:
                        reason = getattr(exc, "reason", exc)
                        log.warning("membership check of %s in %s failed: %s", self.user, room, reason)
                if page is not None and member is not None:
                    if self._follows.get(room) is not follow:
                        return
                    if not member:
                        self._lost_membership(room)
                        return
                    if follow.resets == resets:
                        follow.member = True
                    follow.confirmed = max(follow.confirmed, page.page.position.head)
                    # Within max_page_bytes (at least one message), whatever the size of the room's messages.
                    messages = page.page.messages
                    encoded = page.encoded if self._recode is None else [self.encode(m) for m in messages]
                    wires = [
                        Wire(m.seq, data, m.sender if m.kind in REMOVING_KINDS else "")
                        for m, data in zip(messages, encoded, strict=True)
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
            if wire.left == self.user and wire.seq > follow.confirmed:
                self._lost_membership(room)
        elif wire.left == self.user and wire.seq > follow.confirmed:
            # Not delivered (at or below the cursor, or buffered behind a catch-up): the user is out of the
            # room all the same, whatever this connection has read (R-SEC-20). Only a removal older than a
            # passed check (a re-delivery after the user came back) is not one.
            self._lost_membership(room)
        elif follow.fetching is None:
            self._run(room, follow)

    def _lost_membership(self, room: str) -> None:
        """The user left (or was removed from) ``room``: the subscription ends now, with 4403.

        After the removing event when it was delivered; at once when it was not (nothing after it is for
        this user, and what came before it waits for a catch-up the client paces). An unanswered subscribe
        gets the error under its id."""
        follow = self._follows.pop(room, None)
        if follow is None:
            return
        self._stop(room, follow)
        error = frames.Error(
            code=int(Code.FORBIDDEN),
            reason=f"no longer a member of {room!r}",
            ref=None if follow.accepted else follow.ref,
            room=room,
        )
        self.outbox.push(self.encode(error))

    def on_ephemeral(self, room: str, data: bytes) -> None:
        follow = self._follows.get(room)
        if follow is not None and follow.member:
            self.outbox.push(data)

    def on_dropped(self, room: str) -> None:
        follow = self._follows.get(room)
        if follow is not None:
            # The lost messages may include this user's removal: no typing or presence until the refetch
            # the reset causes has asked the directory again (every reset leads to one, see RoomSync.dropped).
            follow.resets += 1
            follow.member = False
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
