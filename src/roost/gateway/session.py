"""Session: one authenticated connection, the entry point the WebSocket endpoint feeds frames to.

It decides *when* each client frame runs and owns the connection's end; its parts do the rest:

* Every frame first pays its price from the connection's and the user's frame budgets (``budget``); one
  that cannot is refused with 4429 and the connection is not read until it could, and too many refusals
  close it with 4429 (``_over_budget``).
* Frames from the client are handled as tasks, at most ``MAX_IN_FLIGHT`` at a time, started in
  arrival order (``receive``). A control frame waits for everything before it; a send waits for the send
  before it, so one connection's messages are stored in the order sent (group commit batches across
  connections). What a frame does is ``dispatch.Dispatcher``.
* Followed rooms, one RoomSync each, catch-up and live delivery: ``follows.Follows``.
* Everything for the client goes through one bounded ``outbox.Outbox``, which closes a slow consumer
  with 4508.
* The end: ``close``, ``drain`` (shutdown: every request in flight is answered), ``expire`` (the token
  ran out), ``release``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from ..config import Limits
from ..hub import Hub
from ..logs import Throttled
from ..metrics import code_label
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.encoding import JSON, Codec
from ..protocol.errors import ProtocolError, RateLimited, RoostError, retry_after
from ..service import ChatService
from .budget import BASE_COST, MAX_PAUSE_S, MIN_PAUSE_S, STRIKE_WINDOW_S, FrameBudget, UserBudgets, cost_of
from .dispatch import Dispatcher
from .follows import Follows
from .outbox import Outbox, Transport

__all__ = ["Session", "Transport"]

log = logging.getLogger(__name__)
SERVER_ERRORS: Final = Throttled(logging.getLogger("roost.errors"))
"""4500 and 4503 answers, each with its cause, at most one line per code per 10 s (with a count)."""

MAX_IN_FLIGHT: Final = 64
MAX_HOLD_S: Final = 0.1
"""After a request refused by the send or membership rate limit, the connection is not read for its
``retry_after_s``, at most this long."""
YIELD_EVERY: Final = 16
"""A connection's read loop lets the other tasks run after this many frames in a row."""


