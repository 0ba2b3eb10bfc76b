"""A node started before its broker listens at once (``/livez`` 200, ``/readyz`` 503 with the cause, every
other route 503 + 4504), logs one line per attempt with a capped backoff, and serves as soon as the
broker comes up, on the same port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from roost.chaos.infra import wait_until
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

        await wait_until("a first attempt at the broker", lambda: "engines do not answer" in node.log.read_text())
        await asyncio.sleep(2.0)  # the subject: the attempts of 2 s (0, 0.5, 1.5 s), not ten at 200 ms
        attempts = [line for line in node.log.read_text().splitlines() if "engines do not answer" in line]
        assert 2 <= len(attempts) <= 5, attempts

        nats.start()

        async def ready() -> bool:
            try:
                return (await get(node.url + "/readyz"))[0] == 200
            except aiohttp.ClientConnectionError:  # the swap: the starting listener closed, the real one not yet open
                return False

        await wait_until("the node up after its broker", ready, 15)
        login = {"name": "alice"}
        async with aiohttp.ClientSession() as http, http.post(node.url + "/api/login", json=login) as resp:
            token = (await resp.json())["token"]
        async with connect(node.ws_url, token) as alice:
            await alice.create("r")
            assert (await alice.send("r", "hello")).seq == 2
    finally:
        node.stop()
        nats.kill()
