"""A removed member reads nothing more of the room, whatever its cursor and however slowly it reads (issue #17).

The attack: a member subscribes to a private room with ``after = head + 1`` (the seq its kick will get) and
stops reading its socket behind a large catch-up of another room. Catch-up is paced on the socket draining,
so the room's first store read only happens after the kick is stored: the kick is at the cursor, and a check
made only on delivered events never sees it. Each test asserts what the connection receives for the room
after the removal: the 4403 error, and no message, typing or presence frame.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any

import pytest

from roost.chaos.infra import wait_until
from roost.config import Limits, Settings
from roost.gateway.session import Session
from roost.node import Node, serve
from roost.protocol.codes import Code

from ..conftest import with_limits
from ..integration.test_history import api
from ..integration.wsutil import Raw

BIG_MESSAGES = 300
BIG_BODY = "x" * 8000
"""The catch-up the attacker sits behind: ~2.4 MB, some five times the buffers between the server and it
once both ends' socket buffers are fixed at 64 KB (see ``arm``)."""


async def preload(node: Node) -> None:
    """``big`` (public, with a large history) and ``vault`` (private); bob and carol are members of both."""
    await node.service.create_room("alice", "big")
    await node.service.create_room("alice", "vault", "private")
    for user in ("bob", "carol"):
        await node.service.join(user, "big")
        await node.service.invite("alice", "vault", user)
        await node.service.join(user, "vault")
    for start in range(0, BIG_MESSAGES, 100):
        await asyncio.gather(
            *(node.service.send("alice", "big", f"b{i}", f"{i} {BIG_BODY}") for i in range(start, start + 100))
        )


@pytest.fixture
def limits(limits: Limits) -> Limits:
    """The attacker's stalled socket must not be closed as a slow consumer while the test runs."""
    return replace(limits, write_timeout_s=120.0)


def socket_buffers(raw: Raw, session: Session, size: int) -> None:
    """Fix the client socket's receive buffer and the server socket's send buffer at ``size`` bytes (no
    autotuning: otherwise the kernel takes megabytes of an unread connection's catch-up)."""
    client = raw.ws._conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    server = session.transport.raw.get_extra_info("socket")  # type: ignore[attr-defined]
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def session_of(node: Node, user: str) -> Session:
    (session,) = [s for s in node.websocket.sessions if s.user == user]
    return session


async def arm(node: Node, bob: Raw, after: int) -> None:
    """Bob follows ``big`` from 0, then ``vault`` from ``after``, and reads nothing: the vault's first store
    read waits behind big's catch-up, which the server cannot hand to bob's socket."""
    # aiohttp stops reading the socket by itself once 128 KB wait unread.
    session = session_of(node, "bob")
    socket_buffers(bob, session, 64 * 1024)
    await bob.send({"type": "subscribe", "room": "big", "after": 0, "id": "big"})
    await wait_until("big's catch-up waiting for bob's socket", lambda: session.outbox._writer is not None)
    await bob.send({"type": "subscribe", "room": "vault", "after": after, "id": "vault"})

    def armed() -> bool:
        follow = session.follows._follows.get("vault")
        return follow is not None and follow.attached and follow.fetching is not None and not follow.accepted

    await wait_until("bob's vault subscription waiting behind big's catch-up", armed)
    assert session.outbox._writer is not None  # still stalled: the vault's store read has not run


