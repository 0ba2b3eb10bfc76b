"""Retention by seq (``trim_before``) and erasure (``erase``), the Store contract of src/roost/ports.py, on every
store engine through the port alone; then what each engine really holds afterwards, read raw (``Engine.raw``):
its files, its memory as ``DUMP`` hands it out, its data files after a checkpoint, its stored messages.
"""

from __future__ import annotations

import secrets

import pytest

from roost.ports import Redaction, Storage
from roost.protocol.errors import Conflict, NotFound
from roost.protocol.relations import KIND_DELETED
from roost.protocol.types import KIND_TEXT, MAX_SEQ, Draft, Message

from . import ENGINES, STORES
from .conftest import Stores
from .test_store import ROOM, draft, filled, seqs

GONE = Redaction(0, KIND_DELETED, "")
"""A tombstone, its seq filled in with ``at``."""


def at(seq: int, redaction: Redaction = GONE) -> Redaction:
    return Redaction(seq, redaction.kind, redaction.body)


async def page(store: Storage, after: int = 0, limit: int = 100) -> list[Message]:
    return (await store.read(ROOM, after, limit)).messages


# ---- retention by seq -----------------------------------------------------------------------------


async def test_trim_before_drops_exactly_the_seqs_below(store: Storage) -> None:
    """[R-RET-2] The retention pass drops by seq what is older than the age (``trim_before``): exact whatever was
    appended meanwhile, never past the head, never lowering ``first``; a late retry of a dropped message is still
    answered."""
    before = await filled(store, 10)
    assert await store.trim_before(ROOM, 4) == 3
    assert (await store.position(ROOM)) == before.__class__(before.epoch, 10, 4)
    assert await store.trim_before(ROOM, 2) == 0  # below first: nothing
    assert await store.trim_before(ROOM, 4) == 0
    assert await seqs(store) == list(range(4, 11))
    assert await seqs(store, 0, 2) == [4, 5]  # a read from below ``first`` starts at ``first``
    assert (await store.append(draft(2))).duplicate
    assert (await store.append(draft(11))).message.seq == 11
    assert await store.trim_before(ROOM, MAX_SEQ) == 8  # everything, up to the head
    position = await store.position(ROOM)
    assert (position.head, position.first) == (11, 12) and await seqs(store) == []
    assert (await store.append(draft(12))).message.seq == 12
    with pytest.raises(NotFound):
        await store.trim_before("nowhere", 3)


# ---- erasure through the port ---------------------------------------------------------------------


async def test_an_erased_message_keeps_its_place_and_reads_as_its_redaction(store: Storage) -> None:
    """[R-ERASE-1] An erased message is served with its redaction (kind and body) in the same seq, with its cmid,
    sender and ts: the sequence keeps no hole, cursors and the position do not move, at the first seq, in the
    middle and at the head alike, forward and backward."""
    before = await filled(store, 5)
    stored = await page(store)
    edit = Redaction(0, "edit", '{"target":1,"body":""}')
    assert await store.erase(ROOM, [at(1), at(3, edit), at(5)]) == 3
    assert await store.position(ROOM) == before
    after = await page(store)
    assert [m.seq for m in after] == [1, 2, 3, 4, 5]
    for message, original in zip(after, stored, strict=True):
        assert (message.cmid, message.sender, message.ts) == (original.cmid, original.sender, original.ts)
    assert [(m.kind, m.body) for m in after] == [
        (KIND_DELETED, ""),
        (KIND_TEXT, "message 2"),
        ("edit", '{"target":1,"body":""}'),
        (KIND_TEXT, "message 4"),
        (KIND_DELETED, ""),
    ]
    assert [m.seq for m in (await store.read_before(ROOM, MAX_SEQ, 2)).messages] == [4, 5]
    assert [m.seq for m in (await store.read_before(ROOM, 4, 10)).messages] == [1, 2, 3]
    assert [m.seq for m in await page(store, 2, 2)] == [3, 4]
    assert await store.erase(ROOM, [at(1), at(5)]) == 0  # erased already: nothing changes
    assert await store.erase(ROOM, [at(6), at(MAX_SEQ)]) == 0  # beyond the head: nothing is stored there
    assert (await store.append(draft(6))).message.seq == 6
    assert await store.trim(ROOM, 4) == 2
    assert [(m.seq, m.kind) for m in await page(store)] == [
        (3, "edit"),
        (4, KIND_TEXT),
        (5, KIND_DELETED),
        (6, KIND_TEXT),
    ]
    assert (await store.position(ROOM)).first == 3
    assert await store.erase(ROOM, [at(1), at(2)]) == 0  # trimmed: not kept, not erased
    with pytest.raises(NotFound):
        await store.erase("nowhere", [at(1)])


