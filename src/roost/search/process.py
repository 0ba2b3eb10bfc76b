"""The node's side of the indexer's child process (search/worker.py): wake-ups out, figures in, restarts.

The node keeps only the cheap part of indexing: a bus subscription per room (multiplexed with the hub's), whose
stored-message payloads mark the room dirty (a prefix compared, nothing decoded), and every ``GATHER_S`` one line
to the child's stdin with the rooms marked meanwhile. Reading the store, building the index's changes and writing
the index happen in the child, at a lower CPU priority (``search_nice``), so they never hold the node's event loop,
its GIL or its core. A room newly followed is sent once it is subscribed (subscribe, then read: nothing missed); a
line that cannot be written at once (the child is stuck) is dropped, since the child also reads the room list and
sweeps every room on its own schedule: a lost wake-up costs only time.

With a shared index (PostgreSQL) the child holds the ``search-indexer`` lease; the node follows the rooms only
while its child says it leads.

Supervision: a child that exits (a crash, ``kill -9``) is started again after a backoff (1 s, doubling up to 30 s,
back to 1 s once a child has reported), with one WARNING when a failure streak starts and one when a child reports
again. Meanwhile ``roost_search_indexer_up`` is 0, ``roost_search_indexing`` is 0 and ``/readyz`` lists the outage
in its ``warnings`` (the node stays ready: chat does not depend on search). The child resumes from the index's
cursors, so nothing is missed and nothing applied twice. On shutdown the node closes the child's stdin and waits
``STOP_S`` for it to give up its lease and exit, then kills it.

Metrics: the child's figures (totals since it started, a line within a tenth of a second of a change and at least
every second) are exported as the in-process indexer exports them: ``roost_search_lag_events``,
``roost_search_indexing``, ``roost_search_index_delay_seconds`` and ``roost_search_index_errors``
(the node adds each child's increments, so they never go back on a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Final

import msgspec
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from ..children import child_env
from ..config import Settings
from ..logs import NODE_ID
from ..metrics import FastHistogram, NodeMetrics
from ..ports import Bus, Storage, Subscription
from ..protocol.errors import RoostError
from .indexer import DELAY_BUCKETS, GATHER_S, STORED, follow_new, unfollow_all
from .port import SearchIndex
from .worker import Status, WorkerConfig

__all__ = ["DOWN", "IndexerProcess"]

log = logging.getLogger("roost.search.indexer")

STOP_S: Final = 3.0
"""How long shutdown waits for the child to give up its lease (at most a second) and exit before killing it."""
_FIRST_BACKOFF_S: Final = 1.0
_MAX_BACKOFF_S: Final = 30.0
_MAX_PENDING: Final = 1024 * 1024
"""Bytes of wake-ups waiting for a stuck child beyond which new ones are dropped (the child sweeps anyway)."""
DOWN: Final = "search: the indexer process is down and being restarted; searches answer from the index as it is"


class IndexerProcess:
    """Runs the indexer in a child process and supervises it (the module docstring says why and how)."""

    def __init__(
        self,
        settings: Settings,
        store: Storage,
        bus: Bus,
        index: SearchIndex,
        metrics: NodeMetrics,
        warnings: list[str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.index = index
        """The node's own handle on the index (searches); the child opens its own."""
        self.warnings = warnings
        """``Readiness.warnings``: ``DOWN`` is listed there while the child is down."""
        self.rescan_s = max(0.05, settings.limits.search_rescan_s)
        self.holder = f"{NODE_ID}.{secrets.token_hex(4)}"
        """The lease's holder, the same for every child of this node: a restarted child renews at once."""
        self.up = False
        """A child runs and has reported."""
        self.leading = False
        """The child indexes now (it always does with a per-node index; with a shared one, while it holds the lease)."""
        self.lag = 0
        self.indexed = 0
        """Text messages this node's children added to the index (tests, logs)."""
        self.restarts = 0
        self.pid: int | None = None
        self.delay = FastHistogram(DELAY_BUCKETS)
        self.errors = Counter(
            "roost_search_index_errors",
            "Indexer passes that failed (the store or the search index was unavailable); retried with backoff.",
            registry=metrics.registry,
        )
        self._seen = Status(False, 0, 0, 0, [0] * (len(DELAY_BUCKETS) + 1), 0.0)
        """The current child's last figures: the next line's increments are added to the node's."""
        self._process: asyncio.subprocess.Process | None = None
        self._followed: dict[str, Subscription] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False
        """In a failure streak: children ending without reporting (one log line per streak)."""
        metrics.gauge(self._export)
        bus.on_reset(self._on_reset)

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._supervise(), name="roost-search-process"),
            loop.create_task(self._follow(), name="roost-search-follow"),
        ]

    async def aclose(self) -> None:
        """Stop the child: its stdin closed, it gives up its lease and exits within ``STOP_S``, else it is killed.
        The subscriptions are left to the bus, which the node closes next (as the in-process indexer does)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            await _stop(process)
        self._followed.clear()
        self.up = self.leading = False

    # ---- the child ------------------------------------------------------------------------------------------

    def _config(self) -> str:
        settings = self.settings
        root = logging.getLogger()
        json_logs = any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers)
        config = WorkerConfig(
            store=settings.store,
            data_dir=settings.data_dir,
            search=settings.search,
            rescan_s=self.rescan_s,
            nice=settings.search_nice,
            holder=self.holder,
            log_level=logging.getLevelName(logging.getLogger("roost").getEffectiveLevel()),
            log_format="json" if json_logs else "text",
            parent=os.getpid(),
        )
        return msgspec.json.encode(config).decode()

    async def _supervise(self) -> None:
        backoff = _FIRST_BACKOFF_S
        while True:
            self._seen = Status(False, 0, 0, 0, [0] * (len(DELAY_BUCKETS) + 1), 0.0)
            reported = False
            started = time.monotonic()
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "roost.search.worker",
                    self._config(),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=child_env(),
                    start_new_session=True,  # a terminal's Ctrl-C reaches the node only: the node stops its child
                )
            except OSError as exc:
                code: int | str = f"not started: {exc}"
            else:
                self._process, self.pid = process, process.pid
                reported = await self._read(process)  # cancelled at shutdown: aclose stops it
                code = await process.wait()
                self._process = None
                self.pid = None
            self.up = self.leading = False
            self.lag = 0
            if DOWN not in self.warnings:
                self.warnings.append(DOWN)
            if reported or time.monotonic() - started > _MAX_BACKOFF_S:
                backoff = _FIRST_BACKOFF_S
                self._failing = False
            if not self._failing:
                log.warning("search: the indexer process ended (%s); restarting it with backoff", code)
                self._failing = True
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _read(self, process: asyncio.subprocess.Process) -> bool:
        """The child's figures until it exits; True if it reported at least once."""
        assert process.stdout is not None
        decode = msgspec.json.Decoder(Status).decode
        reported = False
        while line := await process.stdout.readline():
            try:
                status = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if not reported:
                reported = True
                if self._failing:
                    log.warning("search: the indexer process runs again")
                with contextlib.suppress(ValueError):
                    self.warnings.remove(DOWN)
                self.up = True
            self._take(status)
        return reported

    def _take(self, status: Status) -> None:
        seen = self._seen
        self.errors.inc(max(0, status.failed - seen.failed))
        self.indexed += max(0, status.indexed - seen.indexed)
        if len(status.delay_counts) == len(self.delay.counts):
            for i, (new, old) in enumerate(zip(status.delay_counts, seen.delay_counts, strict=True)):
                self.delay.counts[i] += max(0, new - old)
                self.delay.count += max(0, new - old)
            self.delay.total += max(0.0, status.delay_total - seen.delay_total)
        self._seen = status
        self.lag = status.lag
        if status.leading and not self.leading:
            self._wake.set()  # follow the rooms now
        self.leading = status.leading

    # ---- wake-ups ---------------------------------------------------------------------------------------------

    def _sink(self, room: str) -> Callable[[bytes], None]:
        def on_payload(data: bytes) -> None:
            if data.startswith(STORED):
                self._dirty.add(room)
                self._wake.set()

        return on_payload

    def _on_reset(self) -> None:
        """The bus may have lost messages: the child reads every followed room again."""
        if self._followed:
            self._dirty.update(self._followed)
            self._wake.set()

    async def _follow(self) -> None:
        """Follow the rooms (while the child indexes) and hand their wake-ups to the child, gathered."""
        rescan_at = 0.0
        failing = False
        while True:
            following = self.leading or not self.index.shared
            if not following and self._followed:
                await self._detach_all()
            if following and time.monotonic() >= rescan_at:
                try:
                    await self._rescan()
                    failing = False
                except RoostError as exc:
                    if not failing:
                        log.warning("search: the room list could not be read: %s", exc.reason)
                        failing = True
                rescan_at = time.monotonic() + self.rescan_s
            self._flush()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, rescan_at - time.monotonic()))
            await asyncio.sleep(GATHER_S)  # the wake-ups arriving meanwhile share the line

    async def _rescan(self) -> None:
        await follow_new(await self.store.all_rooms(), self._followed, self.bus, self._sink, self._dirty.add)

    async def _detach_all(self) -> None:
        self._dirty.clear()
        await unfollow_all(self._followed)

    def _flush(self) -> None:
        if not self._dirty:
            return
        rooms, self._dirty = sorted(self._dirty), set()
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            return  # a child that starts reads every room anyway
        transport = process.stdin.transport
        if transport.is_closing() or transport.get_write_buffer_size() > _MAX_PENDING:
            return  # a stuck child: it sweeps every room on its own schedule
        process.stdin.write(msgspec.json.encode(rooms) + b"\n")

    # ---- metrics ----------------------------------------------------------------------------------------------

    def _export(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "roost_search_lag_events",
            "Messages stored and not yet in the search index, as far as this node's indexer knows (0 on a node"
            " that does not index: another holds the lease).",
            self.lag if self.leading and self.up else 0,
        )
        yield GaugeMetricFamily(
            "roost_search_indexing",
            "1 on the node that indexes now (always with a per-node index).",
            int(self.leading and self.up),
        )
        yield GaugeMetricFamily(
            "roost_search_indexer_up",
            "1 while the search indexer's child process runs and reports; 0 while it is being restarted.",
            int(self.up),
        )
        yield self.delay.family(
            "roost_search_index_delay_seconds", "From a text message's ts to its commit into the search index."
        )


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM at once, not only the end of its stdin: a child still starting (importing, for about 0.3 s) ends at
    once instead of after its start, which every node's shutdown (and every test's) would wait for."""
    if process.stdin is not None:
        process.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        try:  # a killed process ends at once; should its end not be seen, the node's shutdown does not wait on it
            await asyncio.wait_for(process.wait(), STOP_S)
        except TimeoutError:
            log.warning("search: the indexer process %d did not end after SIGKILL; not waiting for it", process.pid)
