"""Server memory per WebSocket connection for each wire option (docs/benchmarks.md, "Wire options: memory per
connection").

For each variant a fresh ``roost serve`` (embedded, aiohttp, search off); ``--connections`` clients (aiohttp)
authenticate, create a room each and follow it, optionally send ``--traffic`` messages each (every one coming
back to its sender compressed, so the compressor's window fills as a busy connection's does); the server's RSS
after, minus before (a warm-up set of 20 connections opened first), over the number of connections.

Variants: ``json`` (the default wire), ``json, deflate offered, server off`` (the default server ignores the
offer), ``json+deflate`` (``--ws-compression deflate``, the client offering the 15-bit window every browser
offers), ``json+deflate, 12-bit window`` and ``9-bit window`` (the client asking ``server_max_window_bits``: what
``ws_deflate_window_bits`` saves) and ``msgpack``.

    PYTHONPATH=src .venv/bin/python bench/wire_memory.py --connections 400 --traffic 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from roost.auth import TokenAuthority
from roost.chaos.infra import HOST, free_port

VARIANTS: list[tuple[str, bool, int, str | None]] = [
    ("json", False, 0, None),
    ("json, deflate offered, server off", False, 15, None),
    ("json+deflate", True, 15, None),
    ("json+deflate, 12-bit window", True, 12, None),
    ("json+deflate, 9-bit window", True, 9, None),
    ("msgpack", False, 0, "roost.v1.msgpack"),
]
"""(name, server compresses, the client's offer: window bits or 0 for none, subprotocol)."""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def measure(server_deflate: bool, offer: int, protocol: str | None, connections: int, traffic: int) -> float:
    port, secret = free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="roost-wire-memory-") as data:
        argv = [sys.executable, "-m", "roost", "serve", "--port", str(port), "--data-dir", data, f"--secret={secret}"]
        argv += ["--log-level", "WARNING", "--search", "off", "--limit", "max_pending_per_source=0"]
        argv += ["--limit", "sends_per_s=100000", "--limit", "send_burst=100000"]
        argv += ["--limit", "membership_per_s=100000", "--limit", "membership_burst=100000"]
        if server_deflate:
            argv += ["--ws-compression", "deflate"]
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tokens = TokenAuthority(secret)
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                for _ in range(300):
                    try:
                        async with http.get(f"http://{HOST}:{port}/readyz") as answer:
                            if answer.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

                async def send(ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
                    if protocol:
                        await ws.send_bytes(msgspec.msgpack.encode(frame))
                    else:
                        await ws.send_str(json.dumps(frame))

                async def until(ws: aiohttp.ClientWebSocketResponse, *marks: bytes) -> None:
                    seen = b""
                    while not all(m in seen for m in marks):
                        msg = await ws.receive(timeout=30)
                        seen += msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()

                async def one(i: int) -> aiohttp.ClientWebSocketResponse:
                    ws = await http.ws_connect(
                        f"ws://{HOST}:{port}/ws", compress=offer, protocols=(protocol,) if protocol else ()
                    )
                    await send(ws, {"type": "auth", "token": tokens.issue(f"u{i}", ttl_s=3600)})
                    await until(ws, b"welcome")
                    await send(ws, {"type": "create", "room": f"r{i}", "id": "c"})
                    await until(ws, b"ok")
                    await send(ws, {"type": "subscribe", "room": f"r{i}", "id": "s"})
                    await until(ws, b"live")
                    return ws

                warm = [await one(10**6 + i) for i in range(20)]
                await asyncio.sleep(1.0)  # the warm-up's allocations settle before the baseline is read
                before = rss_kb(server.pid)
                opened: list[aiohttp.ClientWebSocketResponse] = []
                for first in range(0, connections, 50):
                    opened += await asyncio.gather(*(one(i) for i in range(first, min(connections, first + 50))))
                for k in range(traffic):

                    async def chat(i: int, ws: aiohttp.ClientWebSocketResponse, k: int = k) -> None:
                        body = f"message {k} of a busy connection, with some words to compress"
                        await send(ws, {"type": "send", "room": f"r{i}", "cmid": f"m{k}", "body": body, "id": "m"})
                        await until(ws, b"ack", f"message {k} ".encode())

                    await asyncio.gather(*(chat(i, ws) for i, ws in enumerate(opened)))
                await asyncio.sleep(1.0)  # as above, before the second reading
                after = rss_kb(server.pid)
                for ws in opened + warm:
                    await ws.close()
                return (after - before) / connections
        finally:
            server.terminate()
            server.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--traffic", type=int, default=0, help="messages each connection sends and gets back")
    parser.add_argument("--only", help="the variants whose name contains this")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(f"| variant | KB per connection ({args.connections} connections, {args.traffic} messages each) |")
    print("|---|---|")
    for name, server_deflate, offer, protocol in VARIANTS:
        if args.only and args.only not in name:
            continue
        kb = await measure(server_deflate, offer, protocol, args.connections, args.traffic)
        print(f"| {name} | {kb:.1f} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
