"""The parent of ``roost serve --workers N``: bind once, start N workers, forward signals, restart the dead.

* Start: the sockets are bound (sockets.py) and the real address printed once (``roost: listening on ...``); with
  the development login, the data directory's token secret is made here first, so the workers, which read it at
  their start, cannot each make a different one. Each worker is ``python -m roost.workers.child`` in a session of
  its own (a terminal's Ctrl-C reaches the parent only, which then stops the workers in order), with the sockets in
  ``pass_fds`` and one JSON line on its stdin: the resolved settings (secrets included: never on a command line)
  and its place. The parent keeps that pipe open; its end tells the worker the parent is gone (child.py).
* SIGTERM or SIGINT: the parent closes its own copies of the sockets and sends SIGTERM to every worker, which
  drains as a single node does (answers what is in flight, closes its clients with 4509); it waits for them, up to
  ``STOP_S`` before SIGKILL, and exits 0 when each stopped cleanly.
* A worker that ends without being asked: one WARNING line, and it is started again after a backoff
  (``FIRST_BACKOFF_S`` doubling to ``MAX_BACKOFF_S``). A worker that had run for ``STABLE_S`` starts a new count;
  one that ends ``GIVE_UP_AFTER`` times in a row sooner than that makes the parent stop the others and exit 1. A
  worker that ends with status 2 refused its settings (it printed why): restarting cannot help, so the parent
  stops the others and exits 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from ..auth import load_or_create_secret
from ..children import child_env
from ..config import Settings
from .child import USAGE, Handoff
from .sockets import Listeners, bind

__all__ = ["GIVE_UP_AFTER", "STABLE_S", "supervise", "worker_settings"]

log = logging.getLogger("roost.workers")

FIRST_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 10.0
STABLE_S: Final = 30.0
"""A worker that ran this long before it ended starts a new count of quick deaths."""
GIVE_UP_AFTER: Final = 5
"""Deaths in a row, each sooner than ``STABLE_S`` after its start, after which the parent gives up."""
STOP_S: Final = 30.0
"""How long the parent waits for its workers to drain (a node stops within about 3 s) before it kills them."""


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    def __init__(self, settings: Settings, listeners: Listeners, log_level: str, log_format: str) -> None:
        self.settings = settings
        self.listeners = listeners
        self.log_level = log_level
        self.log_format = log_format
        self.workers = [_Worker(i) for i in range(settings.workers)]
        self.stopping = asyncio.Event()
        self.status = 0
        """The parent's exit status: 0, or why it stopped on its own (1: a worker kept dying, 2: refused)."""

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        watching = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
        await self.stopping.wait()
        self.listeners.close()  # the workers' copies stay open until each has drained
        codes = await asyncio.gather(*watching)
        log.info("workers: stopped (%s)", ", ".join(f"worker {i}: {_how(c)}" for i, c in enumerate(codes)))
        if self.status == 0 and any(code != 0 for code in codes):
            self.status = 1
        return self.status

    async def _keep(self, worker: _Worker) -> int:
        """Run worker ``index`` until the parent stops; its last exit status."""
        backoff = FIRST_BACKOFF_S
        while True:
            pid: int | str = "-"
            try:
                process = await self._start(worker)
            except OSError as exc:
                code: int | None = None
                log.warning("workers: worker %d could not be started: %s", worker.index, exc)
            else:
                pid = process.pid
                log.info("workers: worker %d started (pid %d)", worker.index, pid)
                code = await self._wait(process)
                worker.process = None
            if self.stopping.is_set():
                # SIGTERM before its handlers were set (still importing) ends a worker at once: as asked.
                return 0 if code in (0, -signal.SIGTERM) else code if code is not None else 1
            if code == USAGE:
                log.error(
                    "workers: worker %d refused its settings (exit status 2): stopping every worker", worker.index
                )
                self._give_up(USAGE)
                return code
            ran = time.monotonic() - worker.started
            if ran >= STABLE_S:
                worker.quick_deaths, backoff = 0, FIRST_BACKOFF_S
            worker.quick_deaths += 1
            if worker.quick_deaths >= GIVE_UP_AFTER:
                log.error(
                    "workers: worker %d ended %d times in a row within %.0f s of its start (last: %s): stopping"
                    " every worker",
                    worker.index, worker.quick_deaths, STABLE_S, _how(code),
                )  # fmt: skip
                self._give_up(1)
                return code if code is not None else 1
            log.warning(
                "workers: worker %d (pid %s) ended unexpectedly (%s) after %.1f s; restarting it in %.1f s",
                worker.index, pid, _how(code), ran, backoff,
            )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            if self.stopping.is_set():
                return code if code is not None else 1
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _give_up(self, status: int) -> None:
        if self.status == 0:
            self.status = status
        self.stopping.set()

    async def _start(self, worker: _Worker) -> asyncio.subprocess.Process:
        handoff = Handoff(
            settings=worker_settings(self.settings, worker.index),
            place=self.listeners.handed(worker.index, len(self.workers)),
            log_level=self.log_level,
            log_format=self.log_format,
            parent=os.getpid(),
        )
        worker.started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "roost.workers.child",
            stdin=asyncio.subprocess.PIPE,
            pass_fds=self.listeners.fds(worker.index),
            start_new_session=True,
            env=child_env(),
        )
        worker.process = process
        assert process.stdin is not None
        process.stdin.write(msgspec.json.encode(handoff) + b"\n")  # the pipe stays open: its end is the parent's
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        return process

    async def _wait(self, process: asyncio.subprocess.Process) -> int:
        """The worker's exit status; once the parent stops, bounded by ``STOP_S`` (then SIGKILL)."""
        waiting = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if waiting.done():
            return waiting.result()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # drain as a single node does
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), STOP_S)
        except TimeoutError:
            log.warning("workers: a worker (pid %d) did not stop within %.0f s: killing it", process.pid, STOP_S)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await waiting


