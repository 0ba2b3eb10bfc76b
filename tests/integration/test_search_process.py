"""The search indexer's child process (search/process.py, search/worker.py): killed with SIGKILL, it is restarted by
the node, which shows it down meanwhile, and indexing resumes from the index's cursors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import msgspec

from roost.config import Settings
from roost.node import Node, serve
from roost.search.process import DOWN, IndexerProcess
from roost.search.worker import WorkerConfig

from ..conftest import with_limits
from .test_search import _count, ask, until
from .test_send import make_room


async def _scrape(node: Node) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as r:
        text = await r.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("roost_search_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def _warnings(node: Node) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/readyz") as r:
        answer = await r.json()
    warnings: list[str] = answer["warnings"]
    return warnings


async def test_a_killed_indexer_process_is_restarted_and_resumes_from_its_cursors(embedded_settings: Settings) -> None:
    """[R-SEARCH-7] The indexer runs in a child process of the node. Killed with SIGKILL, it is shown down
    (``roost_search_indexer_up`` and ``roost_search_indexing`` 0, ``/readyz`` still ready and naming it in its
    warnings), the node starts it again, and the new process resumes from the index's cursors: what was sent meanwhile
    is found, nothing is indexed twice (the node's count of indexed texts is exactly the texts sent)."""
    settings = with_limits(embedded_settings, search_rescan_s=0.1, searches_per_s=1e6)
    async with serve(settings) as node:
        indexer = node.indexer
        assert isinstance(indexer, IndexerProcess)
        await make_room(node, "alice", "r")
        for i in range(30):
            await node.service.send("alice", "r", f"c{i}", f"apple number {i}")
        await until(lambda: _count(node, "alice", "apple", 30))
        await until(_is(lambda: indexer.indexed == 30 and indexer.up))
        metrics = await _scrape(node)
        assert metrics["roost_search_indexer_up"] == 1 and metrics["roost_search_indexing"] == 1
        first = indexer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)

        async def shown_down() -> bool:
            """Metrics and /readyz in one poll: the restart comes after a backoff of a second."""
            metrics = await _scrape(node)
            down = metrics["roost_search_indexer_up"] == 0 and metrics["roost_search_indexing"] == 0
            return down and DOWN in await _warnings(node) and node.readiness.ready  # chat does not depend on search

        await until(shown_down)
        for i in range(30, 40):
            await node.service.send("alice", "r", f"c{i}", f"apple number {i}")
        await until(lambda: _count(node, "alice", "apple", 40))
        await until(_is(lambda: indexer.up and indexer.indexed == 40))
        assert indexer.pid not in (None, first) and indexer.restarts == 1
        assert DOWN not in await _warnings(node)
        assert (await _scrape(node))["roost_search_indexer_up"] == 1
        _, answer = await ask(node, node.tokens.issue("alice"), q="apple", limit=100)
        seqs = [r["seq"] for r in answer["results"]]
        assert len(seqs) == len(set(seqs)) == 40 and answer["next"] is None
        assert indexer.indexed == 40


async def test_the_indexer_can_run_in_the_nodes_process(embedded_settings: Settings) -> None:
    """[R-SEARCH-7] ``search_in_process``: no child process; the node's own indexer keeps the index in step."""
    settings = with_limits(embedded_settings, search_rescan_s=0.1, searches_per_s=1e6)
    async with serve(replace(settings, search_in_process=True)) as node:
        assert node.indexer is not None and not isinstance(node.indexer, IndexerProcess)
        await make_room(node, "alice", "r")
        await node.service.send("alice", "r", "c1", "pear")
        await until(lambda: _count(node, "alice", "pear", 1))


def _is(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def poll() -> bool:
        return check()

    return poll


async def test_a_worker_opening_an_engine_that_does_not_answer_stops_with_its_node(tmp_path: Path) -> None:
    """An indexer process still opening its store (a server that accepts and never answers) stops at the end of its
    stdin, and dies when its parent is killed (``PR_SET_PDEATHSIG``): a gone node leaves no indexer behind."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # connections are accepted by the kernel and never answered
    port = hole.getsockname()[1]
    config = WorkerConfig(
        store=f"postgresql://postgres@127.0.0.1:{port}/x",
        data_dir=str(tmp_path),
        search=None,
        rescan_s=5.0,
        nice=0,
        holder="t.1",
    )
    argv = [sys.executable, "-m", "roost.search.worker", msgspec.json.encode(config).decode()]
    try:
        worker = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, start_new_session=True)
        await asyncio.sleep(1.5)  # the subject: it is opening the store now
        assert worker.returncode is None
        assert worker.stdin is not None
        worker.stdin.close()
        assert await asyncio.wait_for(worker.wait(), 5.0) == 0
        # Its parent killed: a shell that starts it (stdin held open by another process) and is killed with -9.
        script = f"sleep 60 | {shlex.join(argv)} & echo $!; sleep 60"
        parent = await asyncio.create_subprocess_exec(
            "bash", "-c", script, stdout=asyncio.subprocess.PIPE, start_new_session=True
        )
        assert parent.stdout is not None
        child = int(await asyncio.wait_for(parent.stdout.readline(), 10.0))
        await asyncio.sleep(1.5)  # the subject: opening the store
        parent.kill()
        await parent.wait()
        deadline = asyncio.get_running_loop().time() + 5.0
        while _alive(child):
            assert asyncio.get_running_loop().time() < deadline, "the worker outlived its parent"
            await asyncio.sleep(0.05)  # a wait helper's poll
    finally:
        hole.close()
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.killpg(parent.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (a zombie left for init to reap has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
