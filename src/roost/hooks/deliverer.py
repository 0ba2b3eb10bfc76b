"""One consumer's deliveries, on the node that holds its lease (supervisor.py starts and cancels this).

The loop: read a page of a matching room after the consumer's cursor from the store (tombstones applied, as
every read path serves them; at most ``catchup_page`` messages and ``max_page_bytes``: nothing more is held),
POST each matching event and store the cursor after each 2xx, move the cursor past events the filter leaves
out, then the next room with something new (round robin, so one busy room does not starve the others).
Nothing to do: wait for a nudge (the hub's bus subscription of each matching room: its payload only says
"something new") or the next scan (new rooms, the heads the bus did not announce, the lag).

At least once: the cursors move in memory with each delivered event and are stored at most every
``consumer_cursor_interval_s`` (0.1 s), before every wait and every retry, and when the node stops: one write
for many events, since each is a write to the engine the sends use too (measured: ``roost bench``, target
``roost-consumer``). What a kill, a lost lease or a failed cursor write can make a receiver see twice is what
was delivered since the last stored cursor (at most that interval's worth) and the event in flight, each
identified by its ``(room, seq)``. In order: one POST in flight per consumer, a failed event retried (capped exponential
backoff) before any later one of its room. A consumer that fails ``max_failures`` times in a row is paused.

The lease: every POST and every cursor write happens before ``Held.deadline``, which the supervisor moves on
each renewal (a renewal that fails to come in time makes this loop stop by itself, in-flight POST included:
its timeout is cut to the deadline), and the supervisor cancels the task the moment a renewal says the lease
is another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import msgspec

from ..apikeys import KEYS_NS, KEYS_ROOM
from ..config import Limits
from ..hub import Hub, Wire
from ..logs import Throttled
from ..ports import Directory, Store
from ..protocol.errors import RoostError
from ..protocol.types import Message, Position, valid_room
from ..service import ChatService
from ..service.rooms import NS_META, kind_of
from . import backoff, signing
from .filters import Filter, event_class
from .registry import ACTIVE, PAUSED, Cursor, Record, Registry, Status

__all__ = ["Context", "Deliverer", "Delivery", "Held", "LeaseLost", "Tally", "stop_if_cancelled"]

log = logging.getLogger(__name__)
_throttled = Throttled(log)

_MAX_ERROR: Final = 200


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was cancelled. Seen on Redis: a store call interrupted by the
    cancellation returned (or failed with the driver's own error, which the boundary makes ``Unavailable``)
    instead of letting it through, and the loop went on waiting, so the node's shutdown waited forever. The
    loops check at each turn and before each wait."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class LeaseLost(Exception):
    """The lease's deadline passed (renewals did not come in time): stop before doing anything more."""


@dataclass
class Held:
    token: int
    deadline: float
    """``time.monotonic()`` before which this node may still act for the consumer."""

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.left() <= 0:
            raise LeaseLost


@dataclass
class Tally:
    """Counts for /metrics (metrics.py style: plain ints, turned into counters at scrape time)."""

    delivered: int = 0
    failed: int = 0
    filtered: int = 0
    trimmed: int = 0
    pauses: int = 0
    takeovers: int = 0


@dataclass(frozen=True)
class Context:
    """What every deliverer of a node shares."""

    registry: Registry
    service: ChatService
    directory: Directory
    store: Store
    hub: Hub
    http: aiohttp.ClientSession
    limits: Limits
    holder: str
    tally: Tally
    user_agent: str = "roost"


class Delivery(msgspec.Struct):
    """The body of one POST (docs/protocol.md, R-HOOK-1)."""

    consumer: str
    room: str
    seq: int
    epoch: str
    event: str
    message: msgspec.Raw


class _Paused(Exception):
    pass


_encode: Final = msgspec.json.Encoder().encode