async def attack(bob_node: Node, alice_node: Node, removal: str, ahead: int = 1) -> list[dict[str, Any]]:
    """Run the attack with bob's cursor at the vault's head + ``ahead``; return every frame bob got for it."""
    await preload(alice_node)
    head = (await alice_node.backends.store.position("vault")).head
    bob = await Raw.open(bob_node, "bob")
    bob.skip_types = set()  # presence frames are part of what must not leak
    await arm(bob_node, bob, after=head + ahead)
    # carol follows the vault on bob's node: once she has "SECRET two", bob's node has had every event.
    carol = await Raw.open(bob_node, "carol")
    await carol.request({"type": "subscribe", "room": "vault", "id": "s"})
    await carol.until(lambda f: f["type"] == "live")
    alice = await Raw.open(alice_node, "alice")
    reply = await alice.request({"type": removal, "room": "vault", "user": "bob", "id": "k"})
    assert reply["type"] == "ok", reply
    status, _ = await api(bob_node, "GET", "/api/rooms/vault/messages?after=0", "bob")
    assert status == 404  # the server already refuses bob everything else (a private room: hidden, R-SEC-63)
    ack = await alice.request({"type": "send", "room": "vault", "cmid": "s1", "body": "SECRET one", "id": "m1"})
    assert ack["type"] == "ack", ack
    await alice.send({"type": "typing", "room": "vault"})  # no reply on success
    ack = await alice.request({"type": "send", "room": "vault", "cmid": "s2", "body": "SECRET two", "id": "m2"})
    assert ack["type"] == "ack", ack
    # The owner's second connection follows the vault: "alice online", a presence frame for the room.
    owner = await Raw.open(alice_node, "alice")
    await owner.request({"type": "subscribe", "room": "vault", "id": "o"})
    carol.skip_types = set()
    awaited = {"typing", "SECRET two", "alice online"}

    def seen(frame: dict[str, Any]) -> bool:
        awaited.discard("typing" if frame["type"] == "typing" else frame.get("body", ""))
        if frame["type"] == "presence" and frame["user"] == "alice":
            awaited.discard("alice online")
        return not awaited

    await carol.until(seen)
    # Bob reads again: big's catch-up, then whatever the server has for the vault.
    vault: list[dict[str, Any]] = []
    ends = {"vault", "big"}

    def ended(frame: dict[str, Any]) -> bool:
        room = frame.get("room")
        if room == "vault":
            vault.append(frame)
        if frame["type"] == "live" or (room == "vault" and frame["type"] == "error"):
            ends.discard(room or "")
        return not ends

    socket_buffers(bob, session_of(bob_node, "bob"), 4 * 1024 * 1024)
    await bob.until(ended, timeout=30)
    pong = await bob.request({"type": "ping", "id": "p"})  # everything queued for bob before it has been read
    assert pong["type"] == "pong"
    vault.extend(f for f in bob.frames if f.get("room") == "vault")
    for raw in (alice, bob, carol, owner):
        await raw.close()
    return vault


def assert_ended(vault: list[dict[str, Any]]) -> None:
    """Bob's frames for the vault: nothing after the removal but the 4403 answering his subscribe.

    (Before it he may have had carol's presence, which he was allowed to see.)"""
    leaked = [
        f
        for f in vault
        if f["type"] in ("msg", "typing", "subscribed", "live") or (f["type"] == "presence" and f["user"] == "alice")
    ]
    assert not leaked, vault
    # 4403 ends a subscription; a subscribe refused outright gets what any non-member's does, which in a
    # private room is 4404 (R-SEC-63).
    assert vault[-1]["type"] == "error" and vault[-1]["code"] in (Code.FORBIDDEN, Code.UNKNOWN_ROOM), vault
    assert vault[-1]["ref"] == "vault", vault


@pytest.mark.parametrize("removal", ["kick", "ban"])
@pytest.mark.parametrize("ahead", [1, 0], ids=["cursor-at-the-kick", "cursor-at-the-head"])
async def test_a_removed_member_behind_a_paced_catch_up_reads_nothing_more(
    node: Node, removal: str, ahead: int
) -> None:
    """[R-SEC-3] [R-SEC-20] A member armed with ``after = head + 1`` (or ``head``: the removal then waits in the
    catch-up buffer) behind a stalled catch-up, then kicked or banned: its subscription ends with 4403 at once
    and it gets no later message, typing or presence of the room."""
    assert_ended(await attack(node, node, removal, ahead))


async def test_a_removed_member_on_another_node_reads_nothing_more(shared: Settings) -> None:
    """[R-SEC-20] The same attack with the attacker on one node and the owner on another."""
    async with serve(shared) as one, serve(replace(shared, data_dir=shared.data_dir + "-2")) as two:
        assert_ended(await attack(two, one, "kick"))


