"""Presence goes through the bus only: online when following a room, offline when gone, across nodes."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from roost.config import Settings
from roost.node import Node, serve

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


async def test_followers_see_each_other_come_and_go(node: Node) -> None:
    """[R-PRESENCE-1] Following a room brings one ``online`` per user online there (oneself included), then only
    changes; nothing is stored."""
    await make_room(node, "alice", "r", "bob")
    alice = await Raw.open(node, "alice")
    alice.skip_types = set()
    await alice.request({"type": "subscribe", "room": "r", "id": "s"})
    first = await alice.until(lambda f: f["type"] == "presence")
    assert first == {"type": "presence", "room": "r", "user": "alice", "status": "online"}
    bob = await Raw.open(node, "bob")
    bob.skip_types = set()
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    seen_by_bob = await bob.until(lambda f: f["type"] == "presence" and f["user"] == "alice")
    assert seen_by_bob["status"] == "online"
    assert (await alice.until(lambda f: f["type"] == "presence" and f["user"] == "bob"))["status"] == "online"
    await bob.close()
    gone = await alice.until(lambda f: f["type"] == "presence" and f["user"] == "bob")
    assert gone["status"] == "offline"
    assert (await node.backends.store.position("r")).head == 2  # nothing about presence was stored
    await alice.close()


async def test_a_user_on_two_nodes_stays_online_until_the_last_goes(shared: Settings) -> None:
    async with serve(shared) as one, serve(replace(shared, data_dir=shared.data_dir + "-2")) as two:
        await make_room(one, "alice", "r", "bob")
        watcher = await Raw.open(one, "alice")
        watcher.skip_types = set()
        await watcher.request({"type": "subscribe", "room": "r", "id": "s"})
        bob_one, bob_two = await Raw.open(one, "bob"), await Raw.open(two, "bob")
        for bob in (bob_one, bob_two):
            await bob.request({"type": "subscribe", "room": "r", "id": "s"})
        online = await watcher.until(lambda f: f["type"] == "presence" and f["user"] == "bob")
        assert online["status"] == "online"
        await bob_two.close()
        with pytest.raises(TimeoutError):  # bob is still online through node one
            await watcher.until(lambda f: f["type"] == "presence" and f["user"] == "bob", timeout=0.5)
        await bob_one.close()
        offline = await watcher.until(lambda f: f["type"] == "presence" and f["user"] == "bob")
        assert offline["status"] == "offline"
        await watcher.close()


async def test_a_node_that_dies_takes_its_users_offline_within_four_intervals(shared: Settings) -> None:
    """[R-PRESENCE-2] A node that stops announcing (dead, no goodbye) takes its users offline on the other
    nodes when their announcements expire: three presence intervals after the last one, noticed at the next
    sweep, so within four intervals of the death and no sooner than two."""
    interval = 0.3
    settings = with_limits(shared, presence_interval_s=interval)
    async with serve(settings) as one, serve(replace(settings, data_dir=settings.data_dir + "-2")) as two:
        await make_room(one, "alice", "r", "bob")
        watcher = await Raw.open(one, "alice")
        watcher.skip_types = set()
        await watcher.request({"type": "subscribe", "room": "r", "id": "s"})
        bob = await Raw.open(two, "bob")
        await bob.request({"type": "subscribe", "room": "r", "id": "s"})
        online = await watcher.until(lambda f: f["type"] == "presence" and f["user"] == "bob")
        assert online["status"] == "online"
        heartbeat = two.hub.presence._task  # the dead node's announcements stop; no offline is ever sent
        assert heartbeat is not None
        heartbeat.cancel()
        died = time.monotonic()
        offline = await watcher.until(lambda f: f["type"] == "presence" and f["user"] == "bob", timeout=10)
        elapsed = time.monotonic() - died
        assert offline["status"] == "offline"
        assert 2 * interval - 0.05 <= elapsed <= 4 * interval + 0.5, elapsed
        await watcher.close()
        await bob.close()
