"""The wire's options on a real node: MessagePack by subprotocol beside JSON, and permessage-deflate.

On the embedded engine (aiohttp and picows) and on one shared engine (Redis, where live messages cross the
bus as JSON and are re-encoded on the receiving node).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import msgspec
import pytest

from roost.client import RequestFailed, connect
from roost.config import Settings
from roost.config_sources import ConfigError, resolve
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.encoding import MSGPACK
from roost.protocol.errors import UsageError
from roost.protocol.types import Message

from ..backends import cleanup, make, rigs
from .test_send import make_room
from .wsutil import Raw

MSGPACK_PROTOCOL = "roost.v1.msgpack"


class Packed:
    """A raw MessagePack client: binary frames, one map out, one array of maps in."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.http = http
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, node: Node, query: str = "", **options: Any) -> Packed:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(node.ws_url + query, protocols=(MSGPACK_PROTOCOL,), **options)
        return cls(ws, http)

    @classmethod
    async def open(cls, node: Node, user: str) -> Packed:
        packed = await cls.connect(node)
        assert packed.ws.protocol == MSGPACK_PROTOCOL
        await packed.send({"type": "auth", "token": node.tokens.issue(user), "id": "a"})
        welcome = await packed.recv()
        assert welcome["type"] == "welcome" and welcome["ref"] == "a", welcome
        return packed

    async def send(self, frame: dict[str, Any] | bytes) -> None:
        await self.ws.send_bytes(frame if isinstance(frame, bytes) else msgspec.msgpack.encode(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while not self.frames:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type is not aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"not a binary frame: {msg.type} {self.ws.close_code}")
            batch = msgspec.msgpack.decode(msg.data)
            assert isinstance(batch, list) and batch, batch  # R-WIRE-10: always an array of frames
            self.frames.extend(f for f in batch if f.get("type") != "presence")
        return self.frames.pop(0)

    async def until(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - asyncio.get_running_loop().time()))
            if pred(frame):
                return frame

    async def request(self, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        await self.send(frame)
        return await self.until(lambda f: f.get("ref") == frame["id"], timeout)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


CASES = [("embedded", "aiohttp"), ("embedded", "picows"), ("redis", "aiohttp")]


@pytest.fixture(params=CASES, ids=[f"{b}-{t}" for b, t in CASES])
async def wire_node(request: pytest.FixtureRequest, embedded_settings: Settings) -> AsyncIterator[Node]:
    backend, transport = request.param
    for rig in rigs(backend):
        request.getfixturevalue(rig)
    chosen = make(backend)
    settings = replace(embedded_settings, store=chosen.store, bus=chosen.bus, ws_transport=transport)
    try:
        async with serve(settings) as running:
            yield running
    finally:
        await cleanup(chosen)


async def test_a_msgpack_and_a_json_client_share_a_room(wire_node: Node) -> None:
    """[R-WIRE-9] [R-WIRE-10] [R-WIRE-13] A client that offers ``roost.v1.msgpack`` gets it named in the answer and
    speaks MessagePack (binary frames, the server's messages arrays of maps), another without a subprotocol speaks
    JSON as always; in one room each receives the other's messages and typing as the same frames, each in its
    encoding."""
    node = wire_node
    await make_room(node, "alice", "r", "bob")
    alice = await Raw.open(node, "alice")
    assert alice.ws.protocol is None
    bob = await Packed.open(node, "bob")
    for client in (alice, bob):
        sub = await client.request({"type": "subscribe", "room": "r", "id": "s"})
        assert sub["type"] == "subscribed" and sub["room"] == "r", sub
    ack, at_alice = await _ack_and_echo(alice, {"type": "send", "room": "r", "cmid": "a1", "body": "a\nb", "id": "1"})
    at_bob = await bob.until(lambda f: f["type"] == "msg")
    assert at_bob == at_alice and at_bob["body"] == "a\nb" and at_bob["seq"] == ack["seq"], at_bob
    ack2, at_bob = await _ack_and_echo(bob, {"type": "send", "room": "r", "cmid": "b1", "body": "from bob", "id": "2"})
    assert isinstance(ack2["seq"], int) and ack2["dup"] is False, ack2
    at_alice = await alice.until(lambda f: f["type"] == "msg")
    assert at_alice == at_bob and (at_alice["sender"], at_alice["seq"]) == ("bob", ack2["seq"]), at_alice
    await alice.send({"type": "typing", "room": "r"})
    typing = await bob.until(lambda f: f["type"] == "typing")
    assert typing == {"type": "typing", "room": "r", "user": "alice"}
    ping = await bob.request({"type": "ping", "id": "p"})
    assert ping == {"type": "pong", "ref": "p"}
    await alice.close()
    await bob.close()


async def _ack_and_echo(client: Raw | Packed, send: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send, then the ack and the sender's own live copy of the message, which come in either order."""
    await client.send(send)
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < 2:
        frame = await client.until(lambda f: f.get("ref") == send["id"] or f["type"] == "msg")
        seen[frame["type"]] = frame
    assert seen["ack"]["type"] == "ack", seen
    return seen["ack"], seen["msg"]


async def test_catch_up_and_history_over_msgpack(wire_node: Node) -> None:
    """[R-WIRE-10] A MessagePack subscription catches up from its cursor (the backlog as ``msg`` maps, then
    ``live``) and a ``history`` page holds the same messages: the same frames as over JSON."""
    node = wire_node
    await make_room(node, "alice", "r", "bob")
    for i in range(30):
        await node.service.send("alice", "r", f"c{i}", f"m{i}")
    bob = await Packed.open(node, "bob")
    sub = await bob.request({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    assert sub["type"] == "subscribed" and sub["after"] == 0
    seen = []
    while True:
        frame = await bob.recv()
        if frame["type"] == "live":
            break
        assert frame["type"] == "msg", frame
        seen.append(frame)
    assert [f["seq"] for f in seen] == list(range(1, 33)), [f["seq"] for f in seen]
    assert [f["body"] for f in seen if f["kind"] == "text"] == [f"m{i}" for i in range(30)]
    page = await bob.request({"type": "history", "room": "r", "before": 33, "limit": 10, "id": "h"})
    assert page["type"] == "history" and page["has_more"] is True and page["head"] == 32, page
    assert [m["seq"] for m in page["messages"]] == list(range(23, 33))
    assert page["messages"] == seen[-10:]
    alice = await Raw.open(node, "alice")
    json_page = await alice.request({"type": "history", "room": "r", "before": 33, "limit": 10, "id": "h"})
    assert json_page == page
    await alice.close()
    await bob.close()


async def test_errors_over_msgpack(wire_node: Node) -> None:
    """[R-WIRE-11] [R-REF-2] Over MessagePack the errors are those of JSON, as maps: a frame that is not
    MessagePack, an array, an unknown type, a mistyped field are 4400 (with the frame's ``id`` as ``ref`` when it
    is a map with a string ``id``), a text frame is 4400, a room one is not a member of 4403; the connection
    stays."""
    node = wire_node
    await make_room(node, "alice", "r")
    bob = await Packed.open(node, "bob")
    await bob.send(b"\xc1")
    malformed = await bob.recv()
    assert malformed["type"] == "error" and malformed["code"] == Code.BAD_FRAME, malformed
    assert malformed["reason"].startswith("malformed MessagePack") and "ref" not in malformed
    await bob.send(msgspec.msgpack.encode([{"type": "ping", "id": "x"}]))
    assert (await bob.recv())["code"] == Code.BAD_FRAME
    unknown = await bob.request({"type": "nope", "id": "u"})
    assert (unknown["code"], unknown["ref"]) == (Code.BAD_FRAME, "u"), unknown
    mistyped = await bob.request({"type": "send", "room": "r", "cmid": "c", "body": 5, "id": "m"})
    assert (mistyped["code"], mistyped["room"]) == (Code.BAD_FRAME, "r") and "Expected `str`" in mistyped["reason"]
    await bob.ws.send_str(json.dumps({"type": "ping", "id": "t"}))
    text = await bob.recv()
    assert text["code"] == Code.BAD_FRAME and "text frames are not supported" in text["reason"], text
    forbidden = await bob.request({"type": "send", "room": "r", "cmid": "c", "body": "hi", "id": "f"})
    assert (forbidden["code"], forbidden["ref"]) == (Code.FORBIDDEN, "f"), forbidden
    assert (await bob.request({"type": "ping", "id": "p"}))["type"] == "pong"
    await bob.close()


async def test_authentication_over_msgpack(embedded_node: Node) -> None:
    """[R-WIRE-10] [R-AUTH-3] [R-AUTH-5] The auth frame is a MessagePack map in a binary frame; a refusal is a
    MessagePack error frame and the close with its code; a text first frame fails the authentication; ``?token=``
    works as with JSON."""
    node = embedded_node
    bad = await Packed.connect(node)
    await bad.send({"type": "auth", "token": "garbage", "id": "a"})
    refused = await bad.recv()
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", Code.UNAUTHORIZED, "a"), refused
    await bad.ws.receive(timeout=5)
    assert bad.ws.close_code == Code.UNAUTHORIZED
    await bad.close()
    text = await Packed.connect(node)
    await text.ws.send_str(json.dumps({"type": "auth", "token": node.tokens.issue("bob")}))
    assert (await text.recv())["code"] == Code.UNAUTHORIZED
    await text.close()
    queried = await Packed.connect(node, f"?token={node.tokens.issue('bob')}")
    welcome = await queried.recv()
    assert (welcome["type"], welcome["user"]) == ("welcome", "bob"), welcome
    await queried.close()


@pytest.fixture(params=["aiohttp", "picows"])
async def any_transport(request: pytest.FixtureRequest, embedded_settings: Settings) -> AsyncIterator[Node]:
    async with serve(replace(embedded_settings, ws_transport=request.param)) as running:
        yield running


async def test_an_unknown_subprotocol_gets_json_without_a_subprotocol(any_transport: Node) -> None:
    """[R-WIRE-9] A client offering only subprotocols the server does not know gets an answer without
    ``Sec-WebSocket-Protocol`` and JSON; of several offered, the first known one wins; on both transports."""
    node = any_transport
    async with aiohttp.ClientSession() as http:
        async with http.get(node.ws_url.replace("ws://", "http://"), headers=_upgrade("chat, roost.v2")) as answer:
            assert answer.status == 101 and "Sec-WebSocket-Protocol" not in answer.headers
        async with http.ws_connect(node.ws_url, protocols=("chat", "roost.v1.json", MSGPACK_PROTOCOL)) as ws:
            assert ws.protocol == "roost.v1.json"
            await ws.send_str(json.dumps({"type": "auth", "token": node.tokens.issue("bob")}))
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"


def _upgrade(protocols: str, extensions: str | None = None) -> dict[str, str]:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    if protocols:
        headers["Sec-WebSocket-Protocol"] = protocols
    if extensions:
        headers["Sec-WebSocket-Extensions"] = extensions
    return headers


# ---- permessage-deflate -----------------------------------------------------------------------------


@pytest.fixture
async def deflate_node(embedded_settings: Settings) -> AsyncIterator[Node]:
    async with serve(replace(embedded_settings, ws_transport="aiohttp", ws_compression="deflate")) as running:
        yield running


async def _first_frame_header(node: Node, extensions: str | None) -> tuple[dict[str, str], int]:
    """Upgrade by hand with ``?token=``: the answer's headers and the first byte of the welcome frame (FIN,
    RSV1 = compressed, opcode), as it is on the wire."""
    host, port = "127.0.0.1", int(node.ws_url.rsplit(":", 1)[1].split("/")[0])
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"GET /ws?token={node.tokens.issue('bob')} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in _upgrade("", extensions).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    headers = {}
    for line in head.split("\r\n")[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    first = (await asyncio.wait_for(reader.readexactly(2), 5))[0]
    writer.close()
    return headers, first


async def test_deflate_is_negotiated_when_enabled_and_offered(deflate_node: Node) -> None:
    """[R-WIRE-12] With ``ws_compression = deflate`` a client that offers permessage-deflate gets it in
    ``Sec-WebSocket-Extensions`` and the server's frames are compressed (RSV1 set); one that does not offer it
    gets plain frames."""
    headers, first = await _first_frame_header(deflate_node, "permessage-deflate; client_max_window_bits")
    assert headers.get("sec-websocket-extensions", "").startswith("permessage-deflate"), headers
    assert first == 0x80 | 0x40 | 0x1, hex(first)  # FIN, RSV1 (compressed), text
    headers, first = await _first_frame_header(deflate_node, None)
    assert "sec-websocket-extensions" not in headers and first == 0x81, (headers, hex(first))


async def test_deflate_is_never_negotiated_when_off(embedded_settings: Settings) -> None:
    """[R-WIRE-12] Off by default: a client offering permessage-deflate gets no extension and plain frames."""
    settings = replace(embedded_settings, ws_transport="aiohttp")
    assert settings.ws_compression == "off"
    async with serve(settings) as node:
        headers, first = await _first_frame_header(node, "permessage-deflate; client_max_window_bits")
        assert "sec-websocket-extensions" not in headers and first == 0x81, (headers, hex(first))
        async with aiohttp.ClientSession() as http, http.ws_connect(node.ws_url, compress=15) as ws:
            assert ws.compress == 0


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_a_compressed_session_works_end_to_end(deflate_node: Node, encoding: str) -> None:
    """[R-WIRE-12] Over a compressed connection, in either encoding, the SDK authenticates, follows a room,
    sends, reads its catch-up and the live messages of a JSON client without compression in the same room."""
    node = deflate_node
    await make_room(node, "alice", "r", "bob")
    for i in range(20):
        await node.service.send("alice", "r", f"old{i}", "x" * 500 + str(i))
    async with connect(node.ws_url, node.tokens.issue("bob"), encoding=encoding, compression=True) as bob:
        assert bob._ws is not None and bob._ws.compress == 15
        await bob.subscribe("r", after=0)
        sent = await bob.send("r", "compressed hello")
        alice = await Raw.open(node, "alice")
        await alice.request({"type": "send", "room": "r", "cmid": "plain", "body": "plain hello", "id": "1"})
        got: list[Message] = []
        async with asyncio.timeout(10):
            async for item in bob:
                if isinstance(item, Message) and item.kind == "text":
                    got.append(item)
                    if len(got) == 22:
                        break
        assert [m.body for m in got[20:]] == ["compressed hello", "plain hello"] and got[20].seq == sent.seq
        assert [m.body for m in got[:20]] == ["x" * 500 + str(i) for i in range(20)]
        await alice.close()


@pytest.mark.parametrize(
    ("offer", "window"),
    [
        ("permessage-deflate; client_max_window_bits", 10),
        ("permessage-deflate; server_max_window_bits=9; client_max_window_bits", 9),
        ("permessage-deflate; server_max_window_bits=12", 10),
    ],
)
async def test_the_server_window_is_at_most_the_setting(embedded_settings: Settings, offer: str, window: int) -> None:
    """[R-WIRE-12] With ``ws_deflate_window_bits = 10`` the answer names ``server_max_window_bits`` of at most 10,
    and less when the client asked for less; frames are compressed and a compressed session works end to end."""
    settings = replace(embedded_settings, ws_transport="aiohttp", ws_compression="deflate", ws_deflate_window_bits=10)
    async with serve(settings) as node:
        headers, first = await _first_frame_header(node, offer)
        answer = headers.get("sec-websocket-extensions", "")
        assert answer.startswith("permessage-deflate") and f"server_max_window_bits={window}" in answer, headers
        assert first == 0xC1, hex(first)
        await make_room(node, "alice", "r")
        async with connect(node.ws_url, node.tokens.issue("alice"), compression=True, encoding="msgpack") as alice:
            await alice.subscribe("r", after=0)
            bodies = [" ".join(["a fairly long message that repeats"] * 20) + str(i) for i in range(30)]
            for body in bodies:
                await alice.send("r", body)
            got: list[str] = []
            async with asyncio.timeout(10):
                async for item in alice:
                    if isinstance(item, Message) and item.kind == "text":
                        got.append(item.body)
                        if len(got) == len(bodies):
                            break
            assert got == bodies


async def test_deflate_with_picows_does_not_start(embedded_settings: Settings) -> None:
    """[R-WIRE-12] picows cannot do permessage-deflate: the combination is refused at start-up (from the settings
    resolver with one line, and by the node itself), never quietly served without compression."""
    with pytest.raises(ConfigError) as caught:
        resolve(None, {"ROOST_WS_COMPRESSION": "deflate", "ROOST_WS_TRANSPORT": "picows"}, {})
    assert caught.value.mistakes == [
        "ROOST_WS_COMPRESSION: ws_compression = deflate needs ws_transport = aiohttp: picows cannot do"
        " permessage-deflate (RFC 7692)"
    ]
    with pytest.raises(UsageError, match="picows cannot do permessage-deflate"):
        async with serve(replace(embedded_settings, ws_transport="picows", ws_compression="deflate")):
            pass
    with pytest.raises(ConfigError) as caught:
        resolve(None, {"ROOST_WS_DEFLATE_WINDOW_BITS": "8"}, {})
    assert caught.value.mistakes == ["ROOST_WS_DEFLATE_WINDOW_BITS: ws_deflate_window_bits = 8 is not between 9 and 15"]
    with pytest.raises(UsageError, match="ws_deflate_window_bits 16"):
        bad = replace(embedded_settings, ws_transport="aiohttp", ws_compression="deflate", ws_deflate_window_bits=16)
        async with serve(bad):
            pass


# ---- the Python SDK --------------------------------------------------------------------------------


async def test_the_sdk_speaks_msgpack_beside_a_json_sdk(wire_node: Node) -> None:
    """[R-WIRE-9] [R-WIRE-10] ``Client(..., encoding="msgpack")`` asks for ``roost.v1.msgpack`` and works as the JSON
    client does: sends acked, messages in order, history, a refused request's code, beside a JSON client."""
    node = wire_node
    async with (
        connect(node.ws_url, node.tokens.issue("alice")) as alice,
        connect(node.ws_url, node.tokens.issue("bob"), encoding="msgpack") as bob,
    ):
        assert bob._ws is not None and bob._ws.protocol == MSGPACK_PROTOCOL and alice._ws is not None
        assert alice._ws.protocol == "roost.v1.json"
        await alice.create("r")
        await bob.join("r")
        for client in (alice, bob):
            await client.subscribe("r")
        a = await alice.send("r", "from alice")
        b = await bob.send("r", "from bob")
        for client in (alice, bob):
            bodies: list[tuple[int, str]] = []
            async with asyncio.timeout(10):
                async for item in client:
                    if isinstance(item, Message) and item.kind == "text":
                        bodies.append((item.seq, item.body))
                        if len(bodies) == 2:
                            break
            assert bodies == [(a.seq, "from alice"), (b.seq, "from bob")]
        with pytest.raises(RequestFailed) as refused:
            await bob.create("r")
        assert getattr(refused.value, "code", None) == Code.CONFLICT
    with pytest.raises(ValueError, match="encoding"):
        connect(node.ws_url, "t", encoding="cbor")
    assert MSGPACK.binary
