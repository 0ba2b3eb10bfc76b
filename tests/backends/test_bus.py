"""The Bus contract (src/roost/ports.py), run on every bus engine through the port alone.

A payload published on another node's bus (or, in process, on the same bus) must reach every sink
subscribed to its room; what the bus may lose it must report as a reset.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from roost.ports import Bus
from roost.protocol.errors import Unavailable

from .conftest import Buses
from .network import connections, cut


async def arrives(queue: asyncio.Queue[bytes], timeout: float = 10.0) -> bytes:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_a_publish_made_after_subscribe_returns_is_delivered(buses: Buses) -> None:
    """No sleep between the two: ``subscribe`` returns only once the broker confirmed it, on every server
    of a cluster (the publisher's may be another). Over many rooms, so a subscription confirmed late shows."""
    bus = await buses.open()
    peer = await buses.peer(bus)
    for n in range(20):
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        await bus.subscribe(f"r{n}", queue.put_nowait)
        await peer.publish(f"r{n}", b"first %d" % n)
        assert await arrives(queue) == b"first %d" % n


async def test_publishing_to_a_room_nobody_follows_is_not_an_error(bus: Bus) -> None:
    await bus.publish("nobody-follows", b"into the void")


async def test_every_subscription_of_a_room_gets_it_and_only_its_room(buses: Buses) -> None:
    bus = await buses.open()
    peer = await buses.peer(bus)
    one: asyncio.Queue[bytes] = asyncio.Queue()
    two: asyncio.Queue[bytes] = asyncio.Queue()
    elsewhere: asyncio.Queue[bytes] = asyncio.Queue()
    first = await bus.subscribe("r", one.put_nowait)
    await bus.subscribe("r", two.put_nowait)
    await bus.subscribe("other", elsewhere.put_nowait)
    await peer.publish("r", b"a")
    assert (await arrives(one), await arrives(two)) == (b"a", b"a")
    await first.aclose()  # the room's other subscription stays
    await peer.publish("r", b"b")
    assert await arrives(two) == b"b"
    await peer.publish("other", b"c")
    assert await arrives(elsewhere) == b"c"  # delivered after "b": by now "b" would have reached ``one``
    assert one.empty()


async def test_following_a_room_again_right_after_leaving_it_works(buses: Buses) -> None:
    """The last subscription of a room closed and a new one opened at once, many times: each new one gets
    the room's payloads and no reset comes. (On Redis Cluster the confirmation of the unsubscribe came
    after the new subscribe and was taken for a slot migration: the listener died, the subscribe got
    4503.)"""
    bus = await buses.open()
    peer = await buses.peer(bus)
    resets: list[int] = []
    bus.on_reset(lambda: resets.append(1))
    for n in range(20):
        old = await bus.subscribe("again", lambda data: None)
        await old.aclose()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        new = await bus.subscribe("again", queue.put_nowait)
        await peer.publish("again", b"round %d" % n)
        assert await arrives(queue) == b"round %d" % n
        await new.aclose()
    assert resets == []


async def test_many_rooms_followed_at_once_on_a_new_bus_all_deliver(buses: Buses) -> None:
    """Subscribes to many rooms made all at once, before the bus has connected anywhere: each is confirmed
    and delivers. (On Redis Cluster a shard listener subscribed every channel it had waiting in one SSUBSCRIBE;
    channels of two slots made it fail with CROSSSLOT and the listener died: a node's two notice
    subscriptions at start did that.)"""
    bus = await buses.open()
    peer = await buses.peer(bus)
    rooms = [f"many-{i}" for i in range(24)]
    queues: dict[str, asyncio.Queue[bytes]] = {room: asyncio.Queue() for room in rooms}
    await asyncio.gather(*(bus.subscribe(room, queues[room].put_nowait) for room in rooms))
    for room in rooms:
        await peer.publish(room, room.encode())
    for room in rooms:
        assert await arrives(queues[room]) == room.encode()


async def test_a_lost_connection_is_reported_as_a_reset_and_delivery_resumes(networked_buses: Buses) -> None:
    """Cut the subscriber's connections, as a broken network would: the bus must say it may have lost
    messages (every ``on_reset`` callback runs), and its subscriptions must deliver again afterwards."""
    peer = await networked_buses.open()
    await peer.publish("r", b"warm up")  # the peer's own connections exist before the subscriber's
    known = set(connections())
    bus = await networked_buses.open()
    resets: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    for event in resets:
        bus.on_reset(event.set)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    await bus.subscribe("r", queue.put_nowait)
    await peer.publish("r", b"before")
    assert await arrives(queue) == b"before"
    assert cut(set(connections()) - known) > 0
    for event in resets:
        await asyncio.wait_for(event.wait(), 15)
    # At most once: a publish racing the resubscription may be lost, which is what the reset is for.
    # Delivery must resume, so publish until one arrives.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        token = secrets.token_hex(4).encode()
        await peer.publish("r", token)
        try:
            while (await arrives(queue, 0.3)) != token:
                pass
            break
        except TimeoutError:
            assert asyncio.get_running_loop().time() < deadline, "no delivery after the reset"


async def test_a_closed_bus_delivers_nothing_and_refuses(buses: Buses) -> None:
    bus = await buses.open()
    peer = await buses.open() if buses.engine.shared else None
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    await bus.subscribe("r", queue.put_nowait)
    await bus.aclose()
    with pytest.raises(Unavailable):
        await bus.publish("r", b"late")
    with pytest.raises(Unavailable):
        await bus.subscribe("r", queue.put_nowait)
    if peer is not None:
        witness: asyncio.Queue[bytes] = asyncio.Queue()
        await peer.subscribe("r", witness.put_nowait)
        await peer.publish("r", b"after close")
        assert await arrives(witness) == b"after close"  # delivered by now, had the closed bus still listened
    assert queue.empty()
    await bus.aclose()  # closing twice is harmless
