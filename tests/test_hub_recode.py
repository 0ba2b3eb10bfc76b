"""The fan-out of a room with connections of both encodings: each message re-encoded once per encoding."""

from __future__ import annotations

import dataclasses
import tempfile

import msgspec

from roost.backends.local import LocalBus
from roost.backends.sqlite import SqliteStore
from roost.chaos.infra import wait_until
from roost.config import Limits
from roost.gateway.session import Session
from roost.hub import Hub
from roost.protocol import frames
from roost.protocol.encoding import JSON, MSGPACK, Codec
from roost.service import ChatService


class Recording:
    """A session's transport that keeps each data frame it is handed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def try_write(self, data: bytes) -> bool:
        self.writes.append(data)
        return True

    async def send(self, data: bytes) -> None:
        self.writes.append(data)

    async def close(self, code: int, reason: str, *, unread: bool = False) -> None:
        pass


async def test_a_mixed_room_encodes_each_message_at_most_twice() -> None:
    """[R-WIRE-13] In a room followed by JSON and MessagePack connections, each live message is encoded once for
    all the JSON ones (the very bytes the bus carried, shared) and re-encoded once for all the MessagePack ones,
    however many there are; typing events alike."""
    calls: list[bytes] = []
    recode = MSGPACK.recode
    assert recode is not None

    def counted(data: bytes) -> bytes:
        calls.append(data)
        return recode(data)

    packed: Codec = dataclasses.replace(MSGPACK, recode=counted)
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore(tmp).open()
        bus = LocalBus()
        limits = Limits(head_check_s=0, sends_per_s=1e6, send_burst=10**6, typing_per_s=1e6)
        service = ChatService(store, store, bus, limits)
        hub = Hub(bus, store, head_check_s=0)
        await service.create_room("alice", "r")
        sessions: list[tuple[Session, Recording, Codec]] = []
        for i, codec in enumerate([JSON, packed, JSON, packed, packed, JSON]):
            transport = Recording()
            session = Session(service, hub, transport, limits, "alice", f"s{i}", codec=codec)
            await session.receive(codec.encode(frames.Subscribe(room="r", id="s")))
            sessions.append((session, transport, codec))
        await wait_until(
            "every session is live",
            lambda: all(any(b'"live"' in w or b"\xa4live" in w for w in t.writes) for _, t, _ in sessions),
        )
        for _, t, _ in sessions:
            t.writes.clear()
        calls.clear()
        for i in range(5):
            await service.send("alice", "r", f"c{i}", f"hello {i}")
            await service.typing("alice", "r")
        await wait_until(
            "every session has its 10 frames",
            lambda: all(sum(len(c.split(w)) for w in t.writes) >= 10 for _, t, c in sessions),
        )
        assert len(calls) == 10, len(calls)  # 5 messages, 5 typing events: once each, for three connections
        expected = [JSON.decode_server(d) for w in sessions[0][1].writes for d in JSON.split(w)]
        assert len(expected) == 10
        for _, t, c in sessions:
            assert [c.decode_server(d) for w in t.writes for d in c.split(w)] == expected
        for session, _, _ in sessions:
            await session.release()
        await hub.aclose()
        await store.aclose()
        assert msgspec.msgpack.decode(MSGPACK.pack([MSGPACK.encode(frames.Pong())])) == [{"type": "pong"}]
