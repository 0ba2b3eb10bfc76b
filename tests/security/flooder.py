"""The attacker of the flood test: one user flooding one frame type as fast as it can, in its own process.

Run as ``python flooder.py WS_URL TOKEN KIND ROOM CONNECTIONS``. A separate process, so the flood is
really at the client's maximum rate (not throttled by sharing the server's event loop) and its own cost
lands on the other core, as a remote attacker's would. Each connection writes frames without waiting for
answers, reads and drops whatever comes back, and reconnects at once when the server closes it. It prints
``ready`` once every connection is authenticated; on stdin's end it stops and prints one JSON line of
counts (frames written, server frames read, closes by code, its own CPU seconds).

It runs at the lowest CPU priority (nice 19). A remote attacker does not share the server's machine; this
one does, and writing frames at full speed (each reconnect finds megabytes of fresh socket buffers to fill)
takes a whole core of the two, which would slow the server through the scheduler whatever the server does.
At nice 19 it still floods with every cycle the machine has spare, and the test measures the server's
defences rather than the kernel's sharing of one core.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator

import aiohttp


def frames_of(kind: str, room: str, tag: str) -> Iterator[str]:
    """The endless frame sequence of one flood kind (ids and cmids unique per connection)."""
    n = 0
    while True:
        n += 1
        i = f"{tag}{n}"
        if kind == "ping":
            yield json.dumps({"type": "ping", "id": i})
        elif kind == "typing":
            yield json.dumps({"type": "typing", "room": room})
        elif kind == "garbage":
            yield ("{" * 40, "not json at all", json.dumps({"type": "nope", "id": i}), '{"type":"send"}')[n % 4]
        elif kind == "subscribe":
            what = "subscribe" if n % 2 else "unsubscribe"
            yield json.dumps({"type": what, "room": room, "id": i})
        elif kind == "send":
            yield json.dumps({"type": "send", "room": room, "cmid": i, "body": "flood", "id": i})
        elif kind == "read":
            yield json.dumps({"type": "read", "room": room, "seq": n, "id": i})
        elif kind == "join-leave":
            yield json.dumps({"type": "leave" if n % 2 else "join", "room": room, "id": i})
        elif kind == "create":
            yield json.dumps({"type": "create", "room": f"{room}-{i}", "id": i})
        elif kind == "history":
            yield json.dumps({"type": "history", "room": room, "limit": 500, "id": i})
        else:
            raise SystemExit(f"unknown flood kind {kind!r}")


class Flood:
    def __init__(self, url: str, token: str, kind: str, room: str) -> None:
        self.url, self.token, self.kind, self.room = url, token, kind, room
        self.written = 0
        self.received = 0
        self.closes: Counter[str] = Counter()
        self.stop = asyncio.Event()

    async def connect(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        ws = await http.ws_connect(self.url, max_msg_size=0, autoping=True)
        await ws.send_str(json.dumps({"type": "auth", "token": self.token}))
        first = await ws.receive(timeout=10)
        if first.type is not aiohttp.WSMsgType.TEXT or '"welcome"' not in first.data:
            raise ConnectionError(f"refused: {first.data!r}")
        return ws

    async def drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.received += msg.data.count("\n") + 1

    async def run(self, tag: str, http: aiohttp.ClientSession, ready: asyncio.Event, first: asyncio.Event) -> None:
        frames = frames_of(self.kind, self.room, tag)
        ws = await self.connect(http)
        ready.set()
        await first.wait()
        while not self.stop.is_set():
            reader = asyncio.create_task(self.drain(ws))
            try:
                while not self.stop.is_set() and not ws.closed:
                    for _ in range(64):
                        await ws.send_str(next(frames))
                        self.written += 1
                    await asyncio.sleep(0)  # let the reader run between batches
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                pass
            await ws.close()
            await reader
            self.closes[str(ws.close_code)] += 1
            if self.stop.is_set():
                break
            try:
                ws = await self.connect(http)
            except (ConnectionError, aiohttp.ClientError, TimeoutError):
                self.closes["refused"] += 1
                await asyncio.sleep(0.05)  # the subject: a refused reconnect is tried again at once, almost
                ws = await self.connect(http)


async def main(url: str, token: str, kind: str, room: str, connections: int) -> None:
    flood = Flood(url, token, kind, room)
    async with aiohttp.ClientSession() as http:
        readies = [asyncio.Event() for _ in range(connections)]
        go = asyncio.Event()
        tasks = [asyncio.create_task(flood.run(f"c{k}-", http, readies[k], go)) for k in range(connections)]
        await asyncio.gather(*(r.wait() for r in readies))
        print("ready", flush=True)
        go.set()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        flood.stop.set()
        await asyncio.wait(tasks, timeout=1)
        counts = {
            "written": flood.written,
            "received": flood.received,
            "closes": dict(flood.closes),
            "cpu_s": round(time.process_time(), 2),
        }
        print(json.dumps(counts), flush=True)
        os._exit(0)  # a connection blocked on a full socket is not waited for


if __name__ == "__main__":
    os.nice(19)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
