"""Session: one authenticated connection. It runs one RoomSync per followed room and one writer.

* Frames from the client are handled as tasks, at most ``MAX_IN_FLIGHT`` at a time, started in
  arrival order. A control frame waits for everything before it; a send waits for the send before
  it, so one connection's messages are stored in the order sent (group commit batches across
  connections).
* Everything for the client goes through ``_push`` into one bounded outbox, flushed at the end of
  the loop iteration straight to the socket, packed into few WebSocket frames (objects separated by
  ``\\n``); only a backlog the socket cannot take gets a writer task. A client that lets the live outbox
  overflow, or whose socket leaves one write waiting ``write_timeout_s`` (catch-up included), is closed
  with 4508 (slow consumer) and repairs from the store when it comes back.
* Live messages arrive from the hub as already-encoded bytes and are forwarded unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any, Final, Protocol

from ..config import Limits
from ..hub import Hub, Wire
from ..logs import Throttled
from ..metrics import code_label
from ..ports import Appended
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError, RoostError, retry_after
from ..protocol.sync import Accepted, CaughtUp, Deliver, Fetch, Resync, RoomSync
from ..protocol.types import REMOVING_KINDS, Position
from ..service import MAX_SEQ, ChatService

__all__ = ["Session", "Transport"]

log = logging.getLogger(__name__)
SERVER_ERRORS: Final = Throttled(logging.getLogger("roost.errors"))
"""4500 and 4503 answers, each with its cause, at most one line per code per 10 s (with a count)."""

MAX_IN_FLIGHT: Final = 64
_PACK_FRAMES: Final = 256
_PACK_BYTES: Final = 256 * 1024
"""Objects packed into one WebSocket frame, at most (count, bytes): far under any client's frame limit."""


class Transport(Protocol):
    def try_write(self, data: bytes) -> bool:
        """Write one text frame now if the socket takes it without queuing; False means use ``send``."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one text frame (already UTF-8 JSON), waiting while the socket is full."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``; returns within the close timeout (a socket that cannot take the close
        frame by then is aborted)."""
        ...


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


