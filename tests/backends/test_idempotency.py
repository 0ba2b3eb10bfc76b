"""The idempotency digest (roost.backends.idempotency.body_digest) in the encoding each engine stores.

One function computes it; each engine keeps the encoding its existing data has. These tests read what the
engine really stored for a known message and pin it (``Engine.digest``, in the engine's file), so a change
of encoding, which would turn every retry of an old message into a Conflict, fails here first.
"""

from __future__ import annotations

from roost.backends.idempotency import body_digest
from roost.protocol.types import KIND_TEXT, Draft

from . import ENGINES, STORES
from .conftest import Stores

FULL = bytes.fromhex("b9299df68c34692cf2eae779fafaa5462caa45944033fa172321a4bed860d7f6")
"""SHA-256 of ``text NUL message 1``: the digest of the message these tests store."""


def test_the_digest_is_sha256_of_kind_nul_body() -> None:
    assert body_digest("message 1", KIND_TEXT) == FULL
    assert body_digest("message 1", KIND_TEXT, 16) == FULL[:16]
    assert body_digest("message 1", "join") != FULL  # the kind is part of what a retry must repeat


def test_every_store_engine_says_how_it_keeps_the_digest() -> None:
    assert [e for e in STORES if ENGINES[e].digest is None] == []


async def test_each_engine_stores_the_digest_in_its_pinned_encoding(stores: Stores) -> None:
    store = await stores.open()
    await store.create_room("r", "alice")
    await store.append(Draft("r", "alice", "c1", "message 1", KIND_TEXT))
    await store.append(Draft("r", "alice", "c2", "message 2", KIND_TEXT))
    await store.trim("r", 1)  # SQLite and PostgreSQL keep the digest once the body is gone
    pin = stores.engine.digest
    assert pin is not None
    assert await pin.read(store, stores.ns, stores.data_dir) == pin.encode(FULL)