class Session:
    def __init__(
        self,
        service: ChatService,
        hub: Hub,
        transport: Transport,
        limits: Limits,
        user: str,
        session_id: str,
        budgets: UserBudgets | None = None,
        codec: Codec = JSON,
    ) -> None:
        self.service = service
        self.codec = codec
        """The connection's encoding (its subprotocol): how its frames are read and written."""
        self._decode = codec.decode_client
        self._peek = codec.peek_ref
        self._encode = codec.encode
        self._metrics = service.metrics
        self.hub = hub
        self.transport = transport
        self.limits = limits
        self.user = user
        self.session_id = session_id
        self.close_code: int | None = None
        self.budget = FrameBudget(limits, budgets or UserBudgets(limits), user)
        self.outbox = Outbox(transport, limits, self.close, session_id, None if codec is JSON else codec.pack)
        self.follows = Follows(service, hub, limits, user, self.outbox, codec)
        self._dispatcher = Dispatcher(service, self.follows, self.outbox, user, codec.encode)
        self._tasks: set[asyncio.Task[None]] = set()
        self._refs: dict[asyncio.Task[None], tuple[str | None, str | None]] = {}
        """Each in-flight frame's (id, room): a shutdown that cannot wait for it still answers it."""
        self._draining = False
        self._last_control: asyncio.Task[None] | None = None
        self._last_send: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._hold_until = 0.0
        self._unyielded = 0
        """Loop time until which nothing more is read: a send refused by the send rate limit (4429)."""

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    # ---- input ------------------------------------------------------------------------------

    async def receive(self, data: str | bytes) -> None:
        """Handle one client frame. Returns when the frame's task has started (backpressure)."""
        if self._draining:
            self._refuse_draining(data)
            return
        if self.closed:
            return
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            # Frames already buffered are read without the loop ever switching tasks; a burst would hold
            # every other connection up until it is through.
            self._unyielded = 0
            await asyncio.sleep(0)
        if self._hold_until:  # a request was refused by a rate limit: read nothing until it would pass
            await asyncio.sleep(max(0.0, self._hold_until - asyncio.get_running_loop().time()))
            self._hold_until = 0.0
        wait = self.budget.charge(BASE_COST)  # every frame pays, an oversized or malformed one too
        if wait:
            await self._over_budget(wait, *self._peek(data))
            return
        size = (
            len(data) if isinstance(data, bytes) or len(data) * 4 <= self.limits.max_frame_bytes else len(data.encode())
        )
        if size > self.limits.max_frame_bytes:
            ref, room = self._peek(data)
            error = ProtocolError(f"frame over {self.limits.max_frame_bytes} bytes", Code.TOO_LARGE)
            self._error(error, ref=ref, room=room)
            return
        try:
            frame = self._decode(data)
        except ProtocolError as exc:
            ref, room = self._peek(data)
            self._error(exc, ref=ref, room=room)
            return
        more = cost_of(frame) - BASE_COST
        if more and (wait := self.budget.charge(more)):
            await self._over_budget(wait, getattr(frame, "id", None), getattr(frame, "room", None))
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

    async def _over_budget(self, wait: float, ref: str | None, room: str | None) -> None:
        """Refuse the frame with 4429 and read nothing more from the connection until it would fit (at least
        ``MIN_PAUSE_S``, at most ``MAX_PAUSE_S``, then the next frame is judged): the client's further frames
        wait in its socket. The ``frame_strikes``-th refusal
        within ``STRIKE_WINDOW_S`` closes the connection with 4429, after the refusal itself."""
        retry = max(wait, MIN_PAUSE_S)
        self._error(RateLimited("over the frame budget: slow down", retry), ref=ref, room=room)
        if self.budget.refused():
            reason = f"over the frame budget {self.limits.frame_strikes} times in {STRIKE_WINDOW_S:g} s"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.until_drained(), self.limits.close_timeout_s)
            await self.close(Code.RATE_LIMITED, reason, unread=True)
            return
        await asyncio.sleep(min(retry, MAX_PAUSE_S))

    def _refuse_draining(self, data: str | bytes) -> None:
        ref, room = self._peek(data)
        self._error(RoostError("server shutting down: send it to another node", Code.GOING_AWAY), ref=ref, room=room)

    async def receive_invalid(self, reason: str) -> None:
        """A frame of the wrong kind (binary on a JSON connection, text on a MessagePack one): refused with 4400,
        after paying ``BASE_COST`` like any other."""
        if self.closed:
            return
        wait = self.budget.charge(BASE_COST)
        if wait:
            await self._over_budget(wait, None, None)
            return
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
            await self._dispatcher.dispatch(frame)
        except RateLimited as exc:
            # The sends (or membership) bucket is empty: what the client sends next waits in its socket,
            # up to MAX_HOLD_S (the answer says how long the bucket needs; other requests may pass sooner).
            hold = min(exc.retry_after_s, MAX_HOLD_S)
            self._hold_until = max(self._hold_until, asyncio.get_running_loop().time() + hold)
            self._error(exc, ref=ref, room=room)
        except RoostError as exc:
            self._error(exc, ref=ref, room=room)
        except Exception:
            log.exception("internal error handling %s", type(frame).__name__)
            self._error(RoostError("internal error", Code.INTERNAL), ref=ref, room=room)

    def _error(self, exc: RoostError, *, ref: str | None = None, room: str | None = None) -> None:
        self._metrics.errors.labels(code_label(int(exc.code)), "websocket").inc()
        if exc.code >= Code.INTERNAL:
            SERVER_ERRORS.warning(str(int(exc.code)), "answered %d: %s", int(exc.code), exc.reason)
        error = frames.Error(code=int(exc.code), reason=exc.reason, ref=ref, room=room, retry_after_s=retry_after(exc))
        self.outbox.push(self._encode(error))

    # ---- closing ----------------------------------------------------------------------------

    async def close(self, code: int, reason: str, *, unread: bool = False) -> None:
        if self.closed:
            return
        self.outbox.shut()
        self.close_code = code
        try:
            await self.transport.close(code, reason, unread=unread)
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
            await asyncio.wait_for(self.outbox.until_drained(), max(0.05, deadline - asyncio.get_running_loop().time()))
        await self.close(Code.GOING_AWAY, "server shutting down")

    async def expire(self, reason: str = "token expired") -> None:
        """The token ran out or was revoked: say so (an error frame 4401 after what is queued), then close
        with 4401."""
        if self.closed:
            return
        self.outbox.push(self._encode(frames.Error(code=int(Code.UNAUTHORIZED), reason=reason)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.until_drained(), self.limits.close_timeout_s)
        await self.close(Code.UNAUTHORIZED, reason)

    async def release(self) -> None:
        """Stop everything this session runs; safe to call more than once."""
        self.outbox.stop_writer()
        for task in list(self._tasks):
            task.cancel()
        await self.follows.release()
        self.outbox.wake_drain_waiters()
