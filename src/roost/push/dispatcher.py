"""The push dispatcher: on the one node holding the lease ``push:dispatch``, read the events that call for a
push from the store after durable cursors and push each to the devices of its user who is offline.

What calls for a push [R-PUSH-4]: a ``mention`` in a user's event stream (``~u:<user>``), and a ``text``
(or ``rich``: a reply) message in a direct conversation (``dm:``) from the other user, for users with at
least one device, from the time their first device was registered on (older events are never pushed), when they have no
connection open on any node when the event was stored (online.py, approximate) and the event is younger
than ``push_ttl_s``.

Like a durable consumer's deliverer (hooks/deliverer.py), and for the same reasons: the store is read, never
memory, in pages after a cursor per room kept in the Directory (subscriptions.py), moved in memory after each
event and stored at most every ``consumer_cursor_interval_s``, before every wait and retry and when the node
stops; so a crash, a restart or a move of the lease resumes from the stored cursor and an event is pushed at
least once. What a kill or a lost lease can make a device receive twice is what was pushed since the last
stored cursor, each push carrying its ``(room, seq)`` (and the same RFC 8030 ``Topic``), by which the service
worker drops the second. Only one node pushes at a time: the lease is taken and renewed like a consumer's
(supervisor.py: every ``min(consumer_scan_s, consumer_lease_s / 3)``, stopping by itself a fifth of the lease
short of its expiry when renewals do not come). Nudges come through the hub's bus subscriptions of the rooms
followed (their payload says only "something new"); new rooms and users are found by the scan, every
``consumer_scan_s``.

Failures [R-PUSH-5]: a 404 or 410 deletes the device; 429, a 5xx, a timeout or a connection error is
retried after the consumers' backoff (``consumer_backoff_s`` doubling to ``consumer_max_backoff_s``), at most
``push_max_attempts`` attempts, then that push is dropped (counted and logged: a device that is away for
long is the push service's to queue, within ``push_ttl_s``); any other answer drops it at once. A failure
never holds a room's cursor for more than those attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..config import Limits
from ..hooks import backoff
from ..hooks.deliverer import Held, LeaseLost, stop_if_cancelled
from ..hooks.registry import Cursor
from ..hub import Hub, Wire
from ..logs import Throttled
from ..ports import Directory, Leases, Store
from ..protocol.errors import RoostError
from ..protocol.inbox import KIND_MENTION, Mention, inbox_owner
from ..protocol.rich import text_of
from ..protocol.types import SYSTEM_SENDER, Message, Position
from ..service import ChatService
from ..service.rooms import DM_PREFIX
from .online import Online
from .sender import Outcome, Sender, topic
from .subscriptions import Device, Subscriptions
from .vapid import VapidKey, load_or_create

__all__ = ["LEASE", "Dispatcher", "Payload", "PushTally", "VapidKeySource"]

log = logging.getLogger(__name__)
_throttled = Throttled(log)

LEASE: Final = "push:dispatch"
_MARGIN: Final = 0.2
_MAX_TEXT: Final = 1000
"""Characters of a message's text a payload carries when the operator allows text (an RFC 8291 record holds
at most 3993 bytes of plaintext)."""


class Payload(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a push carries (encrypted for the device): the event, and its text only if ``push_include_text``."""

    room: str
    seq: int
    kind: str
    """``mention`` or ``dm``."""
    sender: str
    text: str | None = None


_encode: Final = msgspec.json.Encoder().encode
_mention: Final = msgspec.json.Decoder(Mention)


@dataclass
class PushTally:
    """Counts for /metrics (read at scrape time)."""

    sent: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome} | {"dropped": 0})
    skipped: dict[str, int] = field(default_factory=lambda: {"online": 0, "stale": 0, "no_device": 0})
    takeovers: int = 0


@dataclass(frozen=True)
class _Event:
    user: str
    payload: Payload
    ts: int