async def test_erasing_every_kept_message_leaves_tombstones_not_a_gap(store: Storage) -> None:
    await filled(store, 3)
    assert await store.erase(ROOM, [at(1), at(2), at(3)]) == 3
    position = await store.position(ROOM)
    assert (position.first, position.head) == (1, 3)
    assert [(m.seq, m.kind) for m in await page(store)] == [(1, KIND_DELETED), (2, KIND_DELETED), (3, KIND_DELETED)]
    assert (await store.append(draft(4))).message.seq == 4
    assert await store.trim_before(ROOM, 3) == 2
    assert [(m.seq, m.kind) for m in await page(store)] == [(3, KIND_DELETED), (4, KIND_TEXT)]


async def test_a_retry_of_an_erased_message_is_still_a_duplicate(store: Storage) -> None:
    """[R-ERASE-1] Idempotency outlives the text: a late retry of an erased message is answered with its seq and
    not stored again; the same key with another body is still a conflict."""
    await filled(store, 3)
    await store.erase(ROOM, [at(2)])
    again = await store.append(draft(2))
    assert again.duplicate and again.message.seq == 2
    with pytest.raises(Conflict):
        await store.append(draft(2, body="another body"))
    assert (await store.position(ROOM)).head == 3


async def test_two_nodes_see_an_erasure_at_once(shared_stores: Stores) -> None:
    """A node that read (and may cache) a message serves it erased as soon as another node erased it."""
    one, two = await shared_stores.open(), await shared_stores.open()
    await filled(one, 3)
    assert [m.body for m in (await two.read(ROOM, 0, 10)).messages] == ["message 1", "message 2", "message 3"]
    await one.erase(ROOM, [at(2)])
    assert [m.kind for m in (await two.read(ROOM, 0, 10)).messages] == [KIND_TEXT, KIND_DELETED, KIND_TEXT]


# ---- what the engine really holds afterwards ------------------------------------------------------


def test_every_store_engine_says_how_to_read_it_raw() -> None:
    assert [e for e in STORES if ENGINES[e].raw is None] == []


async def test_an_erased_text_is_gone_from_what_the_engine_stores(stores: Stores) -> None:
    """[R-ERASE-2] [R-ERASE-3] [R-ERASE-4] [R-ERASE-5] [R-ERASE-6] After ``erase`` returns, the text of the erased
    message (a short one and one long enough for SQLite's overflow pages and PostgreSQL's TOAST) is nowhere in
    what the engine holds: SQLite's file and WAL, Redis's keys as ``DUMP`` serializes them, PostgreSQL's data
    files after a checkpoint, JetStream's stored messages (and the cluster's files). A neighbour's text is found
    the same way, so the reading sees what is there. Kafka is the stated exception: the topic keeps the record."""
    store = await stores.open()
    await store.create_room(ROOM, "alice")
    short, long, kept = (f"{word}-{secrets.token_hex(8)}" for word in ("short", "long", "kept"))
    await store.append(Draft(ROOM, "alice", "c1", short, KIND_TEXT))
    await store.append(Draft(ROOM, "alice", "c2", long + secrets.token_hex(6000), KIND_TEXT))  # incompressible
    await store.append(Draft(ROOM, "alice", "c3", kept, KIND_TEXT))
    await store.append(Draft(ROOM, "alice", "c4", '{"target":2,"body":"' + long + '"}', "edit"))
    assert await store.erase(ROOM, [at(1), at(2), at(4, Redaction(0, "edit", '{"target":2,"body":""}'))]) == 3
    assert [m.body for m in await page(store)] == ["", "", kept, '{"target":2,"body":""}']
    engine = stores.engine
    assert engine.raw is not None
    raw = await engine.raw(store, stores.ns, stores.data_dir)
    assert kept.encode() in raw
    if engine.erases:
        assert short.encode() not in raw and long.encode() not in raw
    else:
        assert short.encode() in raw and long.encode() in raw  # R-ERASE-6: not physical on Kafka