@dataclass(eq=False)
class Deliverer:
    """The hub's ``Listener`` for the consumer's rooms (nudges), and the delivery loop (``run``)."""

    consumer: str
    held: Held
    ctx: Context
    status: Status = field(default_factory=Status)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    _unstored: dict[str, Cursor] = field(default_factory=dict, init=False)
    """Cursors moved since they were last stored (``_advance``), by room."""
    _stored_at: float = field(default=0.0, init=False)
    heads: dict[str, int] = field(default_factory=dict)
    """Per matching room, the highest seq known to exist (the store's head at the scan, then the nudges)."""
    rooms: list[str] = field(default_factory=list)
    lag: int = 0
    deleted: bool = False
    _kinds: dict[str, str] = field(default_factory=dict)
    _attached: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _scan_at: float = 0.0
    _turn: int = 0

    # ---- Listener (called by the hub, on the event loop: a nudge only) -----------------------------

    def on_message(self, room: str, wire: Wire) -> None:
        if wire.seq > self.heads.get(room, 0):
            self.heads[room] = wire.seq
        self._wake.set()

    def on_ephemeral(self, room: str, data: bytes) -> None:
        return None

    def on_dropped(self, room: str) -> None:
        self._scan_at = 0.0  # the bus may have lost nudges: read the heads now
        self._wake.set()

    def on_head(self, room: str, position: Position) -> None:
        self.on_message(room, Wire(position.head, b""))

    def nudge(self) -> None:
        """A change of the record (resume, rewind) was announced: look at it now."""
        self._scan_at = 0.0
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        taken = False
        try:
            while True:
                self.held.check()
                stop_if_cancelled()
                try:
                    if not taken:
                        await self._take_over()
                        taken = True
                    if not await self._step():
                        self.deleted = True  # the supervisor forgets its cursors
                        return
                except _Paused:
                    continue
                except RoostError as exc:  # the engine: retried after a pause, the cursors are where they were
                    stop_if_cancelled()
                    _throttled.warning(f"engine:{self.consumer}", "consumer %s: %s", self.consumer, exc.reason)
                    await self._idle(min(1.0, self.ctx.limits.consumer_scan_s))
        except LeaseLost:
            log.warning("consumer %s: the lease was not renewed in time; stopped delivering", self.consumer)
        finally:
            for room in self._attached:
                self.ctx.hub.detach(room, self)
            self._attached.clear()

    async def _step(self) -> bool:
        """One page of one room, or a wait; False once the consumer is deleted."""
        record = await self.ctx.registry.get(self.consumer)
        if record is None:
            return False
        await self._apply_requests(record)
        if self.status.state == PAUSED:
            await self._idle(self.ctx.limits.consumer_scan_s)
            return True
        if time.monotonic() >= self._scan_at:
            await self._scan(record)
            if self.status.state == PAUSED:
                return True
        room = self._next_room(record)
        if room is None:
            await self._idle(max(0.0, self._scan_at - time.monotonic()))
        else:
            await self._deliver_page(record, room)
        return True

    async def _take_over(self) -> None:
        registry = self.ctx.registry
        self.status = await registry.status(self.consumer)
        previous = self.status.holder
        self.status.holder, self.status.token = self.ctx.holder, self.held.token
        await self._save_status()
        self.cursors = await registry.cursors(self.consumer)
        self.ctx.tally.takeovers += 1
        log.info(
            "consumer %s: delivering from this node (lease token %d; previous holder %s)",
            self.consumer,
            self.held.token,
            previous or "none",
        )

    async def _idle(self, seconds: float) -> None:
        """Until a nudge, or ``seconds`` (never past the lease's deadline: the loop checks it then)."""
        stop_if_cancelled()
        await self.store_cursors()
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: a cancellation is never swallowed
            async with asyncio.timeout(min(seconds, max(0.0, self.held.left()))):
                await self._wake.wait()
        self._wake.clear()

    async def _save_status(self) -> None:
        self.held.check()
        self.status.updated_at = int(time.time())
        await self.ctx.registry.put_status(self.consumer, self.status)

    async def _apply_requests(self, record: Record) -> None:
        """Resume and rewind requests the API put in the record, each applied once (by its id)."""
        if record.resume and record.resume != self.status.resumed:
            self.status.resumed = record.resume
            if self.status.state == PAUSED:
                self.status.state, self.status.failures = ACTIVE, 0
                log.info("consumer %s: resumed", self.consumer)
            await self._save_status()
        rewind = record.rewind
        if rewind is not None and rewind.id != self.status.rewound:
            rooms = [rewind.room] if rewind.room is not None else sorted(set(self.cursors) | set(self.rooms))
            for room in rooms:
                epoch = self.cursors.get(room, Cursor(0, "")).epoch
                await self._store_cursor(room, Cursor(rewind.seq, epoch))
            self.status.rewound = rewind.id
            await self._save_status()
            self._scan_at = 0.0
            log.info("consumer %s: rewound %s to seq %d", self.consumer, rewind.room or "every room", rewind.seq)

    def cursor(self, record: Record, room: str) -> Cursor:
        return self.cursors.get(room) or Cursor(record.start, "")

    async def _scan(self, record: Record) -> None:
        """The matching rooms now (attached to the hub for nudges), their heads and the lag."""
        ctx = self.ctx
        if record.key and record.key not in await ctx.directory.room_attrs(KEYS_ROOM, KEYS_NS):
            await self._pause(record, "the API key that created this consumer was revoked", "its API key was revoked")
            return
        chosen = Filter(record.rooms, record.kinds, record.events)
        names = await (ctx.directory.rooms_of(record.owner) if record.key else ctx.directory.all_rooms())
        rooms = []
        for room in names:
            if not valid_room(room) or not chosen.room_named(room):
                continue
            kind = self._kinds.get(room)
            if kind is None:  # fixed at creation: read once per room
                kind = self._kinds[room] = kind_of(room, await ctx.directory.room_attrs(room, NS_META))
            if chosen.room(room, kind):
                rooms.append(room)
        for room in set(self._attached) - set(rooms):
            ctx.hub.detach(room, self)
            self._attached.discard(room)
            self.heads.pop(room, None)
        for room in rooms:
            if room not in self._attached:
                await ctx.hub.attach(room, self)  # subscribe, then read the head: no nudge is missed
                self._attached.add(room)
        lag = 0
        for room in rooms:
            position = await ctx.store.position(room)
            cursor = self.cursor(record, room)
            if cursor.epoch and position.epoch != cursor.epoch:
                log.warning(
                    "consumer %s: room %s has a new history (epoch %s, was %s): delivering it from its start",
                    self.consumer,
                    room,
                    position.epoch,
                    cursor.epoch,
                )
                cursor = Cursor(0, position.epoch)
                await self._store_cursor(room, cursor)
            self.heads[room] = position.head
            lag += max(0, position.head - cursor.seq)
        self.rooms = rooms
        self.lag = lag
        if self.status.lag != lag:
            self.status.lag = lag
            await self._save_status()
        self._scan_at = time.monotonic() + ctx.limits.consumer_scan_s

    def _next_room(self, record: Record) -> str | None:
        """The next room, after the last one served, with events after its cursor."""
        count = len(self.rooms)
        for step in range(count):
            room = self.rooms[(self._turn + step) % count]
            if self.heads.get(room, 0) > self.cursor(record, room).seq:
                self._turn = (self._turn + step + 1) % count
                return room
        return None

    async def _deliver_page(self, record: Record, room: str) -> None:
        ctx = self.ctx
        if record.key and not await ctx.directory.is_member(room, record.owner):
            self.heads.pop(room, None)  # the principal left: nothing of this room until it is back (next scan)
            return
        cursor = self.cursor(record, room)
        bounded = await ctx.service.catchup(room, cursor.seq, ctx.limits.catchup_page)
        page = bounded.page
        epoch = page.position.epoch
        if cursor.epoch and epoch != cursor.epoch:
            self._scan_at = 0.0  # a new history: the scan restarts the room
            return
        if not page.messages:
            self.heads[room] = cursor.seq  # nothing readable after the cursor: wait for a nudge or the scan
            return
        self.heads[room] = page.position.head
        first = page.messages[0].seq
        if first > cursor.seq + 1:
            ctx.tally.trimmed += first - cursor.seq - 1
            _throttled.warning(
                f"trimmed:{self.consumer}",
                "consumer %s: events %d-%d of room %s were trimmed (retention) before delivery",
                self.consumer,
                cursor.seq + 1,
                first - 1,
                room,
            )
        chosen = Filter(record.rooms, record.kinds, record.events)
        skipped: Cursor | None = None
        for message, data in zip(page.messages, bounded.encoded, strict=True):
            if not chosen.event(message.kind):
                ctx.tally.filtered += 1
                skipped = self.cursors[room] = Cursor(message.seq, epoch)
                continue
            await self._deliver(record, message, epoch, data)
            await self._advance(room, Cursor(message.seq, epoch))
            skipped = None
        if skipped is not None:
            await self._advance(room, skipped)

    async def _deliver(self, record: Record, message: Message, epoch: str, data: bytes) -> None:
        """POST until a 2xx; raises ``_Paused`` when the consumer reaches ``max_failures`` on the way."""
        cls = event_class(message.kind) or ""
        body = _encode(Delivery(self.consumer, message.room, message.seq, epoch, cls, msgspec.Raw(data)))
        while True:
            self.held.check()
            stop_if_cancelled()
            ok, error = await self._post(record, message, body)
            if ok:
                self.ctx.tally.delivered += 1
                if self.status.failures:
                    self.status.failures = 0
                    await self._save_status()
                return
            self.ctx.tally.failed += 1
            self.status.failures += 1
            self.status.last_error = error
            if self.status.failures >= record.max_failures:
                why = f"{self.status.failures} consecutive failures (max_failures {record.max_failures})"
                await self._pause(record, error, why)
                raise _Paused
            await self._save_status()
            await self.store_cursors()
            limits = self.ctx.limits
            wait = backoff.delay(self.status.failures, limits.consumer_backoff_s, limits.consumer_max_backoff_s)
            await asyncio.sleep(min(wait, max(0.0, self.held.left())))

    async def _pause(self, record: Record, error: str, why: str) -> None:
        self.status.state, self.status.last_error = PAUSED, error
        await self._save_status()
        self.ctx.tally.pauses += 1
        log.warning("consumer %s: paused after %s, last: %s", self.consumer, why, error)

    async def _post(self, record: Record, message: Message, body: bytes) -> tuple[bool, str]:
        timeout = min(self.ctx.limits.consumer_timeout_s, self.held.left())
        if timeout <= 0:
            raise LeaseLost
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.ctx.user_agent,
            signing.HEADER: signing.sign(record.secret, body),
            "Roost-Consumer": self.consumer,
            "Roost-Event-Id": f"{message.room}:{message.seq}",
        }
        try:
            async with (
                asyncio.timeout(timeout),
                self.ctx.http.post(record.url, data=body, headers=headers, allow_redirects=False) as response,
            ):
                await response.content.read(1024)  # what a receiver says is not used; the connection is reused
                status = response.status
        except TimeoutError:
            self.held.check()
            return False, f"no answer in {timeout:.1f} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        if 200 <= status < 300:
            return True, ""
        return False, f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")

    async def _store_cursor(self, room: str, cursor: Cursor) -> None:
        self.held.check()  # past the deadline another node may hold it: leave its cursors alone
        stop_if_cancelled()
        self.cursors[room] = cursor
        self._unstored.pop(room, None)
        await self.ctx.registry.set_cursor(self.consumer, room, cursor)

    async def _advance(self, room: str, cursor: Cursor) -> None:
        """Move the room's cursor past a delivered (or filtered) event; store the moved cursors when the last
        store is ``consumer_cursor_interval_s`` old (0: every time)."""
        self.held.check()
        self.cursors[room] = cursor
        self._unstored[room] = cursor
        if time.monotonic() - self._stored_at >= self.ctx.limits.consumer_cursor_interval_s:
            await self.store_cursors()

    async def store_cursors(self) -> None:
        """Store every cursor moved since the last store (before a wait, a retry, or when the node stops)."""
        while self._unstored:
            self.held.check()
            room, cursor = next(iter(self._unstored.items()))
            await self.ctx.registry.set_cursor(self.consumer, room, cursor)
            if self._unstored.get(room) == cursor:
                del self._unstored[room]
        self._stored_at = time.monotonic()
