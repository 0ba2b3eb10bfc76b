"""The `ref` rule (docs/protocol.md section 4), against a real server: every reply to a frame, and every error
it causes, carries the frame's `id` as `ref` whenever the frame is a JSON object whose `id` is a string,
including frames that fail to decode; frames that are not replies (events, a 4410 or 4403 that ends an
established subscription) carry none. The outsider found three answers to this in the document, and a decoder
that dropped the `id` when `room` was a number."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aiohttp

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..backends import cleanup, make
from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


async def _first_frames(node: Node, first: str, *, query: str = "") -> tuple[dict[str, Any], int | None]:
    """Open a socket, send ``first`` (unless empty), return the first server frame and the close code."""
    async with aiohttp.ClientSession() as http, http.ws_connect(node.ws_url + query) as ws:
        if first:
            await ws.send_str(first)
        frame = await ws.receive_json(timeout=5)
        if frame["type"] == "error":
            await ws.receive(timeout=5)
        return frame, ws.close_code


async def test_welcome_echoes_the_auth_frames_id(embedded_node: Node) -> None:
    """[R-REF-1] `welcome` answers the `auth` frame, so it carries its `id`; with `?token=` there is no frame
    and no `ref`."""
    node = embedded_node
    token = node.tokens.issue("alice")
    welcome, _ = await _first_frames(node, json.dumps({"type": "auth", "token": token, "id": "a1"}))
    assert welcome["type"] == "welcome" and welcome["ref"] == "a1"
    plain, _ = await _first_frames(node, json.dumps({"type": "auth", "token": token}))
    assert plain["type"] == "welcome" and "ref" not in plain
    queried, _ = await _first_frames(node, "", query=f"?token={token}")
    assert queried["type"] == "welcome" and "ref" not in queried


async def test_a_refused_authentication_echoes_the_id_it_could_read(embedded_node: Node) -> None:
    """[R-REF-1] The 4401 error that ends a failed authentication names the first frame's `id`."""
    node = embedded_node
    bad_token, code = await _first_frames(node, json.dumps({"type": "auth", "token": "garbage", "id": "a2"}))
    assert bad_token["code"] == Code.UNAUTHORIZED and bad_token["ref"] == "a2" and code == Code.UNAUTHORIZED
    not_auth, code = await _first_frames(node, json.dumps({"type": "ping", "id": "a3"}))
    assert not_auth["code"] == Code.UNAUTHORIZED and not_auth["ref"] == "a3" and code == Code.UNAUTHORIZED
    not_json, _ = await _first_frames(node, "not json")
    assert not_json["code"] == Code.UNAUTHORIZED and "ref" not in not_json


async def test_decode_errors_echo_the_id_whenever_it_is_a_string(embedded_node: Node) -> None:
    """[R-REF-2] Unknown type, missing field, a mistyped field (also `room` as a number, which used to lose
    the `id`): 4400 with `ref`, and `room` when it is a string. No `ref` when there is no string `id` to read:
    malformed JSON, a JSON array, an `id` that is a number."""
    node = embedded_node
    alice = await Raw.open(node, "alice")
    cases: list[tuple[Any, dict[str, Any]]] = [
        ({"type": "hello", "id": "d1"}, {"ref": "d1"}),
        ({"type": "send", "room": "r", "cmid": "c", "id": "d2"}, {"ref": "d2", "room": "r"}),
        ({"type": "send", "room": 5, "cmid": "c", "body": "x", "id": "d3"}, {"ref": "d3"}),
        ({"type": "subscribe", "room": "r", "after": "one", "id": "d4"}, {"ref": "d4", "room": "r"}),
        ({"type": "history", "room": ["r"], "id": "d5"}, {"ref": "d5"}),
    ]
    for frame, expected in cases:
        await alice.send(frame)
        error = await alice.recv()
        assert error["type"] == "error" and error["code"] == Code.BAD_FRAME, (frame, error)
        assert {k: error.get(k) for k in ("ref", "room") if k in error} == expected, (frame, error)
    for unreadable in ("not json", json.dumps([{"type": "ping", "id": "x"}]), json.dumps({"type": "ping", "id": 7})):
        await alice.send(unreadable)
        error = await alice.recv()
        assert error["code"] == Code.BAD_FRAME and "ref" not in error, (unreadable, error)
    await alice.close()


async def test_a_frame_over_the_limit_is_refused_with_its_id(embedded_settings: Settings) -> None:
    """[R-REF-2] 4413 for a frame over `max_frame_bytes` carries its `id` too; the connection stays open."""
    async with serve(with_limits(embedded_settings, max_frame_bytes=1024)) as node:
        await make_room(node, "alice", "r")
        alice = await Raw.open(node, "alice")
        await alice.send({"type": "send", "room": "r", "cmid": "big", "body": "x" * 2000, "id": "big"})
        error = await alice.recv()
        assert error["code"] == Code.TOO_LARGE and error["ref"] == "big" and error["room"] == "r"
        assert (await alice.request({"type": "ping", "id": "p"}))["type"] == "pong"
        await alice.close()


async def test_typing_errors_echo_the_id_and_success_answers_nothing(embedded_node: Node) -> None:
    """[R-REF-1] `typing` may carry an `id` like every frame: no reply on success, its errors carry `ref`."""
    node = embedded_node
    await make_room(node, "alice", "r")
    bob = await Raw.open(node, "bob")
    refused = await bob.request({"type": "typing", "room": "r", "id": "t1"})
    assert refused["code"] == Code.FORBIDDEN and refused["room"] == "r"
    await bob.send({"type": "typing", "room": "r"})
    anonymous = await bob.recv()
    assert anonymous["code"] == Code.FORBIDDEN and "ref" not in anonymous
    alice = await Raw.open(node, "alice")
    await alice.send({"type": "typing", "room": "r", "id": "t2"})
    assert (await alice.request({"type": "ping", "id": "p"})) == {"type": "pong", "ref": "p"}
    assert not alice.frames  # nothing answered the typing frame
    await alice.close()
    await bob.close()


async def test_a_4410_answering_subscribe_has_its_ref_a_later_one_has_none(embedded_settings: Settings) -> None:
    """[R-REF-3] A 4410 instead of `subscribed` is the reply: `ref`. A 4410 that ends a subscription already
    confirmed is an event: no `ref` (handle it by `room`). Here the room's history is recreated under a live
    subscription (its epoch changes in Redis, as after a data loss) and the head check notices."""
    chosen = make("redis")
    settings = replace(embedded_settings, store=chosen.store, bus=chosen.bus)
    try:
        async with serve(with_limits(settings, head_check_s=0.2)) as node:
            await make_room(node, "alice", "r")
            alice = await Raw.open(node, "alice")
            refused = await alice.request({"type": "subscribe", "room": "r", "after": 9, "id": "s0"})
            assert refused["code"] == Code.RESYNC_REQUIRED and refused["ref"] == "s0"
            subscribed = await alice.request({"type": "subscribe", "room": "r", "after": 0, "id": "s1"})
            assert subscribed["type"] == "subscribed"
            await alice.until(lambda f: f["type"] == "live")
            store: Any = node.backends.store
            await store.client.hset(store.keys("r").meta, "epoch", "recreated")
            later = await alice.until(lambda f: f["type"] == "error", timeout=10)
            assert later["code"] == Code.RESYNC_REQUIRED and later["room"] == "r" and later["epoch"] == "recreated"
            assert "ref" not in later
            await alice.close()
    finally:
        await cleanup(chosen)
