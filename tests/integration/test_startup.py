"""A node started before its broker listens at once (``/livez`` 200, ``/readyz`` 503 with the cause, every
other route 503 + 4504), logs one line per attempt with a capped backoff, and serves as soon as the
broker comes up, on the same port."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from roost.client import connect

from ..clusters import NatsServer
from .procs import ServerProcess


async def get(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def test_a_node_started_before_its_broker_listens_says_why_and_serves_when_it_comes(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data", None, "--store", f"{nats.url}?prefix=startup")
    node.spawn()
    try:
        await node.wait_port(10)
        assert (await get(node.url + "/livez"))[0] == 200
        status, body = await get(node.url + "/readyz")
        assert status == 503 and body["ready"] is False
        assert "nats: no server answers" in body["starting"]
        status, body = await get(node.url + "/api/rooms")
        assert status == 503 and body["error"]["code"] == 4504

        await asyncio.sleep(3.0)
        attempts = [line for line in node.log.read_text().splitlines() if "engines do not answer" in line]
        assert 2 <= len(attempts) <= 5, attempts  # 0.5, 1, 2 s apart: not one every 200 ms

        nats.start()
        t0 = time.monotonic()
        while (await get(node.url + "/readyz"))[0] != 200:
            assert time.monotonic() - t0 < 15, "the node never came up after its broker did"
            await asyncio.sleep(0.2)
        login = {"name": "alice"}
        async with aiohttp.ClientSession() as http, http.post(node.url + "/api/login", json=login) as resp:
            token = (await resp.json())["token"]
        async with connect(node.ws_url, token) as alice:
            await alice.create("r")
            assert (await alice.send("r", "hello")).seq == 2
    finally:
        node.stop()
        nats.kill()
