"""The search indexer's child process: ``python -m roost.search.worker CONFIG_JSON``, started and supervised by the
node (search/process.py).

Why a process of its own: the indexer's store reads build Python objects and its index writes run in threads, so
inside the node they would take the GIL and the core from the event loop that serves the chat. Here they run beside
it at a lower CPU priority (``os.nice(search_nice)``), and the node's loop never waits for them.

What it does: opens its own reader of the store from the node's settings (the embedded store: the same SQLite file,
read in WAL mode beside the node's writer, ``SqliteLogReader``; any other engine: its own client), opens the search
index (the per-node SQLite file, or the shared PostgreSQL index, whose lease this process then holds), and runs the
``Indexer`` unchanged. Its wake-ups are the node's: each line on stdin is a JSON list of rooms the node's bus
subscriptions saw a message stored in (``Indexer.mark``); a lost line costs only time, as the indexer also reads the
room list and sweeps every room on its own schedule. Within a tenth of a second of a change, and at least every
second, it writes one JSON line of figures on stdout (``Status``), which the node exports as its metrics. It stops at
the end of stdin (the node closed it, or died) or on SIGTERM, also while still opening the store or the index: the
indexer stops and gives up its lease, as in the node, and each close is bounded (an engine that is gone cannot hold
it). On Linux the kernel also sends it SIGTERM when the node's process ends in any way (``PR_SET_PDEATHSIG``). It
runs in a session of its own, so a terminal's Ctrl-C reaches only the node, which then stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Protocol

import msgspec

from ..children import die_with_parent
from ..config import Limits
from ..logs import configure
from ..metrics import NodeMetrics
from ..protocol.errors import RoostError
from ..search import open_search
from .indexer import Indexer, Source
from .port import SearchIndex

__all__ = ["Status", "WorkerConfig", "embedded", "main"]

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
CHECK_S = 0.1
CLOSE_S = 2.0


class WorkerConfig(msgspec.Struct, frozen=True):
    """What the node passes (argv, JSON): the settings the indexer needs, and who it is for the lease."""

    store: str | None
    data_dir: str
    search: str | None
    rescan_s: float
    nice: int
    holder: str
    log_level: str = "INFO"
    log_format: str = "text"
    parent: int = 0
    """The node's pid: a child whose node is gone when it starts stops at once (0: whoever started it)."""


class Status(msgspec.Struct, frozen=True):
    """One line of figures, every second: totals since this process started."""

    leading: bool
    lag: int
    failed: int
    indexed: int
    delay_counts: list[int]
    delay_total: float


class _Closable(Source, Protocol):
    async def aclose(self) -> None: ...


class _NoWakes:
    """The bus is the node's: here a room is "followed" by name only, and its wake-ups come through stdin."""

    async def subscribe(self, room: str, sink: object) -> _Followed:
        return _Followed()

    def on_reset(self, callback: object) -> None:
        return None


class _Followed:
    async def aclose(self) -> None:
        return None


def embedded(store: str | None) -> bool:
    return store in (None, "", "sqlite") or (store or "").startswith("sqlite:")


async def _open_source(config: WorkerConfig) -> _Closable:
    if embedded(config.store):
        from ..backends.sqlite import SqliteLogReader

        return SqliteLogReader((config.store or "").removeprefix("sqlite://") or config.data_dir)
    from ..backends import open_store

    return await open_store(config.store, config.data_dir)


def _status(indexer: Indexer) -> bytes:
    status = Status(
        leading=indexer.leading,
        lag=indexer.lag,
        failed=indexer.failed,
        indexed=indexer.indexed,
        delay_counts=list(indexer.delay.counts),
        delay_total=indexer.delay.total,
    )
    return msgspec.json.encode(status) + b"\n"


async def _report(indexer: Indexer) -> None:
    """A line when the figures changed (looked at every ``CHECK_S``: the node learns of a lease taken or a pass
    committed within that), and at least every ``STATUS_EVERY_S``."""
    out = sys.stdout.buffer
    last, written = b"", 0.0
    loop = asyncio.get_running_loop()
    while True:
        line = _status(indexer)
        if line != last or loop.time() - written >= STATUS_EVERY_S:
            out.write(line)  # a line of a few hundred bytes into a pipe the node always reads
            out.flush()
            last, written = line, loop.time()
        await asyncio.sleep(CHECK_S)


class _Target:
    """Where wake-ups go: nowhere until the indexer exists (its first pass reads every room anyway)."""

    indexer: Indexer | None = None


async def _listen(reader: asyncio.StreamReader, target: _Target) -> None:
    """Wake-ups from the node until the end of stdin (the node closed it, or died)."""
    decode = msgspec.json.Decoder(list[str]).decode
    while line := await reader.readline():
        if target.indexer is not None:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                target.indexer.mark(decode(line))


async def _bounded(close: Awaitable[None], what: str) -> None:
    """A close that an unreachable engine would hold forever ends after ``CLOSE_S``."""
    try:
        await asyncio.wait_for(close, CLOSE_S)
    except TimeoutError:
        log.warning("search: closing the %s took over %.0f s; exiting anyway", what, CLOSE_S)
    except (RoostError, OSError) as exc:
        log.warning("search: closing the %s failed: %s", what, exc)


async def _open(config: WorkerConfig) -> tuple[_Closable, SearchIndex] | None:
    try:
        source = await _open_source(config)
    except (RoostError, OSError) as exc:
        log.warning("search: the indexer process cannot open the store: %s", exc)
        raise SystemExit(3) from None
    try:
        index = await open_search(config.search, config.store, config.data_dir)
    except (RoostError, OSError) as exc:
        log.warning("search: the indexer process cannot open the search index: %s", exc)
        await _bounded(source.aclose(), "store")
        raise SystemExit(3) from None
    if index is None:
        await _bounded(source.aclose(), "store")
        return None
    return source, index


async def run(config: WorkerConfig) -> int:
    """Stop is asked by SIGTERM or the end of stdin at any point, opening included (an engine that does not
    answer never holds this process past its node)."""
    die_with_parent(config.parent or os.getppid())  # even while opening an engine that does not answer
    if config.nice > 0:
        os.nice(config.nice)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    target = _Target()
    listening = loop.create_task(_listen(reader, target))
    listening.add_done_callback(lambda _: stop.set())
    opening = loop.create_task(_open(config))
    stopping = loop.create_task(stop.wait())
    try:
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not opening.done():  # asked to stop while opening: give up the opening
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            return 0
        opened = opening.result()  # SystemExit(3) when the store or the index could not be opened
        if opened is None:
            return 0
        source, index = opened
        indexer = Indexer(
            source, _NoWakes(), index, Limits(search_rescan_s=config.rescan_s), NodeMetrics(), config.holder
        )
        target.indexer = indexer
        await indexer.start()
        reporting = loop.create_task(_report(indexer))
        try:
            await stop.wait()
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, return_exceptions=True)
            await indexer.aclose()  # the lease given up (a shared index), waiting at most a second
            await _bounded(index.aclose(), "search index")
            await _bounded(source.aclose(), "store")
        return 0
    finally:
        stopping.cancel()
        listening.cancel()
        await asyncio.gather(stopping, listening, return_exceptions=True)


def main(argv: list[str]) -> int:
    config = msgspec.json.decode(argv[1], type=WorkerConfig)
    configure(config.log_level, config.log_format)
    return asyncio.run(run(config))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