async def test_a_kick_between_the_membership_check_and_the_bus_subscription_ends_the_subscribe(
    embedded_settings: Settings,
) -> None:
    """[R-SEC-20] A kick stored after the subscribe's membership check but before its bus subscription is
    confirmed (so never seen live, and at the cursor) refuses the subscribe with 4403."""
    async with serve(with_limits(embedded_settings, head_check_s=0.0)) as node:
        await preload(node)
        head = (await node.backends.store.position("vault")).head
        attach = node.hub.attach

        async def kick_first(room: str, listener: Any, *rest: Any) -> None:
            if room == "vault":
                await node.service.kick("alice", "vault", "bob")
            await attach(room, listener, *rest)

        node.hub.attach = kick_first  # type: ignore[method-assign]
        bob = await Raw.open(node, "bob")
        bob.skip_types = set()
        reply = await bob.request({"type": "subscribe", "room": "vault", "after": head + 1, "id": "vault"})
        node.hub.attach = attach  # type: ignore[method-assign]
        await node.service.send("alice", "vault", "s1", "SECRET one")
        await node.service.typing("alice", "vault")
        pong = await bob.request({"type": "ping", "id": "p"})
        assert pong["type"] == "pong"
        vault = [reply, *(f for f in bob.frames if f.get("room") == "vault")]
        assert_ended(vault)
        await bob.close()


async def test_a_removal_lost_by_the_bus_stops_typing_at_the_reset_and_ends_at_the_refetch(
    embedded_settings: Settings,
) -> None:
    """[R-SEC-20] The bus loses the kick and reports a reset: from the reset no typing or presence of the room
    reaches the member, and the refetch that follows ends the subscription with 4403."""
    async with serve(with_limits(embedded_settings, head_check_s=0.0)) as node:
        await preload(node)
        bob = await Raw.open(node, "bob")
        bob.skip_types = set()
        await bob.request({"type": "subscribe", "room": "vault", "id": "vault"})
        await bob.until(lambda f: f["type"] == "live")
        bus = node.backends.bus
        publish = bus.publish

        async def lose_kicks(room: str, payload: bytes) -> None:
            if b'"kind":"kick"' not in payload:
                await publish(room, payload)

        bus.publish = lose_kicks  # type: ignore[method-assign]
        await node.service.kick("alice", "vault", "bob")
        bus.publish = publish  # type: ignore[method-assign]
        await node.service.typing("carol", "vault")  # before the reset: bob's node does not know yet
        await bob.until(lambda f: f["type"] == "typing")
        node.hub._on_reset()  # what the bus reports after losing messages
        await node.service.typing("alice", "vault")
        await node.service.send("alice", "vault", "s1", "SECRET one")
        gone = await bob.until(lambda f: f.get("room") == "vault" and f["type"] != "presence")
        assert gone["type"] == "error" and gone["code"] == Code.FORBIDDEN, gone
        pong = await bob.request({"type": "ping", "id": "p"})
        assert pong["type"] == "pong"
        assert not [f for f in bob.frames if f.get("room") == "vault"], bob.frames
        await bob.close()


async def test_a_member_who_came_back_reads_past_their_own_earlier_removal(node: Node) -> None:
    """[R-SEC-20] A removal older than a membership check that passed ends nothing: a member kicked and
    re-admitted catches up through their own ``kick`` and ``leave`` and stays subscribed."""
    await node.service.create_room("alice", "r")
    await node.service.join("bob", "r")
    await node.service.kick("alice", "r", "bob")
    await node.service.join("bob", "r")
    await node.service.leave("bob", "r")
    await node.service.join("bob", "r")
    bob = await Raw.open(node, "bob")
    await bob.request({"type": "subscribe", "room": "r", "after": 0, "id": "s"})
    caught_up = []
    while (frame := await bob.until(lambda f: f["type"] in ("msg", "live", "error")))["type"] == "msg":
        caught_up.append((frame["kind"], frame["sender"]))
    assert frame["type"] == "live", frame
    assert ("kick", "bob") in caught_up and ("leave", "bob") in caught_up, caught_up
    await node.service.send("alice", "r", "c1", "welcome back")
    later = await bob.until(lambda f: f["type"] in ("msg", "error"))
    assert later.get("body") == "welcome back", later
    await bob.close()
