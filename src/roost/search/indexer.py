"""The indexer: a durable consumer of every room's log that keeps the search index in step, on every engine.

One mechanism for every store, so it is tested once and behaves alike: it reads each room with ``Store.read``
from the room's cursor, which the index keeps in the same transaction as the rows it describes (``Mark``,
search/port.py): an indexer stopped at any point resumes from there, applies nothing twice and misses nothing,
and catches up after a restart however long the node was down. Per message read: a ``text`` is indexed, an
``edit`` replaces its target's text (if from the target's sender, as every reader folds it), a ``delete`` removes
the target's text (an erasing one also has the index ``compact``), anything else only moves the cursor. A ``rich``
message (a reply, a thread's reply, a text with mentions) is indexed by its text. A room whose ``first`` rose
(retention) loses its documents below it; a room whose epoch changed (its history was recreated) is indexed again
from its start.

It never touches the send path: it subscribes to every room on the bus (the bus multiplexes it with the hub's
subscription of the room where there is one: the broker sends a message once per node), and a stored message's
payload only marks its room to be read (a prefix compared, nothing decoded; typing, receipts and presence are
ignored). A pass reads a page of every marked room and applies them all in one index transaction; it starts
``GATHER_S`` after a wake-up, or four times the last pass's duration if that is longer (up to a second), so the
messages arriving meanwhile share it: a busy node indexes in fewer, larger passes, and the indexer takes at most
about a fifth of the node's time, letting its lag grow rather than slow the chat. A lost wake-up costs nothing but
time: a bus reset marks every room, every ``search_rescan_s`` the store's room list is read for new rooms, and every
``_SWEEP_EVERY``-th rescan marks every room (a publish lost without a reset: a node that died between its write and
its publish).

Where it runs: with a per-node index (SQLite) on every node, each indexing every room; with a shared index
(PostgreSQL) on one node at a time, the holder of the store's lease ``search-indexer`` (``Leases``), renewed
every third of its ttl and given up on ``aclose``, so another node takes over within the ttl. By default in a child
process of the node at a lower CPU priority (search/worker.py; the node's side: search/process.py), where its store
reads and index writes cannot compete with the node's event loop for the GIL and the core; there its ``Wakes`` do
nothing and the node forwards its bus wake-ups (``mark``). In the node's process with ``search_in_process``, a Kafka
store, or the embedded store under a shared index (node.py, ``_indexes_in_process``).

Metrics: ``roost_search_lag_events`` (messages stored and not yet indexed, as far as this node knows),
``roost_search_index_delay_seconds`` (from a message's ``ts`` to its indexing), ``roost_search_index_errors``
(passes that failed). Logs: one line when a failure streak starts and when it ends, one when the lag passes
``_BEHIND`` events and one when it is back under a tenth of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import msgspec
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from ..config import Limits
from ..logs import NODE_ID
from ..metrics import FastHistogram, NodeMetrics
from ..ports import Subscription
from ..protocol.errors import NotFound, RoostError
from ..protocol.relations import KIND_DELETE, KIND_EDIT, DeleteContent, EditContent, decode_content
from ..protocol.types import KIND_TEXT, Message, Page, valid_room
from .port import Change, Edit, Insert, Mark, Remove, SearchIndex, Update

__all__ = [
    "DELAY_BUCKETS",
    "GATHER_S",
    "LEASE",
    "STORED",
    "Indexer",
    "Source",
    "Wakes",
    "change_of",
    "follow_new",
    "unfollow_all",
]


class Source(Protocol):
    """What the indexer asks of the store: its logs, its room list and (a shared index) its leases. Every
    ``Storage`` is one; the indexer's child process reads the embedded store through a reader of its own."""

    async def read(self, room: str, after: int, limit: int) -> Page: ...

    async def all_rooms(self) -> list[str]: ...

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None: ...

    async def release(self, name: str, holder: str) -> None: ...


