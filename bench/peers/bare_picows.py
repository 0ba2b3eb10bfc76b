"""Bare room broadcast on picows, uvloop: the fastest asyncio "ceiling" peer, wire shape ``bare``.

    .venv/bin/python bench/peers/bare_picows.py --port 9002

Same behaviour as ``bare_aiohttp.py``: ``ws://127.0.0.1:PORT/ws?room=R`` joins room R; every text message is parsed
with stdlib ``json.loads``, the room is taken from it and the raw payload is sent, unchanged, to every member of that
room, sender included (``for t in room: t.send(WSMsgType.TEXT, payload)``). No compression (picows implements none),
nothing printed per message.

Frames: PING is answered by picows itself (``enable_auto_pong``, the default); a CLOSE from the client is answered
with a CLOSE carrying the same code, then the connection is closed; fragmented text messages are reassembled. Any
other path than ``/ws`` gets 404, a missing room 400. SIGTERM/SIGINT: stop listening, send CLOSE 1001 to every client,
disconnect, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

ROOMS: dict[str, set[WSTransport]] = {}
CONNECTED: set[WSTransport] = set()


def broadcast(payload: bytes) -> None:
    try:
        target = json.loads(payload)["room"]
    except (ValueError, KeyError, TypeError):
        return  # not a chat message: dropped without a word
    peers = ROOMS.get(target)
    if peers:
        for t in peers:  # send() only buffers: no await, so the set cannot change under the loop
            t.send(WSMsgType.TEXT, payload)


class RoomListener(WSListener):
    __slots__ = ("fragments", "room")

    def __init__(self, room: str) -> None:
        self.room = room
        self.fragments: list[bytes] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        CONNECTED.add(transport)
        ROOMS.setdefault(self.room, set()).add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CONNECTED.discard(transport)
        members = ROOMS.get(self.room)
        if members is not None:
            members.discard(transport)
            if not members:
                del ROOMS[self.room]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.TEXT:
            if frame.fin:
                broadcast(frame.get_payload_as_bytes())
            else:
                self.fragments = [frame.get_payload_as_bytes()]
        elif msg_type == WSMsgType.CONTINUATION:
            if self.fragments is not None:
                self.fragments.append(frame.get_payload_as_bytes())
                if frame.fin:
                    payload = b"".join(self.fragments)
                    self.fragments = None
                    broadcast(payload)
        elif msg_type == WSMsgType.CLOSE:
            code = frame.get_close_code()
            transport.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code, frame.get_close_message())
            transport.disconnect()
        # PING is answered by picows (enable_auto_pong); PONG and BINARY are ignored


def listener_factory(request: WSUpgradeRequest) -> RoomListener | WSUpgradeResponseWithListener | None:
    url = urlsplit(request.path.decode("latin-1"))
    if url.path != "/ws":
        return None  # picows answers 404
    room = parse_qs(url.query).get("room", [""])[0]
    if not room:
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(HTTPStatus.BAD_REQUEST), None)
    return RoomListener(room)


async def serve(host: str, port: int) -> None:
    server = await ws_create_server(
        listener_factory,
        host,
        port,
        enable_auto_pong=True,
        enable_auto_ping=False,
        disconnect_on_exception=True,
        backlog=4096,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    transports = list(CONNECTED)
    for t in transports:
        t.send_close(WSCloseCode.GOING_AWAY, b"server shutdown")
        t.disconnect()
    if transports:
        await asyncio.wait([asyncio.ensure_future(t.wait_disconnected()) for t in transports], timeout=3)
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
