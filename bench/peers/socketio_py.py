"""python-socketio peer: ``AsyncServer`` on aiohttp + uvloop with ``AsyncRedisManager``, wire shape ``socketio``.

    .venv/bin/python bench/peers/socketio_py.py --port 9004 --redis redis://127.0.0.1:6379 --channel roost-bench-1

Engine.IO v4 over WebSocket only (``/socket.io/?EIO=4&transport=websocket``, no polling), default namespace ``/``:

* ``421["join","R"]``            -> ``socket.join(R)``, ack ``431[]``
* ``42<id>["msg",{"room":R,...}]`` -> ``await sio.emit("msg", data, room=R)`` (every member of R, sender included,
  receives ``42["msg",{...}]``), then ack ``43<id>[]``

Broadcasts go through Redis pub/sub (``--channel``; give each run a fresh one), as they would with several server
processes: the emit is published and delivered to the local members when it comes back from Redis. So the sender's
ack is usually written before its own copy of the broadcast arrives.

Heartbeat: the server sends ``2`` every 25 s and drops a client that has not answered ``3`` within 60 s. No
compression: HTTP compression off, and the WebSocket permessage-deflate offer is removed from the upgrade request
(python-engineio has no switch for it and aiohttp would otherwise accept it). No logging per message, no access log.

The listening socket opens only once the Redis pub/sub subscription is live, so no broadcast can be lost to a
subscription still in progress. SIGTERM/SIGINT: stop listening, close every client, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any

import redis.asyncio
import socketio
import uvloop
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler


@web.middleware
async def no_websocket_compression(request: web.Request, handler: Handler) -> web.StreamResponse:
    if hdrs.SEC_WEBSOCKET_EXTENSIONS in request.headers:
        headers = request.headers.copy()
        del headers[hdrs.SEC_WEBSOCKET_EXTENSIONS]
        request = request.clone(headers=headers)
    return await handler(request)


def make_server(redis_url: str, channel: str) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url, channel=channel),
        transports=["websocket"],
        http_compression=False,
        ping_interval=25,
        ping_timeout=60,
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, room: Any) -> None:
        await sio.enter_room(sid, str(room))  # returning None acks with 431[]

    @sio.on("msg")  # type: ignore[untyped-decorator]
    async def msg(sid: str, data: Any) -> None:
        if isinstance(data, dict) and "room" in data:
            await sio.emit("msg", data, room=str(data["room"]))  # sender included: no skip_sid

    return sio


async def wait_subscribed(redis_url: str, channel: str, timeout: float = 10.0) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            counts = dict(await client.pubsub_numsub(channel))
            if counts.get(channel.encode(), 0) >= 1:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"socketio_py: no Redis subscription on {channel!r} after {timeout:.0f} s")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def serve(host: str, port: int, redis_url: str, channel: str) -> None:
    sio = make_server(redis_url, channel)
    app = web.Application(middlewares=[no_websocket_compression])
    sio.attach(app)

    async def close_clients(_app: web.Application) -> None:
        # Every client gets the Engine.IO close packet "1". python-engineio then waits for each socket's send queue
        # to drain, which can take until the next ping or never end (a client already leaving), so the wait is
        # bounded; aiohttp's shutdown (shutdown_timeout) then cancels the remaining handlers, closing the sockets.
        if sio.eio.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sio.eio.disconnect(), timeout=1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sio.shutdown(), timeout=1)

    app.on_shutdown.append(close_clients)

    # python-socketio starts the manager's Redis listener on the first connection; start it now instead (and tell
    # the server it is done, so it is not started twice), then open the port once the subscription is live.
    sio.manager_initialized = True
    sio.manager.initialize()
    await wait_subscribed(redis_url, channel)

    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
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
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--channel", default="roost-bench-socketio", help="Redis pub/sub channel (fresh per run)")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.redis, args.channel))


if __name__ == "__main__":
    main()