class Dispatcher:
    def __init__(
        self,
        *,
        subs: Subscriptions,
        leases: Leases,
        service: ChatService,
        directory: Directory,
        store: Store,
        hub: Hub,
        online: Online,
        limits: Limits,
        holder: str,
        key: VapidKeySource,
    ) -> None:
        self.subs = subs
        self.leases = leases
        self.service = service
        self.directory = directory
        self.store = store
        self.hub = hub
        self.online = online
        self.limits = limits
        self.holder = holder
        self.key = key
        self.tally = PushTally()
        self.http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._runner: _Runner | None = None
        self._running: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._task = asyncio.create_task(self._loop(), name="roost-push")

    async def _loop(self) -> None:
        interval = min(self.limits.consumer_scan_s, self.limits.consumer_lease_s / 3)
        while True:
            await self._hold()
            stop_if_cancelled()
            await asyncio.sleep(interval)  # the lease's renewal period

    async def _hold(self) -> None:
        lease_s = self.limits.consumer_lease_s
        asked = time.monotonic()
        try:
            if self._runner is None and not await self.subs.users():
                return  # no device anywhere: no lease, so a server without Web Push writes nothing for it
            token = await self.leases.lease(LEASE, self.holder, int(lease_s * 1000))
        except RoostError as exc:  # unknown: the runner goes on until its deadline
            stop_if_cancelled()
            _throttled.warning("lease", "push: lease not renewed: %s", exc.reason)
            return
        if self._running is not None and self._running.done():
            self._running, self._runner = None, None
        if token is None:
            await self._stop("another node holds the lease")
            return
        deadline = asked + lease_s * (1 - _MARGIN)
        if self._runner is not None and self._runner.held.token == token:
            self._runner.held.deadline = deadline
            return
        await self._stop(f"the lease changed hands (token {token})")
        assert self.http is not None
        self._runner = _Runner(Held(token, deadline), self, self.http)
        self._running = asyncio.create_task(self._runner.run(), name="roost-push-dispatch")
        self._running.add_done_callback(_report)

    async def _stop(self, why: str, store_cursors: bool = False) -> None:
        runner, task = self._runner, self._running
        self._runner = self._running = None
        if runner is None or task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if store_cursors:
            with contextlib.suppress(RoostError, LeaseLost, TimeoutError):
                async with asyncio.timeout(max(0.0, min(1.0, runner.held.left()))):
                    await runner.store_cursors()
        log.info("push: stopped dispatching from this node (%s)", why)

    @property
    def dispatching(self) -> bool:
        return self._running is not None and not self._running.done()

    async def aclose(self) -> None:
        """Stop, store the cursors and release the lease: another node takes over at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        held = self._runner is not None
        await self._stop("the node is stopping", store_cursors=True)
        if held:
            try:
                async with asyncio.timeout(1.0):  # an engine that does not answer: the lease expires by itself
                    await self.leases.release(LEASE, self.holder)
            except RoostError as exc:
                log.warning("push: lease not released (%s): it expires by itself", exc.reason)
            except TimeoutError:
                log.warning("push: lease not released (no answer in 1 s): it expires by itself")
        if self.http is not None:
            await self.http.close()

    def metrics(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "roost_push_sent",
            "Web Push attempts by this node, by result: delivered (the push service took it), gone (404/410: the "
            "device was deleted), retry (429, 5xx, timeout, connection error: tried again), rejected (another "
            "answer: dropped), dropped (push_max_attempts attempts failed).",
            labels=["result"],
        )
        for result, count in self.tally.sent.items():
            sent.add_metric([result], count)
        yield sent
        skipped = CounterMetricFamily(
            "roost_push_skipped",
            "Events that called for a push but got none, by reason: online (the user had a connection open), "
            "stale (older than push_ttl_s), no_device.",
            labels=["reason"],
        )
        for reason, count in self.tally.skipped.items():
            skipped.add_metric([reason], count)
        yield skipped
        dispatching = int(self.dispatching)
        yield GaugeMetricFamily("roost_push_dispatching", "1 on the node holding the push lease.", dispatching)
        lag = self._runner.lag if self._runner is not None else 0
        yield GaugeMetricFamily("roost_push_lag", "Events after the push cursors (on the dispatching node).", lag)


class VapidKeySource:
    """The VAPID key, loaded (or made) once on first use: a node that never pushes never reads it."""

    def __init__(self, subs: Subscriptions, leases: Leases, holder: str, subject: str) -> None:
        self._args = (subs, leases, holder, subject)
        self._key: VapidKey | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> VapidKey:
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = await load_or_create(*self._args)
        return self._key


@dataclass(eq=False)
class _Runner:
    """The hub's ``Listener`` of the rooms followed (nudges) and the dispatch loop, while the lease is held."""

    held: Held
    d: Dispatcher
    http: aiohttp.ClientSession
    cursors: dict[str, Cursor] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    rooms: list[str] = field(default_factory=list)
    lag: int = 0
    _unstored: dict[str, Cursor] = field(default_factory=dict)
    _stored_at: float = 0.0
    _attached: set[str] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _scan_at: float = 0.0
    _turn: int = 0
    _sender: Sender | None = None

    # ---- Listener ----------------------------------------------------------------------------------

    def on_message(self, room: str, wire: Wire) -> None:
        if wire.seq > self.heads.get(room, 0):
            self.heads[room] = wire.seq
        self._wake.set()

    def on_ephemeral(self, room: str, data: bytes) -> None:
        return None

    def on_dropped(self, room: str) -> None:
        self._scan_at = 0.0
        self._wake.set()

    def on_head(self, room: str, position: Position) -> None:
        self.on_message(room, Wire(position.head, b""))

    # ---- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        d = self.d
        try:
            self.cursors = await d.subs.cursors()
            d.tally.takeovers += 1
            log.info("push: dispatching from this node (lease token %d)", self.held.token)
            while not d.online.warm():  # until every node's list of connected users can have arrived
                self.held.check()
                await asyncio.sleep(min(0.1, max(0.0, self.held.left())))
            key = await d.key.get()
            self._sender = Sender(self.http, key, d.limits.push_ttl_s, d.limits.push_timeout_s)
            while True:
                self.held.check()
                stop_if_cancelled()
                try:
                    await self._step()
                except RoostError as exc:
                    stop_if_cancelled()
                    _throttled.warning("engine", "push: %s", exc.reason)
                    await self._idle(min(1.0, d.limits.consumer_scan_s))
        except LeaseLost:
            log.warning("push: the lease was not renewed in time; stopped dispatching")
        finally:
            for room in self._attached:
                d.hub.detach(room, self)
            self._attached.clear()

    async def _step(self) -> None:
        if time.monotonic() >= self._scan_at:
            await self._scan()
        room = self._next_room()
        if room is None:
            await self._idle(max(0.0, self._scan_at - time.monotonic()))
        else:
            await self._page(room)

    async def _idle(self, seconds: float) -> None:
        stop_if_cancelled()
        await self.store_cursors()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(seconds, max(0.0, self.held.left()))):
                await self._wake.wait()
        self._wake.clear()

    async def _scan(self) -> None:
        """The rooms to follow now (each user's stream and direct conversations), attached for nudges."""
        d = self.d
        since: dict[str, int] = {}
        for user, at in (await d.subs.users()).items():
            for room in await d.directory.rooms_of(user):
                if inbox_owner(room) == user or room.startswith(DM_PREFIX):
                    since[room] = min(since.get(room, at), at)
        for room in self._attached - set(since):
            d.hub.detach(room, self)
            self._attached.discard(room)
            self.heads.pop(room, None)
        lag = 0
        for room, at in since.items():
            if room not in self._attached:
                await d.hub.attach(room, self)  # subscribe, then read the head: no nudge is missed
                self._attached.add(room)
            position = await d.store.position(room)
            cursor = self.cursors.get(room)
            if cursor is None:  # a room new to the dispatcher: from its user's registration on
                cursor = Cursor(await d.store.seq_before_time(room, at), position.epoch)
                await self._store_cursor(room, cursor)
            elif cursor.epoch and cursor.epoch != position.epoch:  # a new history: nothing old is pushed
                log.warning("push: room %s has a new history; pushing from its head", room)
                cursor = Cursor(position.head, position.epoch)
                await self._store_cursor(room, cursor)
            self.heads[room] = position.head
            lag += max(0, position.head - cursor.seq)
        self.rooms = sorted(since)
        self.lag = lag
        self._scan_at = time.monotonic() + d.limits.consumer_scan_s

    def _next_room(self) -> str | None:
        count = len(self.rooms)
        for step in range(count):
            room = self.rooms[(self._turn + step) % count]
            cursor = self.cursors.get(room)
            if cursor is not None and self.heads.get(room, 0) > cursor.seq:
                self._turn = (self._turn + step + 1) % count
                return room
        return None

    async def _page(self, room: str) -> None:
        d = self.d
        cursor = self.cursors[room]
        bounded = await d.service.catchup(room, cursor.seq, d.limits.catchup_page)
        page = bounded.page
        epoch = page.position.epoch
        if cursor.epoch and epoch != cursor.epoch:
            self._scan_at = 0.0
            return
        if not page.messages:
            self.heads[room] = cursor.seq
            return
        self.heads[room] = page.position.head
        for message in page.messages:
            event = await self._event_of(room, message)
            if event is not None:
                await self._push(event)
            await self._advance(room, Cursor(message.seq, epoch))

    async def _event_of(self, room: str, message: Message) -> _Event | None:
        """The push this stored message calls for, if any."""
        include = self.d.limits.push_include_text
        owner = inbox_owner(room)
        if owner is not None:
            if message.kind != KIND_MENTION:
                return None
            try:
                mention = _mention.decode(message.body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return None
            text = await self._text(mention.room, mention.seq) if include else None
            return _Event(owner, Payload(mention.room, mention.seq, "mention", mention.sender, text), message.ts)
        body = text_of(message)  # a text, or a rich one (a reply, a text with mentions): its text
        if body is None or message.sender == SYSTEM_SENDER:
            return None
        users = room.removeprefix(DM_PREFIX).split(":")
        if len(users) != 2 or message.sender not in users or users[0] == users[1]:
            return None
        user = users[1] if users[0] == message.sender else users[0]
        text = body[:_MAX_TEXT] if include else None
        return _Event(user, Payload(room, message.seq, "dm", message.sender, text), message.ts)

    async def _text(self, room: str, seq: int) -> str | None:
        page = (await self.d.service.catchup(room, seq - 1, 1)).page
        text = text_of(page.messages[0]) if page.messages and page.messages[0].seq == seq else None
        return None if text is None else text[:_MAX_TEXT]  # deleted, erased or trimmed since: nothing to show

    async def _push(self, event: _Event) -> None:
        d = self.d
        if time.time() * 1000 - event.ts > d.limits.push_ttl_s * 1000:
            d.tally.skipped["stale"] += 1
            return
        if d.online.online_at(event.user, event.ts):
            d.tally.skipped["online"] += 1
            return
        devices = await d.subs.devices(event.user)
        if not devices:
            d.tally.skipped["no_device"] += 1
            return
        body = _encode(event.payload)
        event_topic = topic(event.payload.room, event.payload.seq)
        for key, device in devices.items():
            await self._push_one(event, key, device, body, event_topic)

    async def _push_one(self, event: _Event, key: str, device: Device, body: bytes, event_topic: str) -> None:
        d = self.d
        limits = d.limits
        assert self._sender is not None
        attempts = 0
        while True:
            self.held.check()
            stop_if_cancelled()
            outcome, error = await self._sender.send(device, body, event_topic)
            d.tally.sent[outcome.value] += 1
            where = f"{event.payload.room}:{event.payload.seq} to a device of {event.user}"
            if outcome is Outcome.DELIVERED:
                return
            if outcome is Outcome.GONE:
                await d.subs.delete(event.user, key)
                log.info("push: %s: the push service says the device is gone (%s): deleted it", where, error)
                return
            if outcome is Outcome.REJECTED:
                _throttled.warning("rejected", "push: %s was refused (%s): dropped", where, error)
                return
            attempts += 1
            if attempts >= limits.push_max_attempts:
                d.tally.sent["dropped"] += 1
                _throttled.warning("dropped", "push: %s failed %d times (last: %s): dropped", where, attempts, error)
                return
            _throttled.warning("retry", "push: %s failed (%s): retrying", where, error)
            await self.store_cursors()
            wait = backoff.delay(attempts, limits.consumer_backoff_s, limits.consumer_max_backoff_s)
            await asyncio.sleep(min(wait, max(0.0, self.held.left())))

    async def _store_cursor(self, room: str, cursor: Cursor) -> None:
        self.held.check()
        self.cursors[room] = cursor
        self._unstored.pop(room, None)
        await self.d.subs.set_cursor(room, cursor)

    async def _advance(self, room: str, cursor: Cursor) -> None:
        self.held.check()
        self.cursors[room] = cursor
        self._unstored[room] = cursor
        if time.monotonic() - self._stored_at >= self.d.limits.consumer_cursor_interval_s:
            await self.store_cursors()

    async def store_cursors(self) -> None:
        while self._unstored:
            self.held.check()
            room, cursor = next(iter(self._unstored.items()))
            await self.d.subs.set_cursor(room, cursor)
            if self._unstored.get(room) == cursor:
                del self._unstored[room]
        self._stored_at = time.monotonic()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