class Session:
    def __init__(
        self,
        service: ChatService,
        hub: Hub,
        transport: Transport,
        limits: Limits,
        user: str,
        session_id: str,
    ) -> None:
        self.service = service
        self._metrics = service.metrics
        self._tally = service.metrics.tally
        self.hub = hub
        self.transport = transport
        self.limits = limits
        self.user = user
        self.session_id = session_id
        self.closed = False
        self.close_code: int | None = None
        self._follows: dict[str, _Follow] = {}
        # Frames the socket could not take at once, in order; a writer task exists only while
        # there are some (an idle connection costs no task).
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        # Catch-up pages are paced by the session itself, so they do not count as falling behind.
        self._paced_frames = 0
        self._paced_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._flush_soon = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._refs: dict[asyncio.Task[None], tuple[str | None, str | None]] = {}
        """Each in-flight frame's (id, room): a shutdown that cannot wait for it still answers it."""
        self._draining = False
        self._background: set[asyncio.Task[None]] = set()
        self._last_control: asyncio.Task[None] | None = None
        self._last_send: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    # ---- input ------------------------------------------------------------------------------

    async def receive(self, data: str | bytes) -> None:
        """Handle one client frame. Returns when the frame's task has started (backpressure)."""
        size = (
            len(data) if isinstance(data, bytes) or len(data) * 4 <= self.limits.max_frame_bytes else len(data.encode())
        )
        if size > self.limits.max_frame_bytes:
            ref, room = frames.peek_ref(data)
            error = ProtocolError(f"frame over {self.limits.max_frame_bytes} bytes", Code.TOO_LARGE)
            self._error(error, ref=ref, room=room)
            return
        if self._draining:
            self._refuse_draining(data)
            return
        try:
            frame = frames.decode_client(data)
        except ProtocolError as exc:
            ref, room = frames.peek_ref(data)
            self._error(exc, ref=ref, room=room)
            return
        await self._slots.acquire()
        if self._draining:  # the shutdown began while this frame waited for a slot
            self._slots.release()
            self._refuse_draining(data)
            return
        # Sends (and pings) pipeline behind the last control frame; a control frame waits for
        # everything before it. The client's program order holds where it matters.
        if isinstance(frame, frames.Send | frames.Edit | frames.Delete | frames.React):
            # One connection's writes are stored in the order sent: each waits for the one before.
            before = [t for t in (self._last_control, self._last_send) if t is not None]
            task = asyncio.create_task(self._handle(frame, before))
            self._last_send = task
        elif isinstance(frame, frames.Ping | frames.Typing):
            before = [self._last_control] if self._last_control is not None else []
            task = asyncio.create_task(self._handle(frame, before))
        else:
            task = asyncio.create_task(self._handle(frame, list(self._tasks)))
            self._last_control = task
        self._tasks.add(task)
        self._refs[task] = (getattr(frame, "id", None), getattr(frame, "room", None))
        task.add_done_callback(self._task_done)

    def _refuse_draining(self, data: str | bytes) -> None:
        ref, room = frames.peek_ref(data)
        self._error(RoostError("server shutting down: send it to another node", Code.GOING_AWAY), ref=ref, room=room)

    async def receive_invalid(self, reason: str) -> None:
        self._error(ProtocolError(reason, Code.BAD_FRAME))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._refs.pop(task, None)
        if self._last_control is task:
            self._last_control = None
        if self._last_send is task:
            self._last_send = None
        self._slots.release()

    async def _handle(self, frame: frames.ClientFrame, before: list[asyncio.Task[None]]) -> None:
        ref = getattr(frame, "id", None)
        room = getattr(frame, "room", None)
        if before:
            await asyncio.wait(before)
        try:
            await self._dispatch(frame)
        except RoostError as exc:
            self._error(exc, ref=ref, room=room)
        except Exception:
            log.exception("internal error handling %s", type(frame).__name__)
            self._error(RoostError("internal error", Code.INTERNAL), ref=ref, room=room)

    async def _dispatch(self, frame: frames.ClientFrame) -> None:
        user = self.user
        match frame:
            case frames.Send(room=room, cmid=cmid, body=body, id=ref):
                started = time.perf_counter()
                appended = await self.service.send(user, room, cmid, body)
                m = appended.message
                self._push(frames.encode(frames.Ack(ref, room, cmid, m.seq, m.ts, appended.duplicate)))
                self._metrics.send_ack_seconds.observe(time.perf_counter() - started)
            case frames.Edit(room=room, target=target, body=body, cmid=cmid, id=ref):
                self._ack(ref, await self.service.edit(user, room, target, body, cmid))
            case frames.Delete(room=room, target=target, cmid=cmid, id=ref):
                self._ack(ref, await self.service.delete(user, room, target, cmid))
            case frames.React(room=room, target=target, emoji=emoji, remove=remove, id=ref):
                self._ack(ref, await self.service.react(user, room, target, emoji, remove=remove))
            case frames.Subscribe(room=room, after=after, epoch=epoch, id=ref):
                await self._subscribe(room, after, epoch, ref)
            case frames.Unsubscribe(room=room, id=ref):
                await self._unfollow(room)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.History(room=room, after=after, before=before, limit=limit, id=ref):
                result = await self.service.history(user, room, after=after, before=before, limit=limit)
                p = result.page.position
                reply = frames.HistoryPage(ref, room, result.page.messages, result.has_more, p.epoch, p.head, p.first)
                self._push(frames.encode(reply))
            case frames.Create(room=room, kind=kind, id=ref):
                await self.service.create_room(user, room, kind)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Dm(user=other, id=ref):
                self._push(frames.encode(frames.Ok(ref, await self.service.dm(user, other))))
            case frames.Invite(room=room, user=other, id=ref):
                await self.service.invite(user, room, other)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Kick(room=room, user=other, id=ref):
                await self.service.kick(user, room, other)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Ban(room=room, user=other, id=ref):
                await self.service.ban(user, room, other)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Unban(room=room, user=other, id=ref):
                await self.service.unban(user, room, other)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Role(room=room, user=other, role=role, id=ref):
                await self.service.set_role(user, room, other, role)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Join(room=room, id=ref):
                await self.service.join(user, room)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Leave(room=room, id=ref):
                await self._unfollow(room)
                await self.service.leave(user, room)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Typing(room=room):
                await self.service.typing(user, room)
            case frames.Read(room=room, seq=seq, id=ref):
                await self.service.mark_read(user, room, seq)
                self._push(frames.encode(frames.Ok(ref, room)))
            case frames.Ping(id=ref):
                self._push(frames.encode(frames.Pong(ref)))
            case frames.Auth():
                raise ProtocolError("already authenticated", Code.BAD_FRAME)

    def _ack(self, ref: str | None, appended: Appended) -> None:
        m = appended.message
        self._push(frames.encode(frames.Ack(ref, m.room, m.cmid, m.seq, m.ts, appended.duplicate)))

    # ---- following rooms --------------------------------------------------------------------

    async def _subscribe(self, room: str, after: int | None, epoch: str | None, ref: str | None) -> None:
        await self.service.check_member(self.user, room)
        if after is not None and not 0 <= after <= MAX_SEQ:
            raise ProtocolError(f"after must be between 0 and {MAX_SEQ}", Code.BAD_FRAME)
        await self._unfollow(room)
        if after is None:
            position = await self.service.store.position(room)
            if epoch is not None and epoch != position.epoch:
                # A cursor's epoch is checked whether or not it comes with a seq: "from now" in a
                # history that was recreated is still a break the app must hear about.
                reason = "the room's history was recreated (epoch changed)"
                self._push(frames.encode(frames.position_error(Code.RESYNC_REQUIRED, reason, room, position, ref)))
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

    async def _unfollow(self, room: str) -> None:
        follow = self._follows.pop(room, None)
        if follow is None:
            return
        if follow.accepted:
            self.hub.presence.unfollow(room, self.user)
        follow.sync.close()
        if follow.fetching is not None:
            follow.fetching.cancel()
        self.hub.detach(room, self)

    def _run(self, room: str, follow: _Follow) -> None:
        """Carry out what the room's sync machine asks for."""
        if not follow.attached:
            return  # subscribe first, read second: the queued Fetch waits for the bus
        for action in follow.sync.take_actions():
            if isinstance(action, Deliver):
                # Paced: the next page is only read once the outbox has drained (see _fetch).
                for wire in action.items:
                    self._push(wire.data, paced=True)
                    if wire.left == self.user:
                        self._lost_membership(room)
                        return
            elif isinstance(action, Fetch):
                follow.fetching = asyncio.create_task(self._fetch(room, follow, action))
            elif isinstance(action, Accepted):
                p = action.position
                follow.accepted = True
                self._push(frames.encode(frames.Subscribed(follow.ref, room, p.epoch, p.head, follow.start)))
                for other in self.hub.presence.online(room):
                    self._push(frames.encode(frames.PresenceEvent(room=room, user=other, status="online")))
                self.hub.presence.follow(room, self.user)
            elif isinstance(action, CaughtUp):
                self._push(frames.encode(frames.Live(room, action.seq)))
            elif isinstance(action, Resync):
                self._follows.pop(room, None)
                follow.sync.close()
                self.hub.detach(room, self)
                if follow.accepted:
                    self.hub.presence.unfollow(room, self.user)
                # The subscribe request's id only while it is still unanswered.
                error = _resync_error(action, room, None if follow.accepted else follow.ref)
                self._push(frames.encode(error))

    async def _fetch(self, room: str, follow: _Follow, fetch: Fetch) -> None:
        delay = 0.05
        while True:
            # Catch-up is paced by the client: the next page is read only when the last one is sent.
            await self._until_drained()
            if follow.sync.state.value in ("resync", "closed"):
                return
            try:
                page = await self.service.catchup(room, fetch.after, fetch.limit)
            except Exception as exc:  # whatever the engine raised: retry, never leave the room stuck
                log.warning("catch-up read of %s failed: %s", room, getattr(exc, "reason", repr(exc)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            wires = [Wire(m.seq, frames.encode(m), m.sender if m.kind in REMOVING_KINDS else "") for m in page.messages]
            self._tally.catchup_pages += 1
            self._tally.catchup_messages += len(wires)
            follow.fetching = None
            follow.sync.page(wires, page.position)
            self._run(room, follow)
            return

    # ---- hub listener -----------------------------------------------------------------------

    def on_message(self, room: str, wire: Wire) -> None:
        follow = self._follows.get(room)
        if follow is None:
            return
        if follow.sync.live(wire):
            self._tally.delivered += 1
            self._push(wire.data)
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
        self._push(frames.encode(error))

    def on_ephemeral(self, room: str, data: bytes) -> None:
        if room in self._follows:
            self._push(data)

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

    # ---- output -----------------------------------------------------------------------------

    def _push(self, data: bytes, paced: bool = False) -> None:
        """Queue ``data`` for the client; it leaves in ``_flush`` at the end of this loop iteration,
        packed with whatever else arrived in the meantime. Unpaced (live) traffic that overflows the
        outbox closes the connection."""
        if self.closed:
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        if self._writer is None and not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        if paced:
            self._paced_frames += 1
            self._paced_bytes += len(data)
            return
        if (
            len(self._outbox) - self._paced_frames > self.limits.outbox_frames
            or self._outbox_bytes - self._paced_bytes > self.limits.outbox_bytes
        ):
            self._spawn(self.close(Code.SLOW_CONSUMER, "slow consumer: outgoing queue is full"))

    def _batch(self) -> tuple[int, int]:
        """How many queued objects go into the next frame (at least one), and their size."""
        count = size = 0
        for data in self._outbox:
            if count and (count >= _PACK_FRAMES or size + len(data) > _PACK_BYTES):
                break
            count += 1
            size += len(data)
        return count, size

    def _flush(self) -> None:
        """Hand what is queued to the socket, packed, without a task; a backlog goes to the writer.

        Run with ``call_soon``, so everything pushed in the same loop iteration (a group commit's
        worth of messages under load) shares one frame and one system call: the busier the server,
        the fewer writes per message."""
        self._flush_soon = False
        if self.closed or self._writer is not None:
            return
        while self._outbox:
            count, size = self._batch()
            batch = self._outbox[:count]
            if not self.transport.try_write(batch[0] if count == 1 else b"\n".join(batch)):
                self._writer = asyncio.create_task(self._write_loop())
                return
            del self._outbox[:count]
            self._outbox_bytes -= size
        self._paced_frames = self._paced_bytes = 0
        self._wake_drain_waiters()

    async def _until_drained(self) -> None:
        if (self._writer is None and not self._outbox) or self.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _error(self, exc: RoostError, *, ref: str | None = None, room: str | None = None) -> None:
        self._metrics.errors.labels(code_label(int(exc.code)), "websocket").inc()
        if exc.code >= Code.INTERNAL:
            SERVER_ERRORS.warning(str(int(exc.code)), "answered %d: %s", int(exc.code), exc.reason)
        error = frames.Error(code=int(exc.code), reason=exc.reason, ref=ref, room=room, retry_after_s=retry_after(exc))
        self._push(frames.encode(error))

    async def _write_loop(self) -> None:
        """Send what is queued, packed up to 256 objects per WebSocket frame, until nothing is left."""
        loop = asyncio.get_running_loop()
        try:
            while self._outbox:
                count, size = self._batch()
                batch = self._outbox[:count]
                del self._outbox[:count]
                self._outbox_bytes -= size
                # The client stopped reading (or reads far too little): live or paced, a write that cannot
                # finish ends the connection. A timer, not a cancellation: aiohttp's writers share one drain
                # future, and cancelling one waiter would cancel the close frame's drain with it.
                stalled = loop.call_later(self.limits.write_timeout_s, self._stalled)
                try:
                    await self.transport.send(batch[0] if len(batch) == 1 else b"\n".join(batch))
                finally:
                    stalled.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("writer of %s stopped: %s", self.session_id, exc)
            self._writer = None
            self._wake_drain_waiters()
            await self.close(Code.GOING_AWAY, "write failed")
            return
        self._writer = None
        self._paced_frames = self._paced_bytes = 0
        self._wake_drain_waiters()

    def _stalled(self) -> None:
        reason = f"slow consumer: a write waited over {self.limits.write_timeout_s:g} s"
        self._spawn(self.close(Code.SLOW_CONSUMER, reason))

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---- closing ----------------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._outbox = []
        self._outbox_bytes = 0
        try:
            await self.transport.close(code, reason)
        except Exception as exc:
            log.debug("close of %s failed: %s", self.session_id, exc)
        await self.release()

    async def drain(self, within_s: float) -> None:
        """Shutdown: refuse new frames with 4509, give what is in flight ``within_s`` to finish (its ack),
        answer what did not with 4509 (retryable: the client sends it again, the same cmid, elsewhere),
        hand every answer to the socket, then close with 4509. Nothing asked goes unanswered."""
        deadline = asyncio.get_running_loop().time() + within_s
        self._draining = True
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=within_s)
            for task in late:
                ref, room = self._refs.get(task, (None, None))
                task.cancel()
                error = RoostError("server shutting down before this finished: send it again", Code.GOING_AWAY)
                self._error(error, ref=ref, room=room)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_drained(), max(0.05, deadline - asyncio.get_running_loop().time()))
        await self.close(Code.GOING_AWAY, "server shutting down")

    async def expire(self) -> None:
        """The token ran out: say so (an error frame 4401 after what is queued), then close with 4401."""
        self._push(frames.encode(frames.Error(code=int(Code.UNAUTHORIZED), reason="token expired")))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_drained(), self.limits.close_timeout_s)
        await self.close(Code.UNAUTHORIZED, "token expired")

    async def release(self) -> None:
        """Stop everything this session runs; safe to call more than once."""
        self.closed = True
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for room in list(self._follows):
            await self._unfollow(room)
        self._wake_drain_waiters()


def _resync_error(action: Resync, room: str, ref: str | None) -> frames.Error:
    if action.position is None:
        return frames.Error(code=int(action.code), reason=action.reason, ref=ref, room=room)
    return frames.position_error(action.code, action.reason, room, action.position, ref)
