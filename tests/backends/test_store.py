"""The Store contract (src/roost/ports.py), run on every store engine through the port alone.

These are the promises the service builds on; a whole-server test would show a broken one only through
its consequences, on some engines, sometimes. Each test states one promise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from roost.apikeys import KEYS_ROOM, ApiKeys
from roost.ports import Storage, Subscription
from roost.protocol.errors import AuthError, Conflict, NotFound, Unavailable
from roost.protocol.types import KIND_JOIN, KIND_TEXT, MAX_SEQ, Draft, Position
from roost.revocation import Revocations

from .conftest import Stores

ROOM = "r"


def draft(n: int, *, sender: str = "alice", body: str | None = None, kind: str = KIND_TEXT, room: str = ROOM) -> Draft:
    return Draft(room, sender, f"c{n}", f"message {n}" if body is None else body, kind)


async def filled(store: Storage, count: int, room: str = ROOM) -> Position:
    await store.create_room(room, "alice")
    for n in range(1, count + 1):
        await store.append(draft(n, room=room))
    return await store.position(room)


async def seqs(store: Storage, after: int = 0, limit: int = 1000) -> list[int]:
    return [m.seq for m in (await store.read(ROOM, after, limit)).messages]


# ---- dense seqs -----------------------------------------------------------------------------------


async def test_concurrent_appends_to_one_room_get_dense_seqs(store: Storage) -> None:
    """Many appends at once: seqs 1..N, each once, no hole, in the order the store reads them back."""
    await store.create_room(ROOM, "alice")
    results = await asyncio.gather(*(store.append(draft(n)) for n in range(1, 101)))
    assert sorted(a.message.seq for a in results) == list(range(1, 101))
    assert not any(a.duplicate for a in results)
    page = await store.read(ROOM, 0, 1000)
    assert [m.seq for m in page.messages] == list(range(1, 101))
    assert {m.cmid: m.seq for m in page.messages} == {a.message.cmid: a.message.seq for a in results}
    assert page.position.head == 100


async def test_two_nodes_appending_to_one_room_get_dense_seqs(shared_stores: Stores) -> None:
    """Two stores over one namespace (two nodes) appending at once still share one dense sequence."""
    one, two = await shared_stores.open(), await shared_stores.open()
    await one.create_room(ROOM, "alice")
    assert await two.room_exists(ROOM)
    results = await asyncio.gather(*((one if n % 2 else two).append(draft(n)) for n in range(1, 81)))
    assert sorted(a.message.seq for a in results) == list(range(1, 81))
    for store in (one, two):
        assert await seqs(store) == list(range(1, 81))


# ---- idempotency ----------------------------------------------------------------------------------


async def test_a_retry_is_answered_with_the_original_message(store: Storage) -> None:
    await store.create_room(ROOM, "alice")
    first = await store.append(draft(1))
    again = await store.append(draft(1))
    assert not first.duplicate and again.duplicate
    assert again.message == first.message
    with pytest.raises(Conflict):
        await store.append(draft(1, body="another body"))
    with pytest.raises(Conflict):
        await store.append(draft(1, kind=KIND_JOIN))
    other_sender = await store.append(draft(1, sender="bob"))  # the key is (room, sender, cmid)
    assert (other_sender.message.seq, other_sender.duplicate) == (2, False)
    assert (await store.position(ROOM)).head == 2


async def test_concurrent_retries_store_one_message(store: Storage) -> None:
    await store.create_room(ROOM, "alice")
    results = await asyncio.gather(*(store.append(draft(1)) for _ in range(20)))
    assert {a.message.seq for a in results} == {1}
    assert [a.duplicate for a in results].count(False) == 1
    assert (await store.position(ROOM)).head == 1


async def test_a_retry_after_retention_is_still_answered(store: Storage) -> None:
    """Idempotency outlives the message: a late retry of a trimmed message is not stored again."""
    await store.create_room(ROOM, "alice")
    original = (await store.append(draft(1))).message
    for n in range(2, 6):
        await store.append(draft(n))
    assert await store.trim(ROOM, 2) == 3
    again = await store.append(draft(1))
    assert again.duplicate and again.message == original
    with pytest.raises(Conflict):
        await store.append(draft(1, body="another body"))
    assert (await store.position(ROOM)).head == 5
    assert (await store.append(draft(6))).message.seq == 6


# ---- paging ---------------------------------------------------------------------------------------


async def test_paging_forward_reaches_the_head(store: Storage) -> None:
    position = await filled(store, 10)
    assert await seqs(store, 0, 4) == [1, 2, 3, 4]
    assert await seqs(store, 4, 4) == [5, 6, 7, 8]
    assert await seqs(store, 8, 4) == [9, 10]
    at_head = await store.read(ROOM, 10, 4)  # after=head: nothing newer, and the position says so
    assert at_head.messages == [] and at_head.position == position
    assert (await store.read(ROOM, 11, 4)).messages == []
    assert position.head == 10 and position.first == 1


async def test_paging_backward_reaches_the_start(store: Storage) -> None:
    position = await filled(store, 10)
    pages = []
    before = MAX_SEQ
    while True:
        page = await store.read_before(ROOM, before, 4)
        assert page.position == position
        if not page.messages:
            break
        pages.append([m.seq for m in page.messages])
        before = page.messages[0].seq
    assert pages == [[7, 8, 9, 10], [3, 4, 5, 6], [1, 2]]
    assert [m.seq for m in (await store.read_before(ROOM, 11, 3)).messages] == [8, 9, 10]


async def test_before_zero_is_an_empty_page(store: Storage) -> None:
    """``before=0`` (and 1) names nothing older: an empty page with the position, never an error.

    Redis answered ``before=0`` with a server error (issue #15), which reached clients as 4503/HTTP 503:
    retry with backoff, forever."""
    position = await filled(store, 3)
    for before in (0, 1):
        page = await store.read_before(ROOM, before, 10)
        assert page.messages == [] and page.position == position


async def test_an_empty_room_pages_to_nothing(store: Storage) -> None:
    await store.create_room(ROOM, "alice")
    for page in (
        await store.read(ROOM, 0, 10),
        await store.read_before(ROOM, 0, 10),
        await store.read_before(ROOM, MAX_SEQ, 10),
    ):
        assert page.messages == []
        assert (page.position.head, page.position.first) == (0, 1)


# ---- retention ------------------------------------------------------------------------------------


async def test_trim_keeps_the_newest_and_the_sequence_goes_on(store: Storage) -> None:
    before = await filled(store, 10)
    assert await store.trim(ROOM, 4) == 6
    after = await store.position(ROOM)
    assert (after.epoch, after.head, after.first) == (before.epoch, 10, 7)
    assert await store.trim(ROOM, 4) == 0  # nothing more to drop
    assert await store.trim(ROOM, 100) == 0  # keeping more than there is drops nothing, restores nothing
    assert await seqs(store) == [7, 8, 9, 10]
    assert (await store.read_before(ROOM, 7, 10)).messages == []
    assert [m.seq for m in (await store.read_before(ROOM, MAX_SEQ, 10)).messages] == [7, 8, 9, 10]
    assert (await store.append(draft(11))).message.seq == 11
    assert await seqs(store) == [7, 8, 9, 10, 11]


# ---- epochs and durability ------------------------------------------------------------------------


async def test_the_epoch_holds_across_appends_trims_and_restarts(stores: Stores) -> None:
    """The epoch changes only when the history is lost or recreated: not by writing, trimming, restarting."""
    store = await stores.open()
    await store.create_room(ROOM, "alice")
    epoch = (await store.position(ROOM)).epoch
    assert isinstance(epoch, str) and epoch
    written = [(await store.append(draft(n))).message for n in range(1, 4)]
    await store.trim(ROOM, 2)
    assert (await store.read(ROOM, 0, 10)).position.epoch == epoch
    assert not await store.create_room(ROOM, "bob")  # a second create is not a recreation
    assert (await store.position(ROOM)) == Position(epoch=epoch, head=3, first=2)
    store = await stores.restart(store)
    page = await store.read(ROOM, 0, 10)
    assert page.position == Position(epoch=epoch, head=3, first=2)
    assert page.messages == written[1:]  # durable across the restart, byte for byte
    assert (await store.append(draft(1))).duplicate  # and so are the idempotency keys


# ---- unknown rooms, read positions ----------------------------------------------------------------


async def test_an_unknown_room_is_not_found_and_nothing_is_stored(store: Storage) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.append(draft(1, room="nowhere")),
        lambda: store.read("nowhere", 0, 10),
        lambda: store.read_before("nowhere", 10, 10),
        lambda: store.position("nowhere"),
        lambda: store.trim("nowhere", 1),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call()
    assert not await store.room_exists("nowhere")


async def test_read_positions_only_rise(store: Storage) -> None:
    await filled(store, 5)
    assert await store.mark_read(ROOM, "bob", 3) == 3
    assert await store.mark_read(ROOM, "bob", 2) == 3
    assert await store.mark_read(ROOM, "bob", 5) == 5
    assert await store.readers(ROOM) == {"bob": 5}
    assert (await store.read_positions("bob")) == {ROOM: 5}


async def test_mark_read_on_a_room_that_does_not_exist_is_kept_like_any_other(store: Storage) -> None:
    """The directory keeps a read position for any room name: it does not check the room (the service
    checks membership first). Every engine the same way, so the readiness probe needs no exception."""
    assert await store.mark_read("~nowhere", "_node", 7) == 7
    assert await store.mark_read("~nowhere", "_node", 3) == 7
    assert await store.readers("~nowhere") == {"_node": 7}
    assert await store.read_positions("_node") == {"~nowhere": 7}
    assert not await store.room_exists("~nowhere")


async def test_token_revocations_are_kept_per_user_and_only_move_forward(store: Storage) -> None:
    """[R-SEC-60] The revocation times every node reads (roost/revocation.py) live in the Directory of every engine:
    one per user, found by the user alone and all at once, and never moved back."""
    clock = iter([1_000, 2_000, 1_500]).__next__
    revocations = Revocations(store, _Silent(), clock=lambda: float(clock()))
    assert await revocations.before("a.b@c-d") == 0
    assert await revocations.revoke("a.b@c-d") == 1_000
    assert await revocations.revoke("zed") == 2_000
    assert await revocations.revoke("a.b@c-d") == 1_500
    assert await revocations.before("a.b@c-d") == 1_500
    assert await revocations.before("zed") == 2_000
    assert await revocations.all() == {"a.b@c-d": 1_500, "zed": 2_000}
    assert await store.rooms_of("zed") == [] and await store.read_positions("zed") == {}


async def test_api_keys_are_kept_hashed_found_by_id_and_gone_once_revoked(store: Storage) -> None:
    """[R-SEC-80] [R-SEC-87] API keys (roost/apikeys.py) live in the Directory of every engine, in the attributes of a
    pseudo-room that is created on first use: each key found by its id with its principal and scopes, its secret
    nowhere in what is stored, listed all at once, and refused as soon as its record is deleted."""
    keys = ApiKeys(store, _Silent(), clock=lambda: 1_000.0)
    one = await keys.create("bot", ["publish", "rooms:read"], "ci", "root")
    two = await keys.create("a.b@c-d", ["ws"])
    assert set(await keys.all()) == {one.id, two.id}
    assert (await keys.identify(one.key))[:1] == ("bot",)
    identity = await keys.identify(two.key)
    assert identity.scopes == frozenset({"ws"}) and identity.key == two.id and identity.issued_at == 1_000.0
    stored = await store.room_attrs(KEYS_ROOM, "keys")
    assert all(k.key.split("_", 2)[2] not in value for value in stored.values() for k in (one, two))
    assert await keys.revoke(one.id) and not await keys.revoke(one.id)
    with pytest.raises(AuthError):
        await keys.identify(one.key)
    assert set(await keys.all()) == {two.id}
    assert await store.rooms_of("bot") == [] and await store.members(KEYS_ROOM) == ["~roost"]


class _Silent:
    """A bus that takes every publish and delivers nothing: the contract here is the store's."""

    async def publish(self, room: str, payload: bytes) -> None:
        return None

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> Subscription:
        raise NotImplementedError

    def on_reset(self, callback: Callable[[], None]) -> None:
        return None

    async def aclose(self) -> None:
        return None


# ---- close ----------------------------------------------------------------------------------------


async def test_a_closed_store_answers_unavailable(stores: Stores) -> None:
    store = await stores.open()
    await filled(store, 1)
    await stores.close(store)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.append(draft(2)),
        lambda: store.read(ROOM, 0, 10),
        lambda: store.read_before(ROOM, MAX_SEQ, 10),
        lambda: store.position(ROOM),
        lambda: store.mark_read(ROOM, "bob", 1),
    ]
    for call in calls:
        with pytest.raises(Unavailable):
            await call()
    await store.aclose()  # closing twice is harmless
