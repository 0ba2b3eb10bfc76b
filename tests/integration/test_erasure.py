"""Erasure on every backend: a delete that also has the store replace the text (and its edits) by tombstones.

What each engine then holds, read raw, is tests/backends/test_erasure.py; here, the whole server: the frame flag
and the HTTP query, who may, the sequenced delete event, an offline client catching up, retries, bad input.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from roost.client import connect
from roost.config import Settings
from roost.node import Node, serve
from roost.protocol.codes import Code
from roost.protocol.errors import Conflict
from roost.protocol.relations import fold
from roost.protocol.types import Message

from ..conftest import with_limits
from .test_send import make_room
from .wsutil import Raw


async def stored(node: Node, room: str) -> dict[int, Message]:
    """What the store itself returns (no tombstones applied by the service)."""
    return {m.seq: m for m in (await node.backends.store.read(room, 0, 1000)).messages}


def auth(node: Node, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.tokens.issue(user)}"}


async def test_an_erasure_is_a_sequenced_delete_and_the_store_keeps_only_tombstones(node: Node) -> None:
    """[R-ERASE-1] ``delete`` with ``erase``: acked like a delete, delivered live as a ``delete`` whose body says
    ``"erase": true``; the store then holds the message and its edit as tombstones in the same seqs; a member who
    was offline catches up without the text and folds to "deleted"; a retried send is a duplicate, not stored."""
    await make_room(node, "alice", "r", "bob", "carol")
    carol = await Raw.open(node, "carol")
    await carol.request({"type": "subscribe", "room": "r", "id": "s"})
    cursor = (await carol.until(lambda f: f["type"] == "live"))["seq"]
    await carol.close()  # carol goes offline
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "id": "s"})
    await bob.until(lambda f: f["type"] == "live")
    alice = await Raw.open(node, "alice")
    sent = await alice.request({"type": "send", "room": "r", "cmid": "a1", "body": "my secret", "id": "1"})
    target = sent["seq"]
    edit = {"type": "edit", "room": "r", "target": target, "body": "my other secret", "cmid": "a2", "id": "2"}
    edited = (await alice.request(edit))["seq"]
    erased = await alice.request({"type": "delete", "room": "r", "target": target, "erase": True, "id": "3"})
    assert erased["type"] == "ack" and erased["seq"] == edited + 1 and erased["cmid"] == f"~delete-{target}"
    live = await bob.until(lambda f: f["type"] == "msg" and f["kind"] == "delete")
    assert json.loads(live["body"]) == {"target": target, "erase": True}

    messages = await stored(node, "r")
    assert sorted(messages) == list(range(1, erased["seq"] + 1))  # no hole
    assert (messages[target].kind, messages[target].body) == ("deleted", "")
    assert (messages[target].cmid, messages[target].sender) == ("a1", "alice")
    assert json.loads(messages[edited].body) == {"target": target, "body": ""}
    assert not any("secret" in m.body for m in messages.values())

    carol = await Raw.open(node, "carol")
    await carol.request({"type": "subscribe", "room": "r", "after": cursor, "id": "s2"})
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["seq"] < erased["seq"]:
        frames.append(await carol.until(lambda f: f["type"] == "msg"))
    assert [f["seq"] for f in frames] == list(range(cursor + 1, erased["seq"] + 1))
    assert not any("secret" in json.dumps(f) for f in frames)
    view = {m.seq: m for m in fold([Message(**{k: v for k, v in f.items() if k != "type"}) for f in frames])}
    assert view[target].deleted and view[target].body == "" and not view[target].edited

    again = await alice.request({"type": "send", "room": "r", "cmid": "a1", "body": "my secret", "id": "4"})
    assert again["type"] == "ack" and again["dup"] is True and again["seq"] == target
    retry = await alice.request({"type": "delete", "room": "r", "target": target, "erase": True, "id": "5"})
    assert retry["type"] == "ack" and retry["dup"] is True and retry["seq"] == erased["seq"]
    refused = await alice.request({**edit, "cmid": "a3", "id": "6"})
    assert refused["type"] == "error" and refused["code"] == Code.CONFLICT  # deleted: not editable
    assert (await node.backends.store.position("r")).head == erased["seq"]
    for raw in (alice, bob, carol):
        await raw.close()


async def test_erasure_over_http_by_the_sender_a_moderator_and_the_admin_api(settings: Settings) -> None:
    """[R-ERASE-1] ``DELETE ...?erase=true`` by the sender; by a moderator, of a message deleted earlier without
    erasure (answered with that first delete); and by a server administrator through the admin API."""
    async with serve(settings) as node:
        await make_room(node, "alice", "r", "bob")
        one = (await node.service.send("bob", "r", "b1", "bob's first secret")).message.seq
        two = (await node.service.send("bob", "r", "b2", "bob's second secret")).message.seq
        three = (await node.service.send("bob", "r", "b3", "bob's third secret")).message.seq
        first_delete = await node.service.delete("bob", "r", two)  # a plain delete: the text stays stored
        assert (await stored(node, "r"))[two].body == "bob's second secret"
        admin = {"Authorization": f"Bearer {node.tokens.issue('ops', roles=['admin'])}"}
        base = f"{node.url}/api/rooms/r/messages"
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{base}/{one}?erase=true", headers=auth(node, "bob")) as resp:
                assert resp.status == 200
                answer = await resp.json()
                assert answer["duplicate"] is False
                assert json.loads(answer["message"]["body"]) == {"target": one, "erase": True}
            async with http.delete(f"{base}/{two}?erase=1", headers=auth(node, "alice")) as resp:
                assert resp.status == 200
                answer = await resp.json()
                assert answer["duplicate"] is True and answer["message"]["seq"] == first_delete.message.seq
            async with http.delete(f"{node.url}/api/admin/rooms/r/messages/{three}?erase=true", headers=admin) as resp:
                assert resp.status == 200
                assert (await resp.json())["message"]["sender"] == "ops"
        messages = await stored(node, "r")
        assert [(messages[s].kind, messages[s].body) for s in (one, two, three)] == [("deleted", "")] * 3
        assert not any("secret" in m.body for m in messages.values())


async def test_erasure_needs_the_right_to_delete_and_bad_input_changes_nothing(node: Node) -> None:
    """[R-ERASE-1] [R-REL-3] Erasing someone else's message without the right to delete it is 4403, in an
    unknown room 4404, with a malformed flag 4400; nothing is stored or erased, and the server goes on."""
    await make_room(node, "alice", "r", "bob", "carol")
    await node.service.create_room("dave", "hidden", "private")
    sent = (await node.service.send("bob", "r", "b1", "bob's words")).message.seq
    head = (await node.backends.store.position("r")).head
    carol = await Raw.open(node, "carol")
    replies = [
        await carol.request({"type": "delete", "room": "r", "target": sent, "erase": True, "id": "1"}),
        await carol.request({"type": "delete", "room": "nowhere", "target": 1, "erase": True, "id": "2"}),
        await carol.request({"type": "delete", "room": "hidden", "target": 1, "erase": True, "id": "3"}),
        await carol.request({"type": "delete", "room": "r", "target": sent, "erase": "yes", "id": "4"}),
        await carol.request({"type": "delete", "room": "r", "target": -1, "erase": True, "id": "5"}),
    ]
    assert [r.get("code") for r in replies] == [
        Code.FORBIDDEN,
        Code.UNKNOWN_ROOM,
        Code.UNKNOWN_ROOM,
        Code.BAD_FRAME,
        Code.BAD_FRAME,
    ]
    async with aiohttp.ClientSession() as http:
        url = f"{node.url}/api/rooms/r/messages/{sent}"
        async with http.delete(f"{url}?erase=true", headers=auth(node, "carol")) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["code"] == Code.FORBIDDEN
        async with http.delete(f"{url}?erase=perhaps", headers=auth(node, "bob")) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == Code.BAD_FRAME
        async with http.delete(
            f"{node.url}/api/admin/rooms/r/messages/{sent}?erase=true", headers=auth(node, "bob")
        ) as resp:
            assert resp.status == 403
    assert (await node.backends.store.position("r")).head == head
    assert (await stored(node, "r"))[sent].body == "bob's words"
    ok = await carol.request({"type": "send", "room": "r", "cmid": "c1", "body": "still here", "id": "6"})
    assert ok["type"] == "ack" and ok["seq"] == head + 1
    await carol.close()


async def test_with_erase_deletes_every_delete_is_an_erasure(settings: Settings) -> None:
    """[R-ERASE-1] The server setting ``erase_deletes``: a plain delete erases, and its event says so."""
    async with serve(with_limits(settings, erase_deletes=True)) as node:
        await make_room(node, "alice", "r")
        sent = (await node.service.send("alice", "r", "a1", "gone for good")).message.seq
        appended = await node.service.delete("alice", "r", sent)
        assert json.loads(appended.message.body) == {"target": sent, "erase": True}
        assert (await stored(node, "r"))[sent].kind == "deleted"


async def test_an_edit_racing_an_erasure_leaves_no_text_in_the_store(node: Node) -> None:
    """[R-REL-10] [R-ERASE-1] An edit and an erasing delete at once: whichever way they interleave, the store ends
    with no text of the message (an edit stored after the erasure is erased in turn)."""
    await make_room(node, "alice", "r")
    for n in range(5):
        sent = (await node.service.send("alice", "r", f"a{n}", f"secret {n}")).message.seq
        edit = node.service.edit("alice", "r", sent, f"edited secret {n}", f"e{n}")
        erase = node.service.delete("alice", "r", sent, erase=True)
        results = await asyncio.gather(edit, erase, return_exceptions=True)
        assert not isinstance(results[1], BaseException), results[1]
        assert not isinstance(results[0], BaseException) or isinstance(results[0], Conflict), results[0]
    assert not any("secret" in m.body for m in (await stored(node, "r")).values())


async def test_the_sdk_erases_with_its_delete(node: Node) -> None:
    """[R-ERASE-1] ``Client.delete(..., erase=True)`` sends the flag: the store then holds the tombstone."""
    await make_room(node, "alice", "r")
    async with connect(node.ws_url, node.tokens.issue("alice")) as alice:
        sent = await alice.send("r", "not for ever")
        deleted = await alice.delete("r", sent.seq, erase=True)
    assert deleted.seq == sent.seq + 1 and not deleted.duplicate
    assert (await stored(node, "r"))[sent.seq].kind == "deleted"
