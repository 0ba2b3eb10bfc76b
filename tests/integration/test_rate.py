"""Rate limits as docs/protocol.md section 13 states them, against a real server on every engine: sends
(with edits, deletes and reactions) per user over all the user's connections and HTTP on one node, typing
per user and dropped silently. The document used to say per connection and WebSocket only, and typing not
limited at all."""

from __future__ import annotations

from typing import Any

import aiohttp

from roost.config import Settings
from roost.node import serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw

BURST = 10


async def test_sends_are_limited_per_user_over_every_connection_and_http(settings: Settings) -> None:
    """[R-RATE-1] Two connections of one user share one bucket of BURST sends (the refill is negligible
    here): exactly BURST acks in all, the rest 4429 with `retry_after_s`; then an HTTP send and a reaction
    are refused too (HTTP 429 with `Retry-After`), and another user is not affected."""
    limited = with_limits(settings, sends_per_s=0.001, send_burst=BURST)
    async with serve(limited) as node:
        await make_room(node, "alice", "r", "bob")
        phone, laptop = await Raw.open(node, "alice"), await Raw.open(node, "alice")
        for i in range(BURST):
            await phone.send({"type": "send", "room": "r", "cmid": f"p{i}", "body": "x", "id": f"p{i}"})
            await laptop.send({"type": "send", "room": "r", "cmid": f"l{i}", "body": "x", "id": f"l{i}"})
        replies: list[dict[str, Any]] = []
        for device in (phone, laptop):
            replies += [await device.until(lambda f: f["type"] in ("ack", "error")) for _ in range(BURST)]
        acked = [r for r in replies if r["type"] == "ack"]
        refused = [r for r in replies if r["type"] == "error"]
        assert len(acked) == BURST and len(refused) == BURST
        assert all(r["code"] == Code.RATE_LIMITED and r["retry_after_s"] > 0 for r in refused)
        react = await phone.request({"type": "react", "room": "r", "target": acked[0]["seq"], "emoji": "+", "id": "x"})
        assert react["code"] == Code.RATE_LIMITED
        headers = {"Authorization": f"Bearer {node.tokens.issue('alice')}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{node.url}/api/rooms/r/messages", json={"cmid": "h1", "body": "x"}, headers=headers) as resp,
        ):
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"]["code"] == Code.RATE_LIMITED
        assert (await node.backends.store.position("r")).head == 2 + BURST
        bob = await Raw.open(node, "bob")
        assert (await bob.request({"type": "send", "room": "r", "cmid": "b", "body": "x", "id": "b"}))["type"] == "ack"
        for client in (phone, laptop, bob):
            await client.close()


async def test_typing_is_limited_per_user_and_the_excess_is_dropped_silently(settings: Settings) -> None:
    """[R-RATE-2] Typing signals: `typing_per_s` per user, bursts of twice that; over it a signal is dropped
    with no error (it is ephemeral). Ten signals at once from two connections: four reach the room."""
    async with serve(with_limits(settings, typing_per_s=2.0)) as node:
        await make_room(node, "alice", "r", "bob")
        bob = await Raw.open(node, "bob")
        await bob.request({"type": "subscribe", "room": "r", "id": "s"})
        await bob.until(lambda f: f["type"] == "live")
        phone, laptop = await Raw.open(node, "alice"), await Raw.open(node, "alice")
        for _ in range(5):
            await phone.send({"type": "typing", "room": "r"})
            await laptop.send({"type": "typing", "room": "r"})
        for device in (phone, laptop):
            assert await device.request({"type": "ping", "id": "p"}) == {"type": "pong", "ref": "p"}
            assert not device.frames  # no error for the dropped signals
        received: list[dict[str, Any]] = []
        while True:
            try:
                received.append(await bob.recv(timeout=0.5))
            except TimeoutError:
                break
        typing = [f for f in received if f["type"] == "typing"]
        assert len(typing) == 4, received  # the burst: typing_per_s * 2
        for client in (phone, laptop, bob):
            await client.close()