def _how(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index``: the parent's, but for what a node keeps on its own disk apart from the
    shared data directory. That is the SQLite search index: each worker indexes every room into a file of its own
    (``DATA_DIR/worker-<i>/search.sqlite3``), as N nodes each do; a PostgreSQL index is shared (one worker indexes
    at a time, by lease). Uploads (local blobs) and the token secret stay shared: every worker serves every file."""
    search = settings.search
    if search in (None, "") and (settings.store or "").startswith(("postgresql://", "postgres://")):
        return settings  # the PostgreSQL store's own database: shared
    if search in (None, "", "sqlite") or (search or "").startswith("sqlite://"):
        folder = (search or "").removeprefix("sqlite").removeprefix("://") or settings.data_dir
        return dataclasses.replace(settings, search=f"sqlite://{Path(folder) / f'worker-{index}'}")
    return settings


def _development_secret(settings: Settings) -> None:
    """With no key configured every node signs with the data directory's secret: made here, before the workers, so
    that they all read the same one (each making its own at once would void the others' tokens)."""
    if settings.secret is None and settings.public_key_file is None and settings.jwks_file is None:
        load_or_create_secret(Path(settings.data_dir))


async def supervise(settings: Settings, log_level: str, log_format: str) -> int:
    """Bind, announce, run the workers until a signal (or until one keeps dying); the parent's exit status.
    ``OSError`` when a socket cannot be bound, before anything is started."""
    listeners = bind(settings)
    try:
        _development_secret(settings)
    except BaseException:
        listeners.close()
        raise
    host = settings.host
    print(f"roost: listening on http://{host}:{listeners.port} ({settings.workers} workers)", flush=True)
    if listeners.ws_port is not None:
        print(f"roost: WebSocket (picows) on ws://{host}:{listeners.ws_port}/ws", flush=True)
    for i, port in enumerate(listeners.metrics_ports):
        print(f"roost: worker {i}: /livez, /readyz and /metrics on http://{host}:{port}", flush=True)
    log.info("workers: %d workers on http://%s:%d (pid %d supervises them)", settings.workers, host, listeners.port,
             os.getpid())  # fmt: skip
    # Each worker learns the real ports: port 0 was resolved here, once.
    resolved = dataclasses.replace(settings, port=listeners.port, ws_port=listeners.ws_port)
    return await Supervisor(resolved, listeners, log_level, log_format).run()
