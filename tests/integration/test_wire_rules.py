"""Rules of docs/protocol.md that belong to the gateway, not to an engine: checked on the embedded node.

Each test names the rule ids it checks; tests/test_protocol_doc.py fails on a rule no test names.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from roost.auth import TokenAuthority
from roost.node import Node
from roost.protocol.codes import Code

from .test_history import api
from .test_send import make_room
from .wsutil import Raw


async def _frames_until_ref(raw: Raw, ref: str) -> list[dict[str, object]]:
    """Every frame received up to and including the reply to ``ref`` (none skipped, unlike ``Raw.request``)."""
    seen: list[dict[str, object]] = []
    while not seen or seen[-1].get("ref") != ref:
        seen.append(await raw.recv())
    return seen


async def test_a_binary_frame_fails_authentication_and_is_refused_after_it(embedded_node: Node) -> None:
    """[R-WIRE-1] Text frames only: binary before authentication is 4401 and a close; after it, a 4400 error
    frame and the connection stays."""
    node = embedded_node
    async with aiohttp.ClientSession() as http, http.ws_connect(node.ws_url) as ws:
        await ws.send_bytes(json.dumps({"type": "auth", "token": node.tokens.issue("alice")}).encode())
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "error" and error["code"] == Code.UNAUTHORIZED
        await ws.receive(timeout=5)
        assert ws.close_code == Code.UNAUTHORIZED
    alice = await Raw.open(node, "alice")
    await alice.send(json.dumps({"type": "ping", "id": "p"}).encode())
    error = await alice.until(lambda f: f["type"] == "error")
    assert error["code"] == Code.BAD_FRAME
    assert (await alice.request({"type": "ping", "id": "q"}))["type"] == "pong"
    await alice.close()


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"ping","id":"a"}\n{"type":"ping","id":"b"}',
        '[{"type":"ping","id":"a"}]',
        '"ping"',
    ],
    ids=["two-objects", "array", "string"],
)
async def test_a_client_sends_one_json_object_per_frame(embedded_node: Node, frame: str) -> None:
    """[R-WIRE-2] Client to server, one JSON object per WebSocket frame: several objects separated by newlines,
    an array or anything else is 4400, and none of it is carried out."""
    alice = await Raw.open(embedded_node, "alice")
    await alice.send(frame)
    await alice.send({"type": "ping", "id": "after"})
    seen = await _frames_until_ref(alice, "after")
    assert [(f["type"], f.get("code")) for f in seen] == [("error", Code.BAD_FRAME), ("pong", None)]
    await alice.close()


async def test_a_second_auth_frame_is_refused_and_changes_nothing(embedded_node: Node) -> None:
    """[R-AUTH-4] Once authenticated, another ``auth`` is 4400 with the frame's ``id`` as ``ref``; the
    connection stays as it was (same user)."""
    node = embedded_node
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    again = await alice.request({"type": "auth", "token": node.tokens.issue("mallory"), "id": "11"})
    assert again["type"] == "error" and again["code"] == Code.BAD_FRAME and again["ref"] == "11"
    ack = await alice.request({"type": "send", "room": "r", "cmid": "c", "body": "still alice", "id": "s"})
    assert ack["type"] == "ack"
    page = await node.backends.store.read("r", ack["seq"] - 1, 1)
    assert page.messages[0].sender == "alice"
    await alice.close()


async def test_a_control_frame_waits_for_every_earlier_frame(embedded_node: Node) -> None:
    """[R-ORDER-3] Control frames wait until every earlier frame of the connection is handled: a ``history``
    sent right after pipelined sends, without waiting for their acks, sees every one of them."""
    node = embedded_node
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    for i in range(50):
        await alice.send({"type": "send", "room": "r", "cmid": f"c{i}", "body": str(i), "id": f"s{i}"})
    page = await alice.request({"type": "history", "room": "r", "after": 1, "limit": 500, "id": "h"})
    assert [m["body"] for m in page["messages"]] == [str(i) for i in range(50)]
    await alice.close()


async def test_no_message_follows_the_ok_of_an_unsubscribe(embedded_node: Node) -> None:
    """[R-SUB-3] After the ``ok`` of an ``unsubscribe`` no ``msg`` of the room arrives on that connection,
    and membership is unchanged (sends still work)."""
    node = embedded_node
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    ok = await bob.request({"type": "unsubscribe", "room": "r", "id": "u"})
    assert ok == {"type": "ok", "ref": "u", "room": "r"}
    await node.service.send("alice", "r", "later", "not for bob's socket")
    await bob.send({"type": "send", "room": "r", "cmid": "b", "body": "still a member", "id": "b"})
    await bob.send({"type": "history", "room": "r", "id": "h"})  # a control frame: after the send's ack
    seen = await _frames_until_ref(bob, "h")
    assert [f["type"] for f in seen] == ["ack", "history"]
    with pytest.raises(TimeoutError):
        await bob.until(lambda f: f["type"] == "msg", timeout=0.3)
    await bob.close()


async def test_a_second_subscribe_replaces_the_first(embedded_node: Node) -> None:
    """[R-SUB-4] A second ``subscribe`` to the same room replaces the first: the stream restarts from the new
    cursor and every later message arrives once, not once per subscribe."""
    node = embedded_node
    await make_room(node, "alice", "r", "bob")
    for i in range(3):
        await node.service.send("alice", "r", f"c{i}", str(i))
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "after": 4, "id": "s1"})
    await bob.until(lambda f: f["type"] == "live")
    await bob.request({"type": "subscribe", "room": "r", "after": 2, "id": "s2"})
    backlog = [await bob.until(lambda f: f["type"] in ("msg", "live")) for _ in range(4)]
    assert [f.get("seq") for f in backlog] == [3, 4, 5, 5] and backlog[-1]["type"] == "live"
    await node.service.send("alice", "r", "new", "new")
    live = await bob.recv()
    assert live["type"] == "msg" and live["seq"] == 6
    await bob.send({"type": "history", "room": "r", "after": 5, "id": "h"})
    assert [f["type"] for f in await _frames_until_ref(bob, "h")] == ["history"]
    with pytest.raises(TimeoutError):
        await bob.until(lambda f: f["type"] == "msg", timeout=0.3)
    await bob.close()


async def test_http_and_websocket_sends_share_one_idempotency_key(embedded_node: Node) -> None:
    """[R-SEND-1] The key ``(room, sender, cmid)`` is shared by HTTP and WebSocket sends: a retry over HTTP of a
    WebSocket send, or the reverse, is answered as a duplicate of the first."""
    node = embedded_node
    await make_room(node, "alice", "r")
    alice = await Raw.open(node, "alice")
    ack = await alice.request({"type": "send", "room": "r", "cmid": "ws-1", "body": "over ws", "id": "1"})
    status, again = await api(node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "ws-1", "body": "over ws"})
    assert status == 200 and again["duplicate"] is True and again["message"]["seq"] == ack["seq"]
    status, first = await api(node, "POST", "/api/rooms/r/messages", "alice", {"cmid": "http-1", "body": "over http"})
    assert status == 201 and first["duplicate"] is False
    retry = await alice.request({"type": "send", "room": "r", "cmid": "http-1", "body": "over http", "id": "2"})
    assert retry["type"] == "ack" and retry["dup"] is True and retry["seq"] == first["message"]["seq"]
    assert (await node.backends.store.position("r")).head == 3
    await alice.close()


async def test_a_token_in_the_url_authenticates_at_once_and_an_empty_one_does_not(embedded_node: Node) -> None:
    """[R-AUTH-5] With ``?token=`` the server answers ``welcome`` at once (no ``auth`` frame); an empty
    ``?token=`` counts as none, and the ``auth`` frame is expected."""
    node = embedded_node
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(node.ws_url + "?token=" + node.tokens.issue("alice")) as ws:
            welcome = await ws.receive_json(timeout=5)
            assert welcome["type"] == "welcome" and welcome["user"] == "alice"
        async with http.ws_connect(node.ws_url + "?token=") as ws:
            await ws.send_str(json.dumps({"type": "auth", "token": node.tokens.issue("bob")}))
            welcome = await ws.receive_json(timeout=5)
            assert welcome["type"] == "welcome" and welcome["user"] == "bob"


async def test_each_failed_authentication_sends_its_error_and_closes_with_the_same_code(embedded_node: Node) -> None:
    """[R-AUTH-7] The rows of the authentication failure table: a bad signature, garbage, a wrong issuer, an
    expired token, a first frame that is not ``auth`` (another frame, binary, not JSON) each get one 4401 error
    frame with the reason the table shows, then close 4401. (No auth frame in time, 4408: test_node.py.)"""
    node = embedded_node
    secret = node.tokens._secret  # this server's own key, for a token of another issuer
    assert secret is not None
    invalid = "invalid token"
    first_frame = "the first frame must be an auth frame"
    cases: list[tuple[str | bytes, str]] = [
        (json.dumps({"type": "auth", "token": TokenAuthority("forged-" * 5).issue("al")}), invalid),
        (json.dumps({"type": "auth", "token": "garbage"}), invalid),
        (json.dumps({"type": "auth", "token": TokenAuthority(secret, issuer="elsewhere").issue("al")}), invalid),
        (json.dumps({"type": "auth", "token": node.tokens.issue("al", ttl_s=-5)}), "token expired"),
        (json.dumps({"type": "ping", "id": "p"}), first_frame),
        (json.dumps({"type": "auth", "token": node.tokens.issue("al")}).encode(), first_frame),
        ("{not json", first_frame),
    ]
    async with aiohttp.ClientSession() as http:
        for first, reason in cases:
            async with http.ws_connect(node.ws_url) as ws:
                await (ws.send_bytes(first) if isinstance(first, bytes) else ws.send_str(first))
                error = await ws.receive_json(timeout=5)
                assert error["type"] == "error" and error["code"] == Code.UNAUTHORIZED, (first, error)
                assert error["reason"].startswith(reason), (first, error)
                closing = await ws.receive(timeout=5)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), (first, closing)
                assert ws.close_code == Code.UNAUTHORIZED, first


_ROUTE = re.compile(r"`(GET|POST|DELETE) (/[^`\s]*)`")
_OPEN_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/"),
    ("GET", "/api/push/vapid"),  # a public key: the page asks for it before it subscribes (R-PUSH-1)
    ("GET", "/api/openapi.json"),
    ("POST", "/api/login"),
}
_NOT_IN_SECTION_15 = {("GET", "/ws"), ("GET", "/metrics")}
"""The WebSocket (the rest of the document) and the Prometheus endpoint (docs/operations.md)."""


def _section_15_routes() -> set[tuple[str, str]]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.split("\n## 15. HTTP API\n", 1)[1].split("\n## 16.", 1)[0]
    routes = {(method, path.split("?")[0].split("`")[0]) for method, path in _ROUTE.findall(section)}
    return {(method, path) for method, path in routes if "ROOM" not in path}  # ROOM: an example, not a route


async def test_the_http_routes_are_the_ones_section_15_names_and_need_a_token(embedded_node: Node) -> None:
    """[R-HTTP-3] Every route section 15 names is served and every API route the server serves is named there
    (the web client's static files aside, its vendored modules too); every route but the health checks, ``GET /``
    and ``POST /api/login`` answers 401 without ``Authorization: Bearer``."""
    node = embedded_node
    served = {
        (route.method, route.resource.canonical)
        for route in node.runner.app.router.routes()
        if route.method in ("GET", "POST", "DELETE") and route.resource is not None
    }
    static = {(method, path) for method, path in served if path.count("/") == 1 and "." in path}
    static |= {(method, path) for method, path in served if path.startswith("/vendor/") and path.endswith(".mjs")}
    documented = _section_15_routes()
    assert documented - served == set(), "named in section 15 but not served"
    assert served - static - _NOT_IN_SECTION_15 - documented == set(), "served but not in section 15"
    async with aiohttp.ClientSession() as http:
        for method, path in sorted(documented - _OPEN_ROUTES):
            concrete = re.sub(r"\{seq\}", "1", re.sub(r"\{(room|user|emoji|id)\}", "x", path))
            concrete += "?room_id=x" if path == "/api/messages" else ""
            async with http.request(method, node.url + concrete, json={}) as resp:
                assert resp.status == 401, (method, path, resp.status)
                assert (await resp.json())["error"]["code"] == Code.UNAUTHORIZED
        for method, path in sorted(_OPEN_ROUTES):
            body = {"name": "alice"} if path == "/api/login" else None
            async with http.request(method, node.url + path, json=body) as resp:
                assert resp.status == 200, (method, path, resp.status)


@pytest.mark.parametrize("in_progress", [63, 64])
async def test_the_server_stops_reading_a_connection_with_64_frames_in_progress(
    embedded_node: Node, monkeypatch: pytest.MonkeyPatch, in_progress: int
) -> None:
    """[R-WIRE-8] Backpressure: with 64 frames of a connection in progress the server reads nothing more from it.
    A ``history`` held in the store plus pings waiting behind it make ``in_progress`` frames; one more ping waits
    for a free place only when 64 are taken, and a malformed frame after it (decode errors are answered at once,
    without taking a place) is then not read until the ``history`` completes."""
    node = embedded_node
    await make_room(node, "alice", "r")
    store = node.service.store
    gate = asyncio.Event()
    read_before = store.read_before

    async def held(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await read_before(*args, **kwargs)

    monkeypatch.setattr(store, "read_before", held)
    alice = await Raw.open(node, "alice")
    await alice.send({"type": "history", "room": "r", "id": "h"})
    for i in range(in_progress - 1):
        await alice.send({"type": "ping", "id": f"p{i}"})
    await alice.send({"type": "ping", "id": "one-more"})
    await alice.send("{not json")
    if in_progress < 64:
        refused = await alice.recv()
        assert refused["type"] == "error" and refused["code"] == Code.BAD_FRAME
    else:
        with pytest.raises(TimeoutError):
            await alice.recv(timeout=0.5)
    gate.set()
    seen: list[dict[str, Any]] = []
    errors = 0 if in_progress < 64 else 1  # the malformed frame, read only now
    while len(seen) < in_progress + 1 + errors:
        seen.append(await alice.recv())
    assert {f.get("ref") for f in seen if f["type"] != "error"} == {"h", "one-more"} | {
        f"p{i}" for i in range(in_progress - 1)
    }
    assert [f["code"] for f in seen if f["type"] == "error"] == [Code.BAD_FRAME] * errors
    await alice.close()


async def test_a_sync_of_more_than_100_rooms_is_413_and_its_limit_defaults_to_100_clamped_to_500(
    embedded_node: Node,
) -> None:
    """[R-LIMIT-2] ``POST /api/sync`` takes at most 100 rooms (413 with code 4413 beyond); its ``limit`` is 100
    per room when absent and is clamped to 500."""
    node = embedded_node
    await make_room(node, "alice", "r")
    for i in range(600):
        await node.service.send("alice", "r", f"c{i}", str(i))
    rooms = {f"r{i}": 0 for i in range(100)}
    status, body = await api(node, "POST", "/api/sync", "alice", {"rooms": rooms})
    assert status == 200 and len(body["rooms"]) == 100
    status, body = await api(node, "POST", "/api/sync", "alice", {"rooms": {**rooms, "r": 0}})
    assert status == 413 and body["error"]["code"] == Code.TOO_LARGE
    status, body = await api(node, "POST", "/api/sync", "alice", {"rooms": {"r": 0}})
    assert len(body["rooms"]["r"]["messages"]) == 100
    status, body = await api(node, "POST", "/api/sync", "alice", {"rooms": {"r": 0}, "limit": 10_000})
    assert len(body["rooms"]["r"]["messages"]) == 500
