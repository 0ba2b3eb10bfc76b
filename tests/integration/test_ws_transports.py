"""Both WebSocket servers (``--ws-transport aiohttp|picows``) speak the same wire: one short exchange on each.

The rest of the WebSocket suite runs on picows with ``ROOST_TEST_WS_TRANSPORT=picows`` (tests/conftest.py); this
file is the check that stays in every run.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest

from roost.config import Settings
from roost.node import Node, serve

from .test_send import make_room
from .wsutil import Raw


@pytest.fixture(params=["aiohttp", "picows"])
async def any_node(request: pytest.FixtureRequest, embedded_settings: Settings) -> AsyncIterator[Node]:
    async with serve(replace(embedded_settings, ws_transport=request.param)) as running:
        yield running


async def test_auth_join_subscribe_send_and_catch_up_after_a_reconnect(any_node: Node) -> None:
    """[R-AUTH-2] [R-AUTH-5] [R-WIRE-3] An auth frame, then a subscription, a send and its live delivery; after a
    reconnect with ``?token=``, the catch-up from the cursor brings what was sent meanwhile, then ``live``."""
    node = any_node
    await make_room(node, "alice", "r")
    bob = await Raw.open(node, "bob")  # the auth frame
    joined = await bob.request({"type": "join", "room": "r", "id": "j"})
    assert joined["type"] == "ok", joined
    sub = await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    assert sub["type"] == "subscribed", sub
    await bob.send({"type": "send", "room": "r", "cmid": "m1", "body": "hello", "id": "1"})
    seen: dict[str, dict[str, object]] = {}
    while len(seen) < 2:  # the ack and the live message, in either order
        frame = await bob.until(lambda f: f.get("ref") == "1" or (f["type"] == "msg" and f.get("cmid") == "m1"))
        seen[frame["type"]] = frame
    assert seen["ack"]["seq"] == seen["msg"]["seq"] and seen["msg"]["body"] == "hello", seen
    cursor = seen["msg"]["seq"]
    assert isinstance(cursor, int)
    await bob.close()
    await node.service.send("alice", "r", "m2", "while bob was away")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{node.ws_url}?token={node.tokens.issue('bob')}")
        again = Raw(ws, http)
        welcome = await again.recv()
        assert welcome["type"] == "welcome" and welcome["user"] == "bob", welcome
        await again.send({"type": "subscribe", "room": "r", "after": cursor, "id": "s2"})
        caught = await again.until(lambda f: f["type"] == "msg" and f.get("room") == "r")
        assert (caught["cmid"], caught["body"], caught["seq"]) == ("m2", "while bob was away", cursor + 1)
        assert (await again.until(lambda f: f["type"] == "live"))["seq"] == cursor + 1
        await ws.close()


async def test_the_page_finds_the_websocket_and_may_connect_to_it(any_node: Node) -> None:
    """The page's ``roost-websocket`` meta names the WebSocket (on the picows port when it has one), its
    Content-Security-Policy lets it connect there, and a browser's Origin (the page's) is accepted there while
    another site's is refused with 403 before the upgrade."""
    node = any_node
    async with aiohttp.ClientSession() as http:
        async with http.get(node.url + "/") as response:
            page = await response.text()
            policy = response.headers["Content-Security-Policy"]
        if node.ws_port is None:
            assert '<meta name="roost-websocket" content="/ws">' in page
        else:
            where = f"//127.0.0.1:{node.ws_port}"
            assert f'<meta name="roost-websocket" content="{where}/ws">' in page
            assert f"ws:{where}" in policy
        ws = await http.ws_connect(node.ws_url, headers={"Origin": node.url})
        await ws.send_str(json.dumps({"type": "auth", "token": node.tokens.issue("carol")}))
        welcome = json.loads((await ws.receive(timeout=5)).data)
        assert welcome["type"] == "welcome", welcome
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(node.ws_url, headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
