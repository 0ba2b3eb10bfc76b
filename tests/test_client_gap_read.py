"""The SDK's gap repair when the repairing read fails, against a scripted peer.

A correct Roost server repairs gaps before they reach a connection, so the client's own repair path
(protocol.md section 11, receiving) is only reachable from a peer that misbehaves on purpose: this one
sends a gap and refuses the first read with 4503, as an overloaded node would.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import WSMsgType, web

from roost.client import connect
from roost.client.backoff import SEND_RETRY
from roost.protocol import frames
from roost.protocol.codes import Code
from roost.protocol.types import Message

from .scripted_peer import Handler, scripted_peer

ROOM, EPOCH = "r", "e1"


def _msg(seq: int) -> Message:
    return Message(ROOM, seq, f"c{seq}", "bob", f"m{seq}", 0)


def _peer(reads: list[float]) -> Handler:
    """Welcome, a subscription at seq 2, then msg 5 (3 and 4 missing) and silence. The first history
    read is refused with 4503, the next ones answer with 3, 4, 5."""

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for raw in sock:
            if raw.type is not WSMsgType.TEXT:
                break
            frame = frames.decode_client(raw.data)
            if isinstance(frame, frames.Auth):
                await sock.send_str(frames.encode(frames.Welcome("alice", "s1", 4096, 65536)).decode())
            elif isinstance(frame, frames.Subscribe):
                await sock.send_str(frames.encode(frames.Subscribed(frame.id, ROOM, EPOCH, 2, 1)).decode())
                await sock.send_str(frames.encode(_msg(2)).decode())
                await sock.send_str(frames.encode(frames.Live(ROOM, 2)).decode())
                await sock.send_str(frames.encode(_msg(5)).decode())
            elif isinstance(frame, frames.History):
                reads.append(time.monotonic())
                if len(reads) == 1:
                    refusal = frames.Error(int(Code.UNAVAILABLE), "store away", ref=frame.id, room=ROOM)
                    await sock.send_str(frames.encode(refusal).decode())
                else:
                    page = frames.HistoryPage(frame.id, ROOM, [_msg(3), _msg(4), _msg(5)], False, EPOCH, 5, 1)
                    await sock.send_str(frames.encode(page).decode())
        return sock

    return ws


async def test_a_failed_gap_read_is_retried_after_a_backoff_without_a_further_message() -> None:
    """[R-CLIENT-3] The gap is filled even though nothing more is said in the room, and the second read
    waits the retry delay instead of following the refusal at once."""
    reads: list[float] = []
    async with scripted_peer(_peer(reads)) as url, connect(url, "token") as alice:
        await alice.subscribe(ROOM, after=1)
        got: list[int] = []
        async with asyncio.timeout(10):
            async for item in alice:
                assert isinstance(item, Message)
                got.append(item.seq)
                if len(got) == 4:
                    break
    assert got == [2, 3, 4, 5]
    assert len(reads) == 2, reads
    assert reads[1] - reads[0] >= SEND_RETRY.initial_s / 2
