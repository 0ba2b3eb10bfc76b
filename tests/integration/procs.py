"""Real `roost serve` processes for tests that kill them. Each is stopped by its own pid.

``ServerProcess(data_dir, port, *extra)`` passes ``extra`` to ``roost serve`` (``--store``, ``--bus``,
``--secret``); ``start_nodes`` runs several nodes over one engine, and ``issue_token`` makes a token with
``roost token --secret`` (every node of a deployment shares the secret).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, port: int | None = None, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "roost",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"server did not become healthy: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


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
