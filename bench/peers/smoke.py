"""Smoke test of the peer servers: tiny, one room, a handful of messages; not a load test.

    .venv/bin/python bench/peers/smoke.py [bare_aiohttp bare_picows socketio_node socketio_py]

For each server: start it on a free port (socketio_node needs ``bash bench/peers/socketio_node/install.sh`` first),
connect 3 clients into one room with aiohttp's WebSocket client (no compression offered), send 5 messages (rotating
senders), check that every client received all 5 (raw text unchanged for ``bare``), and, for the Socket.IO servers, that
every sender got an ack for each of its messages; then SIGTERM the server by pid and check that it exits with
status 0 and printed nothing. The Socket.IO clients speak Engine.IO v4 / Socket.IO v5 text packets by hand.
Prints one PASS/FAIL line per server; exits 1 if any failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import redis

HERE = Path(__file__).resolve().parent
PY = sys.executable
REDIS_URL = os.environ.get("ROOST_BENCH_REDIS", "redis://127.0.0.1:6379")
CLIENTS = 3
MESSAGES = 5
TIMEOUT = 10.0

Check = Callable[[int], Coroutine[Any, Any, str]]  # one wire shape's client-side check, given the port


class Fail(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Fail(f"server exited early with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise Fail(f"port {port} not open after {timeout:.0f} s")


# --- wire shape "bare" ------------------------------------------------------------------------------------------


async def check_bare(port: int) -> str:
    room = f"r-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:
        clients = [  # client 0 sees PONG frames itself (autoping=False): it checks the server answers a PING
            await session.ws_connect(f"ws://127.0.0.1:{port}/ws?room={room}", compress=0, autoping=i > 0)
            for i in range(CLIENTS)
        ]
        await asyncio.sleep(0.2)  # the server registers a member right after its handshake
        for n in range(MESSAGES):  # one at a time: senders rotate, and two connections are not ordered
            text = json.dumps({"room": room, "seq": n, "t": time.monotonic_ns(), "body": f"smoke {n} " + "x" * 150})
            await clients[n % CLIENTS].send_str(text)
            for i, ws in enumerate(clients):
                msg = await ws.receive(timeout=TIMEOUT)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise Fail(f"client {i}: unexpected frame {msg.type.name} instead of message {n}")
                if msg.data != text:
                    raise Fail(f"client {i} got {msg.data!r}, expected {text!r}")
        await clients[0].ping(b"smoke")
        pong = await clients[0].receive(timeout=TIMEOUT)
        if pong.type is not aiohttp.WSMsgType.PONG or pong.data != b"smoke":
            raise Fail(f"PING answered with {pong.type.name} {pong.data!r}")
        # a clean close handshake, initiated by the client
        for ws in clients:
            await ws.close()
            if ws.close_code != 1000:
                raise Fail(f"close handshake answered with {ws.close_code}")
    return f"{CLIENTS} clients x {MESSAGES} messages, raw text unchanged; PING answered; client close answered 1000"


# --- wire shape "socketio" --------------------------------------------------------------------------------------


class SioClient:
    """Engine.IO v4 + Socket.IO v5 over a raw WebSocket, text packets only."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[list[Any]] = []  # decoded 42[...] arrays
        self.acks: dict[int, asyncio.Future[str]] = {}
        self.next_id = 1
        self.got_events = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.pings = 0

    async def handshake(self) -> tuple[dict[str, Any], dict[str, Any]]:
        first = await self.ws.receive_str(timeout=TIMEOUT)
        if not first.startswith("0{"):
            raise Fail(f"expected Engine.IO open packet, got {first!r}")
        await self.ws.send_str("40")
        second = await self.ws.receive_str(timeout=TIMEOUT)
        if not second.startswith("40{"):
            raise Fail(f"expected Socket.IO connect packet, got {second!r}")
        self.reader = asyncio.create_task(self.read())
        return json.loads(first[1:]), json.loads(second[2:])

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data: str = msg.data
            if data == "2":  # Engine.IO ping
                self.pings += 1
                await self.ws.send_str("3")
            elif data.startswith("43"):  # ack: 43<id>[...]
                i = 2
                while i < len(data) and data[i].isdigit():
                    i += 1
                fut = self.acks.get(int(data[2:i]))
                if fut is not None and not fut.done():
                    fut.set_result(data)
            elif data.startswith("42"):
                self.events.append(json.loads(data[2:]))
                self.got_events.set()

    async def emit_with_ack(self, event: str, arg: Any) -> str:
        ack_id = self.next_id
        self.next_id += 1
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.acks[ack_id] = fut
        await self.ws.send_str(f"42{ack_id}" + json.dumps([event, arg], separators=(",", ":")))
        return await asyncio.wait_for(fut, TIMEOUT)

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


