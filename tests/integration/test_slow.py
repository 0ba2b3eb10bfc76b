"""Contract point 7: a slow reader is cut off with 4508 and recovers; dead peers are found by heartbeats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


@pytest.fixture
async def tight_node(settings: Settings) -> AsyncIterator[Node]:
    async with serve(with_limits(settings, outbox_frames=64, outbox_bytes=256 * 1024, heartbeat_s=300)) as node:
        yield node


async def test_a_slow_consumer_is_disconnected_and_recovers_from_the_store(tight_node: Node) -> None:
    node = tight_node
    await make_room(node, "alice", "r", "slow")
    slow = await Raw.open(node, "slow")
    await slow.request({"type": "subscribe", "room": "r", "id": "s"})
    await slow.until(lambda f: f["type"] == "live")
    # The slow client stops reading; the kernel buffers fill, then the server's outbox does.
    # 24 MB: more than the loopback socket buffers of both ends can hold. One send at a time, so
    # the bus delivers in seq order: concurrent sends may be published out of order, and a gap puts
    # the session into paced catch-up, which waits for the reader instead of cutting it off.
    body = "x" * 16000
    for i in range(1500):
        await node.service.send("alice", "r", f"c{i}", body)
    last = 0
    while True:  # drain what the kernel buffered until the close frame
        msg = await slow.ws.receive(timeout=60)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            close_code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else slow.ws.close_code
            break
        for part in msg.data.split("\n"):
            if part and json.loads(part).get("type") == "msg":
                last = json.loads(part)["seq"]
    assert close_code == Code.SLOW_CONSUMER
    await slow.close()
    # The server is healthy and the client resumes from its cursor with nothing lost.
    again = await Raw.open(node, "slow")
    await again.send({"type": "subscribe", "room": "r", "after": last, "id": "s2"})
    head = (await node.backends.store.position("r")).head
    seqs = []
    while not seqs or seqs[-1] < head:
        frame = await again.until(lambda f: f["type"] == "msg", timeout=10)
        seqs.append(frame["seq"])
    assert seqs == list(range(last + 1, head + 1))
    await again.close()


async def test_a_dead_peer_is_detected_by_heartbeat(settings: Settings) -> None:
    async with serve(with_limits(settings, heartbeat_s=0.5)) as node:
        await _dead_peer(node)


async def _dead_peer(node: Node) -> None:
    await make_room(node, "alice", "r")
    silent = await Raw.open(node, "alice", autoping=False)  # never answers pings
    assert len(node.websocket.sessions) == 1
    await wait_until("the silent peer dropped", lambda: not node.websocket.sessions, 5)
    await silent.close()
