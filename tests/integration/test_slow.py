"""Contract point 7: a slow reader is cut off with 4508, within a bound, on every engine, and recovers; dead
peers are found by heartbeats.

The rule (docs/protocol.md, "Slow consumers") has two triggers, live traffic queued over the outbox limit and
one write to the socket waiting ``write_timeout_s`` (catch-up included), and one way out: the close frame 4508
if the socket takes it within ``close_timeout_s``, else the connection is aborted (the client sees it end
without a close frame, 1006). Before the write timeout a client that stopped reading in a catch-up, or whose
live stream had a gap (PostgreSQL, where concurrent commits publish out of seq order), was paced from the
store and never cut off, and a 4508 whose close frame could not be written waited for the heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from roost.chaos.infra import wait_until
from roost.config import Settings
from roost.gateway.session import Session
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw

WRITE_TIMEOUT_S = 1.0
CLOSE_TIMEOUT_S = 2.0
BODY = "x" * 16000
FLOOD = 1500
"""24 MB of 16 kB messages: more than the loopback socket buffers of both ends can hold."""


@pytest.fixture
async def tight_node(settings: Settings) -> AsyncIterator[Node]:
    tight = with_limits(
        settings,
        outbox_frames=64,
        outbox_bytes=256 * 1024,
        heartbeat_s=300,
        write_timeout_s=WRITE_TIMEOUT_S,
        close_timeout_s=CLOSE_TIMEOUT_S,
    )
    async with serve(tight) as node:
        yield node


def _only_session(node: Node) -> Session:
    (session,) = node.websocket.sessions
    return session


async def _flood(node: Node, session: Session, *, writers: int) -> float:
    """Send up to ``FLOOD`` messages with ``writers`` concurrent senders until the server gives the
    session up; return when the last send ended."""
    sent = iter(range(FLOOD))

    async def writer() -> None:
        for i in sent:
            if session.closed:
                return
            await node.service.send("alice", "r", f"c{i}", BODY)

    await asyncio.gather(*(writer() for _ in range(writers)))
    return time.monotonic()


async def _gone(node: Node, session: Session, within: float) -> tuple[float, float]:
    """Wait for the server to decide (``closed``) and to let go of the connection; return both times."""
    decided = 0.0
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if session.closed and not decided:
            decided = time.monotonic()
        if decided and session not in node.websocket.sessions:
            return decided, time.monotonic()
        await asyncio.sleep(0.01)  # a wait helper's poll: it times two moments, closed and released
    raise AssertionError(f"the session is still held after {within} s (closed={session.closed})")


async def _read_to_the_end(client: Raw) -> tuple[int | None, int]:
    """Read what the kernel buffered until the connection ends: (close code, last msg seq)."""
    last = 0
    while True:
        try:
            msg = await client.ws.receive(timeout=30)
        except (aiohttp.ClientError, ConnectionError):
            return client.ws.close_code, last
        if msg.type is not aiohttp.WSMsgType.TEXT:
            code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else client.ws.close_code
            return code, last
        for part in msg.data.split("\n"):
            if part and json.loads(part).get("type") == "msg":
                last = json.loads(part)["seq"]


async def _resume_gets_everything(node: Node, last: int) -> None:
    again = await Raw.open(node, "slow")
    await again.send({"type": "subscribe", "room": "r", "after": last, "id": "s2"})
    head = (await node.backends.store.position("r")).head
    seqs: list[int] = []
    while not seqs or seqs[-1] < head:
        frame = await again.until(lambda f: f["type"] == "msg", timeout=10)
        seqs.append(frame["seq"])
    assert seqs == list(range(last + 1, head + 1))
    await again.close()


async def test_a_slow_consumer_that_can_take_the_close_frame_sees_4508_and_recovers(tight_node: Node) -> None:
    """[R-SLOW-1] [R-SLOW-2] The client stops reading while live traffic floods in; it starts reading again
    as soon as the server gives up on it, within the close timeout: it gets every byte that was queued in
    the socket, then the close frame 4508, and resumes from its cursor with nothing lost."""
    node = tight_node
    await make_room(node, "alice", "r", "slow")
    slow = await Raw.open(node, "slow")
    await slow.request({"type": "subscribe", "room": "r", "id": "s"})
    await slow.until(lambda f: f["type"] == "live")
    session = _only_session(node)
    # One send at a time, so the bus delivers in seq order (the live-overflow trigger, no gap repair).
    flood = asyncio.create_task(_flood(node, session, writers=1))
    while not session.closed and not flood.done():
        await asyncio.sleep(0.005)  # a wait helper's poll, racing the flood
    assert session.closed, "the flood ended and the server never gave up on a client that reads nothing"
    code, last = await _read_to_the_end(slow)
    await flood
    assert code == Code.SLOW_CONSUMER
    assert session.close_code == Code.SLOW_CONSUMER
    await slow.close()
    await _resume_gets_everything(node, last)


async def test_a_client_that_reads_nothing_is_cut_off_within_the_bound(tight_node: Node) -> None:
    """[R-SLOW-1] [R-SLOW-3] Live flood from concurrent senders (on PostgreSQL their publishes overtake each
    other, so the session repairs gaps from the store, paced): the client never reads. The server decides
    4508 within write_timeout_s of the last send and lets go of the socket within close_timeout_s of
    deciding; when the client reads again it finds the buffered messages, then either the close frame 4508
    or a connection that ended without one (1006), and resumes with nothing lost."""
    node = tight_node
    await make_room(node, "alice", "r", "slow")
    slow = await Raw.open(node, "slow")
    await slow.request({"type": "subscribe", "room": "r", "id": "s"})
    await slow.until(lambda f: f["type"] == "live")
    session = _only_session(node)
    flood_ended = await _flood(node, session, writers=8)
    bound = WRITE_TIMEOUT_S + CLOSE_TIMEOUT_S
    decided, gone = await _gone(node, session, within=bound + 5)
    measured = f"decided {decided - flood_ended:+.2f} s after the flood, socket gone {gone - decided:.2f} s later"
    print(measured)
    assert decided - flood_ended <= WRITE_TIMEOUT_S + 0.5, measured
    assert gone - decided <= CLOSE_TIMEOUT_S + 0.5, measured
    assert session.close_code == Code.SLOW_CONSUMER, measured
    code, last = await _read_to_the_end(slow)
    assert code in (Code.SLOW_CONSUMER, aiohttp.WSCloseCode.ABNORMAL_CLOSURE), (code, measured)
    await slow.close()
    await _resume_gets_everything(node, last)


async def test_a_client_that_stops_reading_in_its_catch_up_is_cut_off_within_the_bound(tight_node: Node) -> None:
    """[R-SLOW-1] [R-SLOW-3] Catch-up is paced by the reader and never counts against the outbox, but a
    reader that takes nothing is still cut off: subscribed from seq 0 to a room of 16 MB, reading nothing,
    the client is given up within write_timeout_s + close_timeout_s of the server's last write."""
    node = tight_node
    await make_room(node, "alice", "r", "slow")
    for i in range(1000):
        await node.service.send("alice", "r", f"c{i}", BODY)
    slow = await Raw.open(node, "slow")
    session = _only_session(node)
    subscribed = time.monotonic()
    await slow.send({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    bound = WRITE_TIMEOUT_S + CLOSE_TIMEOUT_S
    decided, gone = await _gone(node, session, within=bound + 10)
    measured = f"decided {decided - subscribed:.2f} s after subscribing, socket gone {gone - decided:.2f} s later"
    print(measured)
    assert gone - decided <= CLOSE_TIMEOUT_S + 0.5, measured
    assert session.close_code == Code.SLOW_CONSUMER, measured
    code, last = await _read_to_the_end(slow)
    assert code in (Code.SLOW_CONSUMER, aiohttp.WSCloseCode.ABNORMAL_CLOSURE), (code, measured)
    await slow.close()
    await _resume_gets_everything(node, last)


async def test_a_dead_peer_is_detected_by_heartbeat(settings: Settings) -> None:
    """[R-WIRE-6] A peer that never answers the server's WebSocket pings is disconnected within the heartbeat window."""
    async with serve(with_limits(settings, heartbeat_s=0.5)) as node:
        await _dead_peer(node)


async def _dead_peer(node: Node) -> None:
    await make_room(node, "alice", "r")
    silent = await Raw.open(node, "alice", autoping=False)  # never answers pings
    assert len(node.websocket.sessions) == 1
    await wait_until("the silent peer dropped", lambda: not node.websocket.sessions, 5)
    await silent.close()