async def check_socketio(port: int) -> str:
    room = f"r-{uuid.uuid4().hex[:8]}"
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session:
        clients = [SioClient(await session.ws_connect(url, compress=0, autoping=True)) for _ in range(CLIENTS)]
        opened = [await c.handshake() for c in clients]
        eio_open, sio_connect = opened[0]
        for c in clients:
            ack = await c.emit_with_ack("join", room)
            if ack not in ("431[]", "431[true]"):
                raise Fail(f"join ack {ack!r}")
        sent = []
        acks = []
        for n in range(MESSAGES):
            data = {"room": room, "t": time.monotonic_ns(), "body": f"smoke {n} " + "x" * 150}
            sent.append(data)
            sender = clients[n % CLIENTS]
            ack = await sender.emit_with_ack("msg", data)
            acks.append(ack)
            if ack != f"43{sender.next_id - 1}[]":
                raise Fail(f"msg ack {ack!r}, expected 43{sender.next_id - 1}[]")

        async def all_in(c: SioClient) -> None:
            while len(c.events) < MESSAGES:
                c.got_events.clear()
                await c.got_events.wait()

        await asyncio.wait_for(asyncio.gather(*(all_in(c) for c in clients)), TIMEOUT)
        extras = set()
        for i, c in enumerate(clients):
            if len(c.events) != MESSAGES:
                raise Fail(f"client {i} got {len(c.events)} events, expected {MESSAGES}")
            for ev in c.events:
                if ev[0] != "msg":
                    raise Fail(f"client {i} got event {ev[0]!r}")
                extras.add(len(ev) - 2)
            if [ev[1] for ev in c.events] != sent:
                raise Fail(f"client {i} got {[ev[1] for ev in c.events]!r}, expected {sent!r}")
        for c in clients:
            await c.close()
    shape = '42["msg",{...}]' if extras == {0} else f'42["msg",{{...}},<{sorted(extras)} extra element(s)>]'
    return (
        f"{CLIENTS} clients x {MESSAGES} messages in order, join+msg acks ok; broadcast shape {shape}; "
        f"open pingInterval={eio_open.get('pingInterval')} pingTimeout={eio_open.get('pingTimeout')} "
        f"upgrades={eio_open.get('upgrades')}; connect keys={sorted(sio_connect)}"
    )


# --- runner -----------------------------------------------------------------------------------------------------


def servers(tag: str) -> dict[str, tuple[Callable[[int], list[str]], Check]]:
    node_dir = HERE / "socketio_node"
    return {
        "bare_aiohttp": (lambda p: [PY, str(HERE / "bare_aiohttp.py"), "--port", str(p)], check_bare),
        "bare_picows": (lambda p: [PY, str(HERE / "bare_picows.py"), "--port", str(p)], check_bare),
        "socketio_node": (
            lambda p: ["node", str(node_dir / "server.js"), "--port", str(p), "--redis", REDIS_URL, "--stream", tag],
            check_socketio,
        ),
        "socketio_py": (
            lambda p: [PY, str(HERE / "socketio_py.py"), "--port", str(p), "--redis", REDIS_URL, "--channel", tag],
            check_socketio,
        ),
    }


def run_one(name: str, argv: list[str], check: Check, port: int) -> tuple[bool, str]:
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            detail: str = asyncio.run(check(port))
            ok = True
        except (Fail, OSError, TimeoutError, aiohttp.ClientError) as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            try:
                code: int | None = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
        out.seek(0)
        printed = out.read().decode(errors="replace").strip()
    if code != 0:
        ok, detail = False, f"{detail}; exit status after SIGTERM: {code}"
    if printed:
        ok, detail = False, f"{detail}; server printed: {printed[:500]!r}"
    return ok, detail


def main() -> int:
    tag = f"roost-smoke-{uuid.uuid4().hex[:8]}"
    table = servers(tag)
    names = sys.argv[1:] or list(table)
    failed = 0
    try:
        for name in names:
            make_argv, check = table[name]
            port = free_port()
            started = time.monotonic()
            ok, detail = run_one(name, make_argv(port), check, port)
            failed += not ok
            print(f"{'PASS' if ok else 'FAIL'} {name} ({time.monotonic() - started:.1f} s): {detail}", flush=True)
    finally:
        # the Node peer's Redis stream (the Python peer's pub/sub channel leaves nothing behind)
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(REDIS_URL).delete(tag)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
