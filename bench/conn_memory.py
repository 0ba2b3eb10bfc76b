"""Where an idle connection's memory goes: Python allocations per connection, by the line that made them.

RSS per connection (``roost bench --scenarios idle``) says how much; this says where. A node runs in this
process under ``tracemalloc`` (the embedded default, the runtime of ``roost serve``); a client process opens
``--connections`` WebSockets, each authenticates, joins one of the rooms (50 members each, like the idle
scenario) and follows it. Allocations still alive once all are idle are compared with a snapshot taken
before, and divided by the number of connections. Deterministic (it counts bytes, not time), so it runs on
a busy machine too; it does not see what C libraries allocate outside Python's allocator, nor the kernel's
socket buffers.

    .venv/bin/python bench/conn_memory.py --connections 2000 [--transport picows] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import tracemalloc
from dataclasses import replace

from roost.config import Settings
from roost.node import serve

CLIENT = r"""
import asyncio, json, sys
import aiohttp

async def main(url, tokens, rooms):
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sockets = []
    for i, token in enumerate(tokens):
        ws = await http.ws_connect(url, autoping=True)
        await ws.send_str(json.dumps({"type": "auth", "token": token}))
        await ws.receive()
        room = rooms[i % len(rooms)]
        await ws.send_str(json.dumps({"type": "join", "room": room, "id": "j"}))
        await ws.send_str(json.dumps({"type": "subscribe", "room": room, "id": "s"}))
        sockets.append(ws)
    print("ready", flush=True)
    sys.stdin.readline()
    for ws in sockets:
        await ws.close()
    await http.close()

args = json.loads(sys.stdin.readline())
asyncio.run(main(args["url"], args["tokens"], args["rooms"]))
"""


async def measure(connections: int, transport: str, top: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        settings = replace(Settings(port=0, data_dir=data, ws_transport=transport), search="off")
        async with serve(settings) as node:
            rooms = [f"m{r}" for r in range(max(1, connections // 50))]
            for room in rooms:
                await node.service.create_room("owner", room)
            tokens = [node.tokens.issue(f"u{i}") for i in range(connections)]
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert client.stdin is not None and client.stdout is not None
            # Warm-up: the first connections create the module-level caches every later one shares.
            gc.collect()
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
            client.stdin.write(json.dumps({"url": node.ws_url, "tokens": tokens, "rooms": rooms}) + "\n")
            client.stdin.flush()
            loop = asyncio.get_running_loop()
            line = await loop.run_in_executor(None, client.stdout.readline)
            assert line.strip() == "ready", line
            while len(node.websocket.sessions) < connections:
                await asyncio.sleep(0.1)  # the last subscribes are being handled
            await asyncio.sleep(2.0)  # idle: whatever the connections' first seconds allocate is freed by now
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            stats = after.compare_to(before, "lineno")
            total = sum(s.size_diff for s in stats)
            print(f"{transport}: {connections} connections, {total / connections / 1024:.2f} KB of Python heap each")
            for stat in stats[:top]:
                frame = stat.traceback[0]
                where = f"{frame.filename.split('site-packages/')[-1].split('/src/')[-1]}:{frame.lineno}"
                print(f"  {stat.size_diff / connections:8.0f} B  {stat.count_diff / connections:5.2f} blocks  {where}")
            by_file: dict[str, int] = {}
            for stat in stats:
                name = stat.traceback[0].filename.split("site-packages/")[-1].split("/src/")[-1]
                name = name.split("/lib/python3.11/")[-1]
                by_file[name] = by_file.get(name, 0) + stat.size_diff
            print("  by file:")
            for name, size in sorted(by_file.items(), key=lambda item: -item[1])[:top]:
                print(f"  {size / connections:8.0f} B  {name}")
            client.stdin.write("\n")
            client.stdin.flush()
            await loop.run_in_executor(None, client.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--transport", default="aiohttp", choices=["aiohttp", "picows"])
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(measure(args.connections, args.transport, args.top))


if __name__ == "__main__":
    main()
