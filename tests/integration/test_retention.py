"""Retention per room (``keep=N`` in the store URL): old messages go, clients get 4410, ids stay."""

from __future__ import annotations

from dataclasses import replace

import pytest

from roost.config import Settings
from roost.node import serve
from roost.protocol.codes import Code

from .test_send import make_room
from .wsutil import Raw


@pytest.fixture
def kept(shared: Settings) -> Settings:
    assert shared.store is not None
    return replace(shared, store=shared.store + "&keep=5")


async def test_a_room_keeps_its_newest_messages_and_says_so(kept: Settings) -> None:
    async with serve(kept) as node:
        await make_room(node, "alice", "r")
        first = await node.service.send("alice", "r", "c0", "the oldest")
        for i in range(1, 12):
            await node.service.send("alice", "r", f"c{i}", f"m{i}")
        position = await node.backends.store.position("r")
        assert position.head == 13 and position.first == 9
        page = await node.backends.store.read("r", 0, 100)
        assert [m.seq for m in page.messages] == [9, 10, 11, 12, 13]
        alice = await Raw.open(node, "alice")
        reply = await alice.request({"type": "subscribe", "room": "r", "after": 2, "id": "s"})
        assert reply["type"] == "error" and reply["code"] == Code.RESYNC_REQUIRED and reply["first"] == 9
        retry = await node.service.send("alice", "r", "c0", "the oldest")  # long trimmed: still one message
        assert retry.duplicate and retry.message.seq == first.message.seq
        assert (await node.backends.store.position("r")).head == 13
        await alice.close()
