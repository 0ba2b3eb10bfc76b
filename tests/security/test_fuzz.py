"""Property-based fuzzing of frame handling: random frame sequences against a real service.

Whatever a client sends, in whatever order: no unhandled exception (no INTERNAL error), the
connection stays usable, and the store holds only well-formed messages from the authenticated user,
densely numbered.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.backends.local import LocalBus
from roost.backends.sqlite import SqliteStore
from roost.chaos.infra import wait_until
from roost.config import Limits
from roost.gateway.session import Session
from roost.hub import Hub
from roost.protocol import frames
from roost.protocol.codes import Code
from roost.protocol.inbox import inbox_room
from roost.service import ChatService

ROOMS = st.sampled_from(["lobby", "other", "nowhere", "", "a" * 200, "../x", "dm:a:b"])
IDS = st.one_of(st.none(), st.text(max_size=8), st.integers())
SEQS = st.one_of(st.none(), st.integers(min_value=-5, max_value=50), st.just(2**70), st.text(max_size=3))
TEXT = st.one_of(st.text(max_size=40), st.just(" "), st.just("x" * 17_000), st.binary(max_size=20).map(repr))

FRAME = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("send"), "room": ROOMS, "cmid": st.text(max_size=70), "body": TEXT, "id": IDS}
    ),
    st.fixed_dictionaries({"type": st.just("subscribe"), "room": ROOMS, "after": SEQS, "epoch": IDS, "id": IDS}),
    st.fixed_dictionaries({"type": st.just("history"), "room": ROOMS, "after": SEQS, "before": SEQS, "limit": SEQS}),
    st.fixed_dictionaries({"type": st.sampled_from(["create", "join", "leave", "unsubscribe"]), "room": ROOMS}),
    st.fixed_dictionaries({"type": st.sampled_from(["ping", "typing", "auth", "nope"]), "room": ROOMS}),
    st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.integers(), st.text(max_size=6)), max_size=4),
)
RAW = st.one_of(
    FRAME.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
    st.just("[" * 3000 + "]" * 3000),
)


class RecordingTransport:
    """A real Transport that keeps what the session writes (no socket)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None

    def try_write(self, data: bytes) -> bool:
        # Refuse every third write, so both the direct path and the outbox path are exercised.
        self.writes = getattr(self, "writes", 0) + 1
        if self.writes % 3 == 0:
            return False
        self.sent.extend(json.loads(part) for part in frames.split(data))
        return True

    async def send(self, data: bytes) -> None:
        self.sent.extend(json.loads(part) for part in frames.split(data))

    async def close(self, code: int, reason: str, *, unread: bool = False) -> None:
        self.closed = code


async def scenario(inputs: list[str | bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore(tmp).open()
        bus = LocalBus()
        limits = Limits(head_check_s=0)
        service = ChatService(store, store, bus, limits)
        hub = Hub(bus, store, head_check_s=0)
        await service.create_room("fuzzer", "lobby")
        transport = RecordingTransport()
        session = Session(service, hub, transport, limits, "fuzzer", "s1")
        try:
            for data in inputs:
                await session.receive(data)
            await session.receive(json.dumps({"type": "ping", "id": "last"}))
            await wait_until(
                "the last ping answered, or the session closed",
                lambda: transport.closed or any(f.get("ref") == "last" for f in transport.sent),
                every_s=0.005,
            )
            assert not any(f.get("code") == Code.INTERNAL for f in transport.sent), transport.sent
            assert transport.closed in (None, Code.SLOW_CONSUMER)
            if transport.closed is None:
                assert any(f.get("ref") == "last" for f in transport.sent)
            for room in await store.all_rooms():
                page = await store.read(room, 0, 10_000)
                assert [m.seq for m in page.messages] == list(range(1, len(page.messages) + 1))
                for message in page.messages:
                    # The fuzzer's own event stream is written by the server (``added`` for its room).
                    assert message.sender == ("system" if room == inbox_room("fuzzer") else "fuzzer")
                    if message.kind == "text":
                        assert message.body.strip() and len(message.body.encode()) <= limits.max_body_bytes
        finally:
            await session.release()
            await hub.aclose()
            await store.aclose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(RAW, max_size=25))
def test_random_frame_sequences_never_break_the_server(inputs: list[str | bytes]) -> None:
    asyncio.run(scenario(inputs))
