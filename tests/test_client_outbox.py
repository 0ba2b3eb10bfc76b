"""The SDK's outbox on the wire, against a scripted peer that holds its acks: what protocol.md section 11
(sending) asks of a client, observed from the server's side of the socket."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from roost.client import connect
from roost.protocol import frames

from .scripted_peer import Handler, scripted_peer

ROOM = "r"


def _peer(received: list[frames.Send], release: asyncio.Event) -> Handler:
    """Welcome, then record every ``send`` and ack them all once ``release`` is set."""

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)

        async def ack_later(frame: frames.Send, seq: int) -> None:
            await release.wait()
            await sock.send_str(frames.encode(frames.Ack(frame.id, ROOM, frame.cmid, seq, 0, False)).decode())

        pending: set[asyncio.Task[None]] = set()
        async for raw in sock:
            if raw.type is not WSMsgType.TEXT:
                break
            frame = frames.decode_client(raw.data)
            if isinstance(frame, frames.Auth):
                await sock.send_str(frames.encode(frames.Welcome("alice", "s1", 4096, 65536)).decode())
            elif isinstance(frame, frames.Send):
                received.append(frame)
                pending.add(asyncio.create_task(ack_later(frame, len(received) + 1)))
        await asyncio.gather(*pending, return_exceptions=True)
        return sock

    return ws


async def test_sends_are_in_the_outbox_before_they_go_out_and_pipelined_with_their_cmid_as_id() -> None:
    """[R-CLIENT-9] The SDK puts each send in its outbox before transmitting it, transmits it as a ``send``
    frame whose ``id`` is ``"send:" + cmid``, pipelines sends without waiting for acks, and keeps them in the
    outbox until the ack arrives."""
    received: list[frames.Send] = []
    release = asyncio.Event()
    async with scripted_peer(_peer(received, release)) as url, connect(url, "token") as alice:
        sends = [asyncio.create_task(alice.send(ROOM, f"m{i}", cmid=f"c{i}")) for i in range(3)]
        await asyncio.sleep(0)
        assert alice.unacked == 3  # in the outbox, whether transmitted yet or not
        async with asyncio.timeout(5):
            while len(received) < 3:  # all three on the wire, none acked: pipelined
                await asyncio.sleep(0.01)  # a wait helper's poll
        assert [(f.cmid, f.body, f.id) for f in received] == [(f"c{i}", f"m{i}", f"send:c{i}") for i in range(3)]
        assert alice.unacked == 3 and not any(s.done() for s in sends)
        release.set()
        acks = await asyncio.gather(*sends)
        assert [a.seq for a in acks] == [2, 3, 4] and alice.unacked == 0
