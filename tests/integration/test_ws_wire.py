"""The WebSocket layer's own rules, on both servers (``--ws-transport aiohttp|picows``), from raw frames.

aiohttp's client always sends whole messages (FIN set), so fragments, stray continuations and unanswered
pings are written here by hand: an HTTP upgrade over a plain TCP stream, then RFC 6455 frames, masked as a
client's must be. Both transports must give the same answers, so these run on both in every run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


@pytest.fixture(params=["aiohttp", "picows"])
async def wire_node(request: pytest.FixtureRequest, embedded_settings: Settings) -> AsyncIterator[Node]:
    settings = with_limits(replace(embedded_settings, ws_transport=request.param), heartbeat_s=0.6)
    async with serve(settings) as running:
        yield running


class Wire:
    """One client connection spoken frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, node: Node) -> Wire:
        where = urlsplit(node.ws_url)
        assert where.hostname is not None and where.port is not None
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {where.path} HTTP/1.1\r\nHost: {where.hostname}:{where.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            length = struct.pack("!B", 0x80 | size)
        elif size < 1 << 16:
            length = struct.pack("!BH", 0x80 | 126, size)
        else:
            length = struct.pack("!BQ", 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked)

    async def read(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next frame from the server (servers do not mask, and these tests get no fragments back)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)

    async def json(self) -> dict[str, object]:
        """The next text frame's first JSON frame, answering pings on the way."""
        while True:
            opcode, payload = await self.read()
            if opcode == PING:
                self.frame(PONG, payload)
                continue
            assert opcode == TEXT, (opcode, payload)
            out: dict[str, object] = json.loads(payload.split(b"\n")[0])
            return out

    async def close_code(self) -> int | None:
        """The code of the server's close frame, skipping anything before it; None if the server just hung up."""
        while True:
            try:
                opcode, payload = await self.read()
            except asyncio.IncompleteReadError:
                return None
            if opcode == CLOSE:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else None

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def authenticated(node: Node, user: str) -> Wire:
    wire = await Wire.open(node)
    wire.frame(TEXT, json.dumps({"type": "auth", "token": node.tokens.issue(user)}).encode())
    assert (await wire.json())["type"] == "welcome"
    return wire


async def test_a_message_in_fragments_is_one_frame(wire_node: Node) -> None:
    """[R-WIRE-14] A text message sent in several WebSocket fragments (with a ping between them, as RFC 6455
    allows) is one Roost frame: an auth frame in three pieces authenticates, a ping in two is answered."""
    wire = await Wire.open(wire_node)
    auth = json.dumps({"type": "auth", "token": wire_node.tokens.issue("alice")}).encode()
    wire.frame(TEXT, auth[:10], fin=False)
    wire.frame(PING, b"between")
    wire.frame(CONTINUATION, auth[10:20], fin=False)
    wire.frame(CONTINUATION, auth[20:])
    opcode, payload = await wire.read()
    assert (opcode, payload) == (PONG, b"between")
    assert (await wire.json())["type"] == "welcome"
    ping = json.dumps({"type": "ping", "id": "p1"}).encode()
    wire.frame(TEXT, ping[:5], fin=False)
    wire.frame(CONTINUATION, ping[5:])
    assert await wire.json() == {"type": "pong", "ref": "p1"}
    await wire.aclose()


async def test_text_that_is_not_utf8_closes_with_1007(wire_node: Node) -> None:
    """[R-SUB-8] Invalid UTF-8 in a text message closes the connection with 1007, also when the bad byte
    comes in a later fragment."""
    whole = await authenticated(wire_node, "alice")
    whole.frame(TEXT, b'{"type":"ping","id":"\xff"}')
    assert await whole.close_code() == 1007
    await whole.aclose()
    split = await authenticated(wire_node, "bob")
    split.frame(TEXT, b'{"type":"ping",', fin=False)
    split.frame(CONTINUATION, b'"id":"\xc3\x28"}')
    assert await split.close_code() == 1007
    await split.aclose()


async def test_a_continuation_without_a_start_closes_with_1002(wire_node: Node) -> None:
    """[R-WIRE-14] A continuation fragment with no message to continue is a protocol error: closed with 1002."""
    wire = await authenticated(wire_node, "alice")
    wire.frame(CONTINUATION, b'{"type":"ping","id":"p"}')
    assert await wire.close_code() == 1002
    await wire.aclose()


async def test_a_message_over_the_limit_in_fragments_closes_with_1009(wire_node: Node) -> None:
    """[R-WIRE-7] The transport's limit (4 x ``max_frame_bytes``) is on the whole message, not each fragment:
    a message of exactly the limit is the session's (4413, too large for a frame), fragments that add up to
    one byte more close the connection with 1009."""
    limit = 4 * wire_node.settings.limits.max_frame_bytes
    for extra, user in ((0, "alice"), (1, "bob")):
        wire = await authenticated(wire_node, user)
        start, end = b'{"type":"ping","id":"', b'"}'
        body = limit - len(start) - len(end) + extra
        wire.frame(TEXT, start, fin=False)
        for i in range(4):
            wire.frame(CONTINUATION, b"x" * (body // 4 + (body % 4 if i == 3 else 0)), fin=False)
        wire.frame(CONTINUATION, end)
        await wire.writer.drain()
        if extra:
            assert await wire.close_code() == 1009
        else:
            answer = await wire.json()
            assert (answer["type"], answer["code"]) == ("error", Code.TOO_LARGE), answer
        await wire.aclose()


async def test_a_peer_that_never_answers_pings_is_dropped(wire_node: Node) -> None:
    """[R-WIRE-6] The server pings an idle connection every ``heartbeat_s``; one that never answers is dropped
    within the heartbeat window, one that answers stays."""
    silent = await authenticated(wire_node, "alice")
    alive = await authenticated(wire_node, "bob")

    async def answer_pings() -> None:
        while True:
            opcode, payload = await alive.read(timeout=30)
            if opcode == PING:
                alive.frame(PONG, payload)

    answering = asyncio.create_task(answer_pings())

    def users() -> list[str]:
        return sorted(session.user for session in wire_node.websocket.sessions)

    assert users() == ["alice", "bob"]
    await wait_until("the silent peer dropped", lambda: users() == ["bob"], within_s=5)
    await asyncio.sleep(3 * wire_node.settings.limits.heartbeat_s)  # the subject: several more heartbeats
    assert users() == ["bob"]
    answering.cancel()
    await silent.aclose()
    await alive.aclose()
