"""SIGTERM: every request in flight gets its answer (its ack, or 4509 if it cannot finish in time) before
the 4509 close frame, new frames are refused with 4509, and the process is gone within a bound.

The slow case is made real: the node's Redis is behind a TCP proxy that the test blackholes, so the
sends in flight hang in the store when the signal comes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import aiohttp

from roost.protocol import frames

from .procs import ServerProcess, node_behind_proxy

BOUND_S = 3.0
"""SIGTERM to exit: the drain's 1.5 s, the close, and the process's own teardown."""


async def login(http: aiohttp.ClientSession, node: ServerProcess, room: str) -> str:
    async with http.post(node.url + "/api/login", json={"name": "alice"}) as resp:
        token: str = (await resp.json())["token"]
    async with http.post(node.url + "/api/rooms", json={"room": room}, headers={"Authorization": f"Bearer {token}"}):
        pass
    return token


async def answers_until_close(ws: aiohttp.ClientWebSocketResponse) -> list[dict]:  # type: ignore[type-arg]
    got = []
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            got += [json.loads(part) for part in frames.split(msg.data)]
    return got


async def test_in_flight_sends_are_answered_before_the_close(tmp_path: Path) -> None:
    """[R-CODE-20] On shutdown every request in flight is answered first (here: a 4509 error frame with its
    ``ref``, as none can finish), then the connection is closed with 4509."""
    async with node_behind_proxy(tmp_path) as (node, proxy), aiohttp.ClientSession() as http:
        token = await login(http, node, "r")
        ws = await http.ws_connect(node.ws_url)
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        assert json.loads((await ws.receive()).data)["type"] == "welcome"
        proxy.blackhole()
        for i in range(5):
            send = {"type": "send", "room": "r", "cmid": f"c{i}", "body": "hi", "id": f"s{i}"}
            await ws.send_str(json.dumps(send))
        # A ping is answered once every frame before it has been read and handed on (pings do not wait for
        # sends): then the five sends are the node's, waiting on a store that does not answer.
        await ws.send_str(json.dumps({"type": "ping", "id": "p"}))
        early: list[dict] = []  # type: ignore[type-arg]
        while not any(f.get("ref") == "p" for f in early):
            early += [json.loads(part) for part in frames.split((await ws.receive(timeout=5)).data)]
        t0 = time.monotonic()
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        got = early + await asyncio.wait_for(answers_until_close(ws), BOUND_S)
        assert ws.close_code == 4509
        answered = {f["ref"]: f for f in got if f.get("type") in ("ack", "error") and f.get("ref")}
        assert set(answered) == {f"s{i}" for i in range(5)}, got
        assert all(f["type"] == "error" and f["code"] == 4509 for f in answered.values()), got
        assert node.proc.wait(timeout=BOUND_S) == 0
        assert time.monotonic() - t0 < BOUND_S


async def test_a_burst_in_flight_at_sigterm_is_acked_or_refused_and_acks_are_kept(tmp_path: Path) -> None:
    """[R-CODE-20] A burst of sends at SIGTERM: every send the server read is answered, its ack or a 4509 error
    frame with its ``ref``, and every ack is kept."""
    (tmp_path / "data").mkdir()
    node = ServerProcess(tmp_path / "data")
    await node.start()
    async with aiohttp.ClientSession() as http:
        token = await login(http, node, "r")
        ws = await http.ws_connect(node.ws_url)
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        assert json.loads((await ws.receive()).data)["type"] == "welcome"
        for i in range(300):
            await ws.send_str(json.dumps({"type": "send", "room": "r", "cmid": f"c{i}", "body": "hi", "id": f"s{i}"}))
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        got = await asyncio.wait_for(answers_until_close(ws), BOUND_S + 2)
        assert node.proc.wait(timeout=BOUND_S) == 0
    answered = {f["ref"]: f for f in got if f.get("type") in ("ack", "error") and f.get("ref")}
    # Every send the server read was answered; ones it never read (the socket closed first) the client
    # still holds in its outbox. So: the answered ids are a prefix s0..sN, none missing in between.
    ids = sorted(int(i.removeprefix("s")) for i in answered)
    assert ids == list(range(len(ids))) and ids, got[-3:]
    assert all(f["type"] == "ack" or f["code"] == 4509 for f in answered.values())
    acked = {f["cmid"] for f in answered.values() if f["type"] == "ack"}

    restarted = ServerProcess(tmp_path / "data", node.port)
    await restarted.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        url = restarted.url + "/api/rooms/r/messages?after=0&limit=500"
        async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as resp:
            stored = {m["cmid"] for m in (await resp.json())["messages"] if m["kind"] == "text"}
        assert acked <= stored
    finally:
        restarted.stop()