class Wakes(Protocol):
    """Where wake-ups come from: the bus in the node's process; in the indexer's child process, nothing (the node
    forwards its wake-ups through a pipe: ``Indexer.mark``)."""

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> Subscription: ...

    def on_reset(self, callback: Callable[[], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Step:
    update: Update
    more: bool
    """The room has more to read after this page."""
    size: int
    """Bytes of text in the page (a batch's budget)."""


log = logging.getLogger(__name__)

LEASE: Final = "search-indexer"
_PAGE: Final = 500
_PAGES_PER_PASS: Final = 4
"""Pages one room gets per pass before the rooms marked meanwhile have their turn (a long backlog waits its turn)."""
_BATCH_BYTES: Final = 4 * 1024 * 1024
"""Text applied in one index transaction at most (plus one page): what a pass holds in memory at once."""
GATHER_S: Final = 0.2
"""A wake-up waits at least this long before its pass, so the messages arriving meanwhile share the pass."""
_REST: Final = 4.0
"""...and at least this many times the last pass's duration (at most ``_MAX_REST_S``): under a load that makes
passes long, the indexer takes at most about a fifth of the node's time and lets its lag grow instead."""
_MAX_REST_S: Final = 1.0
_BEHIND: Final = 10_000
DELAY_BUCKETS: Final = (
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
_LEASE_TTL_MS: Final = 15_000
_SWEEP_EVERY: Final = 12
STORED: Final = b'{"type":"msg"'
"""How a stored message's payload starts on the bus (frames.encode of a ``Message``): the only kind that wakes."""


KIND_RICH: Final = "rich"
"""A text with structure (a reply, a thread, mentions), its text in the JSON body's ``body``: the kind the replies and
threads work stores (protocol/rich.py there); a plain text stays ``text``."""


class _RichText(msgspec.Struct):
    body: str
    """The text; the rest of a rich body (its relations, its mentions) is not searched."""


_rich: Final = msgspec.json.Decoder(_RichText)


def change_of(message: Message) -> Change | None:
    """What a stored message does to the index (None: nothing but moving the cursor)."""
    if message.kind == KIND_TEXT:
        return Insert(message.seq, message.sender, message.ts, message.body)
    if message.kind == KIND_RICH:
        try:
            text = _rich.decode(message.body).body
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
            return None
        return Insert(message.seq, message.sender, message.ts, text)
    if message.kind == KIND_EDIT:
        content = decode_content(message)
        if isinstance(content, EditContent) and content.body:  # an erased edit holds no text
            return Edit(content.target, message.sender, content.body)
    elif message.kind == KIND_DELETE:
        content = decode_content(message)
        if isinstance(content, DeleteContent):
            return Remove(content.target, content.erase)
    return None


class Indexer:
    def __init__(
        self,
        store: Source,
        bus: Wakes,
        index: SearchIndex,
        limits: Limits,
        metrics: NodeMetrics,
        holder: str | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.index = index
        self.rescan_s = max(0.05, limits.search_rescan_s)
        self.holder = holder or f"{NODE_ID}.{secrets.token_hex(4)}"
        self.compact_every_s = 10.0
        """Erasures are compacted at most this often (a compaction rewrites the whole index)."""
        self.leading = not index.shared
        """This node indexes now: always with its own index, while holding the lease with a shared one."""
        self._marks: dict[str, Mark] | None = None
        self._heads: dict[str, int] = {}
        self._followed: dict[str, Subscription] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._behind = False
        self._compact_at = 0.0
        self._compact_due = False
        self.delay = FastHistogram(DELAY_BUCKETS)
        self.errors = Counter(
            "roost_search_index_errors",
            "Indexer passes that failed (the store or the search index was unavailable); retried with backoff.",
            registry=metrics.registry,
        )
        self.indexed = 0
        """Text messages this node added to the index (tests, logs)."""
        self.failed = 0
        """Passes that failed (``errors`` as a plain number: the child process reports it to the node)."""
        metrics.gauge(self._export)
        bus.on_reset(self._on_reset)

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="roost-search-indexer")

    async def aclose(self) -> None:
        """Stop indexing (a node's shutdown). The subscriptions are left to the bus, which the node closes next:
        unsubscribing room by room from an engine that does not answer would hold the exit. The lease is given
        up so another node takes over at once, waiting at most a second for the engine."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._followed.clear()
        self._dirty.clear()
        if self.index.shared and self.leading:
            with contextlib.suppress(RoostError, TimeoutError):
                await asyncio.wait_for(self.store.release(LEASE, self.holder), 1.0)

    @property
    def lag(self) -> int:
        """Messages stored and not yet indexed, of the rooms this node follows (what it has heard of)."""
        marks = self._marks or {}
        return sum(max(0, head - (marks[r].cursor if r in marks else 0)) for r, head in self._heads.items())

    def _export(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "roost_search_lag_events",
            "Messages stored and not yet in the search index, as far as this node's indexer knows (0 on a node"
            " that does not index: another holds the lease).",
            self.lag if self.leading else 0,
        )
        yield GaugeMetricFamily(
            "roost_search_indexing", "1 on the node that indexes now (always with a per-node index).", int(self.leading)
        )
        yield self.delay.family(
            "roost_search_index_delay_seconds", "From a text message's ts to its commit into the search index."
        )

    # ---- wake-ups ---------------------------------------------------------------------------------------------

    def _sink(self, room: str) -> Callable[[bytes], None]:
        def on_payload(data: bytes) -> None:
            if data.startswith(STORED):
                self._mark_dirty(room)

        return on_payload

    def _on_reset(self) -> None:
        """The bus may have lost messages: read every followed room again."""
        if self._followed:
            self._dirty.update(self._followed)
            self._wake.set()

    def mark(self, rooms: Sequence[str]) -> None:
        """Wake-ups from elsewhere (the node, for its indexer's child process): read these rooms."""
        if rooms:
            self._dirty.update(rooms)
            self._wake.set()

    def _mark_dirty(self, room: str) -> None:
        self._dirty.add(room)
        self._wake.set()

    # ---- the loop -------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.5
        rescan_at = 0.0
        rescans = 0
        rest = GATHER_S
        while True:
            try:
                if self.index.shared and not await self._lead():
                    await asyncio.sleep(_LEASE_TTL_MS / 3000)
                    continue
                if self._marks is None:
                    self._marks = await self.index.marks()
                if time.monotonic() >= rescan_at:
                    await self._rescan(sweep=rescans % _SWEEP_EVERY == 0)
                    rescans += 1
                    rescan_at = time.monotonic() + self.rescan_s
                started = time.monotonic()
                await self._pass()
                rest = min(_MAX_REST_S, max(GATHER_S, _REST * (time.monotonic() - started)))
                await self._maybe_compact()
            except RoostError as exc:
                self.errors.inc()
                self.failed += 1
                if not self._failing:
                    log.warning("search: indexing failed, retrying with backoff: %s", exc.reason)
                    self._failing = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if self._failing:
                log.warning("search: indexing works again")
                self._failing = False
            backoff = 0.5
            self._log_lag()
            if self._dirty:  # rooms left with a backlog, or marked during the pass
                await asyncio.sleep(rest)
                continue
            self._wake.clear()
            wait = max(0.0, rescan_at - time.monotonic())
            if self._compact_due:
                wait = min(wait, max(0.0, self._compact_at - time.monotonic()))
            if self.index.shared:
                wait = min(wait, _LEASE_TTL_MS / 3000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            await asyncio.sleep(rest)

    async def _lead(self) -> bool:
        """Take or renew the lease (a shared index); on losing it, stop following the rooms."""
        token = await self.store.lease(LEASE, self.holder, _LEASE_TTL_MS)
        if token is None:
            if self.leading:
                log.warning("search: another node holds the indexer's lease now")
                await self._detach_all()
                self.leading = False
            return False
        if not self.leading:
            log.info("search: this node indexes now (lease token %d)", token)
            self.leading = True
            self._marks = None  # another node moved them meanwhile: read them again
        return True

    async def _rescan(self, sweep: bool) -> None:
        """Follow every room not followed yet (a new room), then read it: subscribe, then read, misses nothing.
        ``sweep``: read every followed room too."""
        if sweep:
            self._dirty.update(self._followed)
        await follow_new(await self.store.all_rooms(), self._followed, self.bus, self._sink, self._dirty.add)

    async def _detach_all(self) -> None:
        self._dirty.clear()
        await unfollow_all(self._followed)

    async def _pass(self) -> None:
        """Up to ``_PAGES_PER_PASS`` rounds over the marked rooms: each round reads one page of every room that has
        more, and applies them all in one index transaction (``apply_many``), so a busy pass costs one commit."""
        rooms, self._dirty = self._dirty, set()
        try:
            for _ in range(_PAGES_PER_PASS):
                if not rooms:
                    return
                rooms = await self._round(rooms)
            self._dirty |= rooms  # a backlog: its next turn comes after the rooms marked meanwhile
        except BaseException:
            self._dirty |= rooms
            raise

    async def _round(self, rooms: set[str]) -> set[str]:
        """Read a page of each room and apply them (in batches of about ``_BATCH_BYTES``); return the rooms that
        have more to read."""
        more: set[str] = set()
        batch: list[_Step] = []
        size = 0
        for room in rooms:
            try:
                step = await self._read(room)
            except NotFound:  # listed, but the store has no log for it (yet): a wake-up or a sweep tries again
                log.debug("search: %s has no log to index", room)
                continue
            if step is None:
                continue
            batch.append(step)
            size += step.size
            if size >= _BATCH_BYTES:
                await self._commit(batch, more)
                batch, size = [], 0
        if batch:
            await self._commit(batch, more)
        return more

    async def _read(self, room: str) -> _Step | None:
        """The room's next page as an ``Update`` of the index, or None when the index has it all already."""
        assert self._marks is not None
        mark = self._marks.get(room)
        cursor = 0 if mark is None else mark.cursor
        page = await self.store.read(room, cursor, _PAGE)
        position = page.position
        reset = mark is not None and position.epoch != mark.epoch
        if reset:  # the history was recreated: start again from its beginning
            cursor = 0
            page = await self.store.read(room, 0, _PAGE)
            position = page.position
        messages = page.messages
        done = cursor if not messages else messages[-1].seq
        if not messages:
            done = max(done, min(position.head, position.first - 1))  # what is gone was not ours to read
        self._heads[room] = max(self._heads.get(room, 0), position.head)
        new = Mark(position.epoch, done, position.first)
        if new == mark:
            return None
        changes = [c for c in map(change_of, messages) if c is not None]
        size = sum(len(m.body) for m in messages)
        return _Step(Update(room, mark, new, changes, reset), done < position.head, size)

    async def _commit(self, batch: list[_Step], more: set[str]) -> None:
        assert self._marks is not None
        applied = await self.index.apply_many([step.update for step in batch])
        stale = False
        for step, ok in zip(batch, applied, strict=True):
            room = step.update.room
            if not ok:
                stale = True  # another indexer moved the room: resume from its mark
                more.add(room)
                continue
            self._marks[room] = step.update.mark
            self._observe(step.update.changes)
            if step.more:
                more.add(room)
        if stale:
            self._marks = await self.index.marks()

    def _observe(self, changes: Sequence[Change]) -> None:
        now_ms = time.time_ns() // 1_000_000
        for change in changes:
            if isinstance(change, Insert):
                self.indexed += 1
                self.delay.observe(max(0, now_ms - change.ts) / 1000)
            elif isinstance(change, Remove) and change.erase:
                self._compact_due = True

    async def _maybe_compact(self) -> None:
        if not self._compact_due and self._compact_at:
            return
        if time.monotonic() < self._compact_at:
            return
        self._compact_due = False
        self._compact_at = time.monotonic() + self.compact_every_s
        started = time.monotonic()
        if await self.index.compact():  # also a compaction a restart left due (the index keeps the need)
            log.info("search: index compacted after an erasure in %.2f s", time.monotonic() - started)

    def _log_lag(self) -> None:
        lag = self.lag
        if not self._behind and lag > _BEHIND:
            self._behind = True
            log.warning("search: indexing is %d messages behind", lag)
        elif self._behind and lag < _BEHIND // 10:
            self._behind = False
            log.warning("search: indexing has caught up (%d messages behind)", lag)


async def follow_new(
    rooms: Iterable[str],
    followed: dict[str, Subscription],
    bus: Wakes,
    sink: Callable[[str], Callable[[bytes], None]],
    on_followed: Callable[[str], None],
) -> None:
    """Subscribe to every valid room of ``rooms`` not in ``followed`` yet, 100 at a time, adding each to ``followed``
    and telling ``on_followed`` (which marks it to be read: subscribed, then read, nothing is missed). A failed
    subscription raises once its chunk is done: the rooms followed so far stay followed, the next rescan tries
    the rest. Shared by the in-process indexer and the node's half of the indexer process."""
    new = [room for room in rooms if valid_room(room) and room not in followed]
    for i in range(0, len(new), 100):
        chunk = new[i : i + 100]
        results = await asyncio.gather(*(bus.subscribe(room, sink(room)) for room in chunk), return_exceptions=True)
        failed: BaseException | None = None
        for room, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                failed = failed or result
                continue
            followed[room] = result
            on_followed(room)
        if failed is not None:
            raise failed


async def unfollow_all(followed: dict[str, Subscription]) -> None:
    """End every subscription of ``followed`` (emptied first), ignoring an engine's refusal."""
    subscriptions = list(followed.values())
    followed.clear()
    for subscription in subscriptions:
        with contextlib.suppress(RoostError):
            await subscription.aclose()
