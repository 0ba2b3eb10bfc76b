"""The node as a whole: restart keeps idempotency, typing is never stored, limits, expiry, the page at /."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


async def test_idempotency_holds_across_a_restart(settings: Settings) -> None:
    """[R-SEND-1] The idempotency key outlives a restart of the server."""
    async with serve(settings) as node:
        await make_room(node, "alice", "r")
        first = await node.service.send("alice", "r", "k1", "survives restarts")
    async with serve(settings) as node:
        retry = await node.service.send("alice", "r", "k1", "survives restarts")
        assert retry.duplicate and retry.message.seq == first.message.seq
        assert (await node.backends.store.position("r")).head == first.message.seq
        fresh = await node.service.send("alice", "r", "k2", "next")
        assert fresh.message.seq == first.message.seq + 1


async def test_typing_reaches_subscribers_and_is_never_stored(node: Node) -> None:
    """[R-TYPING-1] A typing event reaches the room's followers and stores nothing (the head does not move)."""
    await make_room(node, "alice", "r", "bob")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    alice = await Raw.open(node, "alice")
    await alice.send({"type": "typing", "room": "r"})
    event = await bob.until(lambda f: f["type"] == "typing")
    assert event == {"type": "typing", "room": "r", "user": "alice"}
    assert (await node.backends.store.position("r")).head == 2
    await alice.close()
    await bob.close()


async def test_a_flood_is_rate_limited_with_retry_after(settings: Settings) -> None:
    async with serve(with_limits(settings, sends_per_s=5.0, send_burst=5)) as node:
        await make_room(node, "alice", "r")
        alice = await Raw.open(node, "alice")
        for i in range(20):
            await alice.send({"type": "send", "room": "r", "cmid": f"c{i}", "body": "spam", "id": str(i)})
        replies = [await alice.until(lambda f: f["type"] in ("ack", "error")) for _ in range(20)]
        limited = [r for r in replies if r["type"] == "error"]
        assert limited and all(r["code"] == Code.RATE_LIMITED and r["retry_after_s"] > 0 for r in limited)
        acked = [r for r in replies if r["type"] == "ack"]
        assert len(acked) + len(limited) == 20
        assert (await node.backends.store.position("r")).head == 1 + len(acked)
        await alice.close()


async def test_a_connection_is_closed_when_its_token_expires(node: Node) -> None:
    """[R-AUTH-6] [R-SEC-6] Mid-connection expiry: an error frame 4401 "token expired", then close 4401."""
    await make_room(node, "alice", "r")
    short = node.tokens.issue("alice", ttl_s=1)
    async with aiohttp.ClientSession() as http, http.ws_connect(node.ws_url + "?token=" + short) as ws:
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome"
        error = await ws.receive_json(timeout=5)
        assert error == {"type": "error", "code": Code.UNAUTHORIZED, "reason": "token expired"}
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == Code.UNAUTHORIZED


async def test_an_unauthenticated_connection_times_out(settings: Settings) -> None:
    """[R-AUTH-2] [R-AUTH-3] No ``auth`` frame within the auth timeout: a 4408 error frame, then a close with 4408."""
    async with (
        serve(with_limits(settings, auth_timeout_s=0.3)) as node,
        aiohttp.ClientSession() as http,
        http.ws_connect(node.ws_url) as ws,
    ):
        error = await ws.receive_json(timeout=5)
        assert error["code"] == Code.AUTH_TIMEOUT
        await ws.receive(timeout=5)
        assert ws.close_code == Code.AUTH_TIMEOUT


async def test_the_chat_page_is_served_and_renders_text_not_html(node: Node) -> None:
    async with aiohttp.ClientSession() as http, http.get(node.url + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert "<title>Roost</title>" in page and "/ws" in page
    assert "innerHTML" not in page  # messages and names go through textContent only


async def test_a_second_server_cannot_open_the_same_data_directory(embedded_settings: Settings) -> None:
    """A mistake, not an outage: the second node stops at once instead of waiting for the engines."""
    from roost.protocol.errors import UsageError

    async with serve(embedded_settings):
        with pytest.raises(UsageError, match="is in use by another process"):
            async with serve(embedded_settings):
                pass


async def test_shutdown_tells_clients_to_go_elsewhere(settings: Settings) -> None:
    async with serve(settings) as node:
        await make_room(node, "alice", "r")
        alice = await Raw.open(node, "alice")
        closing = asyncio.create_task(alice.ws.receive(timeout=5))
    await closing
    assert alice.ws.close_code == Code.GOING_AWAY
    await alice.close()
