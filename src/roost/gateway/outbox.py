"""Outbox: everything one connection sends, bounded, packed, and written without a task while it can be.

* ``push`` queues a frame; the queue is flushed at the end of the loop iteration straight to the socket,
  packed into few WebSocket frames (JSON objects separated by ``\\n``; for a MessagePack connection, one
  array: its codec's ``pack``), so a group commit's worth of messages shares one frame and one system call.
  Only a backlog the socket cannot take gets a writer task: an idle connection costs none.
* Bounded: live traffic beyond ``outbox_frames``/``outbox_bytes``, or one write left waiting
  ``write_timeout_s`` (catch-up included), closes the connection with 4508 (slow consumer); the client
  repairs from the store when it comes back. Catch-up pages and history replies are pushed ``paced`` (their
  readers take turns on ``pacing`` and wait for ``until_drained`` before reading a page), so they do not
  count as falling behind, and one page of them is queued at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, Protocol

from ..config import Limits
from ..protocol.codes import Code

__all__ = ["Outbox", "Transport"]

log = logging.getLogger(__name__)

_PACK_FRAMES: Final = 256
_PACK_BYTES: Final = 256 * 1024
"""Objects packed into one WebSocket frame, at most (count, bytes): far under any client's frame limit."""


class Transport(Protocol):
    def try_write(self, data: bytes) -> bool:
        """Write one data frame (text, or binary for MessagePack) now if the socket takes it without queuing;
        False means use ``send``."""
        ...

    async def send(self, data: bytes) -> None:
        """Send one data frame (already encoded), waiting while the socket is full."""
        ...

    async def close(self, code: int, reason: str, *, unread: bool = False) -> None:
        """Close with ``code``; returns within the close timeout (a socket that cannot take the close
        frame by then is aborted). ``unread``: read nothing more from the client, not even to find its
        answer to the close frame (a flood's backlog would be read in full): the connection is aborted as
        soon as the socket has taken the close frame."""
        ...


class Outbox:
    """One connection's outgoing frames. ``close`` is the connection's: the outbox calls it to give up on
    a slow consumer or a failed write."""

    def __init__(
        self,
        transport: Transport,
        limits: Limits,
        close: Callable[[int, str], Coroutine[Any, Any, None]],
        name: str,
        pack: Callable[[Sequence[bytes]], bytes] | None = None,
    ) -> None:
        self.transport = transport
        self._pack = pack
        """How several frames share one WebSocket message when not JSON's ``\\n`` (the codec's ``pack``)."""
        self.limits = limits
        self._close = close
        self._name = name
        self.closed = False
        """Set when the connection closes: nothing is queued after that."""
        # Frames the socket could not take at once, in order; a writer task exists only while
        # there are some (an idle connection costs no task).
        self._queue: list[bytes] = []
        self._bytes = 0
        # Catch-up pages are paced by the session itself, so they do not count as falling behind.
        self._paced_frames = 0
        self._paced_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._flush_soon = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self.pacing = asyncio.Lock()
        """The turn of paced readers (catch-up pages of every followed room, history replies): each waits for
        ``until_drained`` and pushes its page holding it, so the outbox holds one page of them at a time."""

    def push(self, data: bytes, paced: bool = False) -> None:
        """Queue ``data`` for the client; it leaves in ``_flush`` at the end of this loop iteration,
        packed with whatever else arrived in the meantime. Unpaced (live) traffic that overflows the
        outbox closes the connection."""
        if self.closed:
            return
        self._queue.append(data)
        self._bytes += len(data)
        if self._writer is None and not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        if paced:
            self._paced_frames += 1
            self._paced_bytes += len(data)
            return
        if (
            len(self._queue) - self._paced_frames > self.limits.outbox_frames
            or self._bytes - self._paced_bytes > self.limits.outbox_bytes
        ):
            self._spawn(self._close(Code.SLOW_CONSUMER, "slow consumer: outgoing queue is full"))

    def _batch(self) -> tuple[int, int]:
        """How many queued objects go into the next frame (at least one), and their size."""
        count = size = 0
        for data in self._queue:
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
        pack = self._pack
        while self._queue:
            count, size = self._batch()
            batch = self._queue[:count]
            data = (batch[0] if count == 1 else b"\n".join(batch)) if pack is None else pack(batch)
            if not self.transport.try_write(data):
                self._writer = asyncio.create_task(self._write_loop())
                return
            del self._queue[:count]
            self._bytes -= size
        self._paced_frames = self._paced_bytes = 0
        self.wake_drain_waiters()

    async def until_drained(self) -> None:
        """Return once everything queued is in the socket's hands (or the connection is closed)."""
        if (self._writer is None and not self._queue) or self.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_loop(self) -> None:
        """Send what is queued, packed up to 256 objects per WebSocket frame, until nothing is left."""
        loop = asyncio.get_running_loop()
        pack = self._pack
        try:
            while self._queue:
                count, size = self._batch()
                batch = self._queue[:count]
                del self._queue[:count]
                self._bytes -= size
                # The client stopped reading (or reads far too little): live or paced, a write that cannot
                # finish ends the connection. A timer, not a cancellation: aiohttp's writers share one drain
                # future, and cancelling one waiter would cancel the close frame's drain with it.
                stalled = loop.call_later(self.limits.write_timeout_s, self._stalled)
                try:
                    data = (batch[0] if len(batch) == 1 else b"\n".join(batch)) if pack is None else pack(batch)
                    await self.transport.send(data)
                finally:
                    stalled.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("writer of %s stopped: %s", self._name, exc)
            self._writer = None
            self.wake_drain_waiters()
            await self._close(Code.GOING_AWAY, "write failed")
            return
        self._writer = None
        self._paced_frames = self._paced_bytes = 0
        self.wake_drain_waiters()

    def _stalled(self) -> None:
        reason = f"slow consumer: a write waited over {self.limits.write_timeout_s:g} s"
        self._spawn(self._close(Code.SLOW_CONSUMER, reason))

    def wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def shut(self) -> None:
        """The connection is closing: drop what is queued and queue nothing more."""
        self.closed = True
        self._queue = []
        self._bytes = 0

    def stop_writer(self) -> None:
        """Cancel the writer task, unless it is the caller (a failed write closes the connection)."""
        self.closed = True
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
