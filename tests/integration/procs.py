"""Real `roost serve` processes for tests that kill them. Each is stopped by its own pid.

``ServerProcess(data_dir, port, *extra)`` passes ``extra`` to ``roost serve`` (``--store``, ``--bus``,
``--secret``); ``start_nodes`` runs several nodes over one engine, and ``issue_token`` makes a token with
``roost token --secret`` (every node of a deployment shares the secret). ``ROOST_TEST_WS_TRANSPORT=picows`` (as in
tests/conftest.py) serves ``/ws`` with picows on a port of its own (``ws_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from roost.chaos.infra import Process, free_port, wait_healthy, wait_until
from roost.chaos.tcpproxy import TcpProxy

from ..backends import REDIS, _clean_redis


class ServerProcess(Process):
    """A ``roost serve`` on the embedded default unless ``extra`` names other engines."""

    def __init__(self, data_dir: Path, port: int | None = None, *extra: str) -> None:
        port = port or free_port()
        self.data_dir = data_dir
        self.extra = extra
        self.ws_port = port
        if os.environ.get("ROOST_TEST_WS_TRANSPORT", "aiohttp") == "picows":
            self.ws_port = free_port()
            extra = ("--ws-transport", "picows", "--ws-port", str(self.ws_port), *extra)
        argv = [sys.executable, "-m", "roost", "serve", "--port", str(port), "--data-dir", str(data_dir), *extra]
        super().__init__(f"roost-{port}", argv, data_dir.parent / f"server-{port}.log", port)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        self.spawn(dict(os.environ, PYTHONUNBUFFERED="1"))
        await wait_healthy(self, self.url, timeout)


async def start_nodes(base: Path, count: int, *extra: str) -> list[ServerProcess]:
    """``count`` nodes, each with its own data dir, started concurrently with the same ``extra`` flags."""
    nodes = [ServerProcess(base / f"node{i}" / "data", None, *extra) for i in range(count)]
    for node in nodes:
        node.data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        await asyncio.gather(*(node.start() for node in nodes))
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


async def issue_token(user: str, data_dir: Path, secret: str) -> str:
    """``python -m roost token USER --data-dir DIR --secret S``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roost",
        "token",
        user,
        "--data-dir",
        str(data_dir),
        "--secret",
        secret,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"roost token failed: {err.decode()}")
    return out.decode().strip()


@contextlib.asynccontextmanager
async def node_behind_proxy(tmp_path: Path, *extra: str) -> AsyncIterator[tuple[ServerProcess, TcpProxy]]:
    """A ``roost serve`` whose Redis (the machine's, under a fresh prefix) is reached only through a
    ``TcpProxy`` the test cuts or blackholes; healed, stopped and cleaned afterwards."""
    ns = "p" + uuid.uuid4().hex[:10]
    target = urlsplit(REDIS)
    proxy = await TcpProxy(target.port or 6379, target.hostname or "127.0.0.1").start()
    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data", None, "--store", f"redis://{proxy.host}:{proxy.port}/0?prefix={ns}", *extra)
    try:
        await node.start()
        yield node, proxy
    finally:
        proxy.heal()
        node.stop()
        await proxy.aclose()
        await _clean_redis(REDIS, ns)


class WorkersProcess(Process):
    """``roost serve --workers N --port 0 --metrics-port-base 0`` (roost/workers/): what it prints says the real
    port and each worker's own /readyz and /metrics port, and its log which pid each worker has now."""

    def __init__(self, data_dir: Path, workers: int, *extra: str) -> None:
        self.data_dir = data_dir
        self.workers = workers
        argv = [sys.executable, "-m", "roost", "serve", "--workers", str(workers), "--port", "0"]
        argv += ["--metrics-port-base", "0", "--data-dir", str(data_dir), *extra]
        super().__init__("roost-workers", argv, data_dir.parent / "workers.log", 0)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def announced(self) -> bool:
        """The parent printed its ports (then ``port``, ``worker_urls`` and ``ws_url`` are known)."""
        text = self.text()
        found = re.search(r"^roost: listening on http://127\.0\.0\.1:(\d+) \(\d+ workers\)$", text, re.M)
        if found is None or len(self.worker_urls) < self.workers:
            return False
        self.port = int(found.group(1))
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        found = re.search(r"^roost: WebSocket \(picows\) on (ws://\S+)$", self.text(), re.M)
        return found.group(1) if found else f"ws://127.0.0.1:{self.port}/ws"

    @property
    def worker_urls(self) -> list[str]:
        """Worker i's own /livez, /readyz and /metrics (``--metrics-port-base 0``: ports the parent chose)."""
        found = re.findall(r"^roost: worker (\d+): /livez, /readyz and /metrics on (http://\S+)$", self.text(), re.M)
        return [url for _, url in sorted(found, key=lambda f: int(f[0]))]

    def pids(self) -> dict[int, int]:
        """Worker index -> the pid of its latest start."""
        return {int(i): int(pid) for i, pid in re.findall(r"workers: worker (\d+) started \(pid (\d+)\)", self.text())}

    async def start(self, timeout: float = 30.0) -> None:
        self.spawn(dict(os.environ, PYTHONUNBUFFERED="1"))
        await wait_until("the parent's ports in its output", lambda: self.announced() or not self.running, timeout)
        if not self.running:
            raise RuntimeError(f"roost serve --workers exited: {self.text()[-2000:]}")
        for url in self.worker_urls:
            await wait_healthy(self, url, timeout)
