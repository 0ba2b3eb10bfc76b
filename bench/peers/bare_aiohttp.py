"""Bare room broadcast on aiohttp (the stack Roost uses), uvloop: the "ceiling" peer, wire shape ``bare``.

    .venv/bin/python bench/peers/bare_aiohttp.py --port 9001

A client connects to ``ws://127.0.0.1:PORT/ws?room=R`` and joins room R. Every text frame it sends
(``{"room":R,"seq":n,"t":...,"body":"..."}``) is parsed with stdlib ``json.loads``, the room is taken from it, and the
raw text is sent to every member of that room, sender included. No persistence, no per-message output, no access
log, no compression. Fan-out is the idiomatic ``for peer in room: await peer.send_str(text)``.
SIGTERM/SIGINT: stop listening, close every WebSocket with 1001 (going away), exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

import uvloop
from aiohttp import WSCloseCode, WSMsgType, web

ROOMS = web.AppKey("rooms", dict)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    room = request.query.get("room")
    if not room:
        raise web.HTTPBadRequest(text="missing ?room=")
    ws = web.WebSocketResponse(compress=False, autoping=True, heartbeat=None)
    await ws.prepare(request)
    rooms: dict[str, set[web.WebSocketResponse]] = request.app[ROOMS]
    members = rooms.setdefault(room, set())
    members.add(ws)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue  # PING/PONG/CLOSE are handled by aiohttp (autoping, close reply); binary is ignored
            text: str = msg.data
            try:
                target = json.loads(text)["room"]
            except (ValueError, KeyError, TypeError):
                continue  # not a chat message: dropped without a word (nothing is printed per message)
            peers = rooms.get(target)
            if not peers:
                continue
            for peer in tuple(peers):  # a copy: membership may change while a send is awaited
                with contextlib.suppress(ConnectionError):  # that peer is going away; its handler removes it
                    await peer.send_str(text)
    finally:
        members.discard(ws)
        if not members and rooms.get(room) is members:
            del rooms[room]
    return ws


async def close_all(app: web.Application) -> None:
    sockets = [ws for members in app[ROOMS].values() for ws in members]
    if sockets:
        closing = [asyncio.ensure_future(ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutdown")) for ws in sockets]
        await asyncio.wait(closing, timeout=3)


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app[ROOMS] = {}
    app.router.add_get("/ws", ws_handler)
    app.on_shutdown.append(close_all)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=3)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
