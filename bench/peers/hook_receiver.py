"""A webhook receiver for the ``roost-consumer`` bench target: answers every delivery 204 and counts them.

    .venv/bin/python bench/peers/hook_receiver.py --port 9002

It checks each delivery's signature (``roost.hooks.signing.verify``) as a receiver should, so what a
consumer costs includes what it costs a real one to be answered; ``GET /count`` answers
``{"deliveries": N, "bad_signatures": M}``. SIGTERM/SIGINT: exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import uvloop
from aiohttp import web

from roost.hooks.signing import verify

COUNTS = web.AppKey("counts", dict)
SECRET = web.AppKey("secret", list)


async def deliver(request: web.Request) -> web.Response:
    body = await request.read()
    counts: dict[str, int] = request.app[COUNTS]
    secrets_: list[str] = request.app[SECRET]
    ok = bool(secrets_) and verify(secrets_[0], request.headers.get("Roost-Signature", ""), body)
    counts["deliveries" if ok else "bad_signatures"] += 1
    return web.Response(status=204)


async def count(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTS])


async def set_secret(request: web.Request) -> web.Response:
    """The consumer's secret is known only once it is created, after this receiver started."""
    request.app[SECRET][:] = [(await request.text()).strip()]
    return web.Response(status=204)


async def main(host: str, port: int) -> None:
    app = web.Application()
    app[COUNTS] = {"deliveries": 0, "bad_signatures": 0}
    app[SECRET] = []
    app.add_routes([web.post("/hook", deliver), web.get("/count", count), web.put("/secret", set_secret)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
