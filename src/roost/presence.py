"""Presence: who is following which room, across nodes, through the bus only (never stored).

Each node counts its own sessions per (room, user) and announces changes on the room's bus channel;
every ``interval_s`` it re-announces what it has, and entries of other nodes that are not refreshed
within ``ttl_s`` expire (a node that died takes its users offline after at most ``ttl_s``). A user
is online in a room while any node has them. Sessions are told only about changes of that merged
view, so heartbeats do not reach clients. A node's own changes of one (room, user) are announced at most once
per ``coalesce_s`` (``Coalescer``: the first at once, then the latest state, and nothing when it is back to
what was announced), so a user following and leaving a room in a loop is not a presence storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

import msgspec

from .coalesce import Coalescer
from .ports import Bus
from .protocol import frames
from .protocol.errors import RoostError

__all__ = ["Presence"]

log = logging.getLogger(__name__)


class _Announce(msgspec.Struct, frozen=True, tag="presence", tag_field="type"):
    room: str
    user: str
    status: str
    node: str


_decode: Final = msgspec.json.Decoder(_Announce)
_encode: Final = msgspec.json.Encoder().encode


class Presence:
    def __init__(
        self,
        bus: Bus,
        notify: Callable[[str, bytes], None],
        *,
        interval_s: float = 10.0,
        ttl_s: float = 30.0,
        coalesce_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.notify = notify
        """Called with (room, encoded presence frame) when the merged view of a room changes."""
        self.node = secrets.token_hex(6)
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.clock = clock
        self._local: dict[str, dict[str, int]] = {}
        self._seen: dict[str, dict[tuple[str, str], float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._changes: Coalescer[tuple[str, str], str] = Coalescer(coalesce_s, self._announce_change, clock)

    async def start(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._heartbeat(), name="roost-presence")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self._changes.aclose()

    def online(self, room: str) -> list[str]:
        return sorted({user for user, _node in self._seen.get(room, {})})

    def follow(self, room: str, user: str) -> None:
        """Count one more local session of ``user`` in ``room`` (synchronous, so counts never race)."""
        users = self._local.setdefault(room, {})
        users[user] = users.get(user, 0) + 1
        if users[user] == 1:
            self._later(self._changes.offer((room, user), "online"))

    def unfollow(self, room: str, user: str) -> None:
        users = self._local.get(room)
        if not users or user not in users:
            return
        users[user] -= 1
        if users[user] <= 0:
            del users[user]
            if not users:
                del self._local[room]
            self._later(self._changes.offer((room, user), "offline"))

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def observe(self, room: str, data: bytes) -> None:
        """A presence announcement arrived on the room's bus channel."""
        try:
            note = _decode.decode(data)
        except msgspec.MsgspecError:
            return
        seen = self._seen.setdefault(room, {})
        was_online = self._is_online(room, note.user)
        key = (note.user, note.node)
        if note.status == "online":
            seen[key] = self.clock() + self.ttl_s
        else:
            seen.pop(key, None)
        now_online = self._is_online(room, note.user)
        if was_online != now_online:
            self._emit(room, note.user, now_online)

    def _is_online(self, room: str, user: str) -> bool:
        return any(u == user for u, _ in self._seen.get(room, {}))

    def _emit(self, room: str, user: str, online: bool) -> None:
        event = frames.PresenceEvent(room=room, user=user, status="online" if online else "offline")
        self.notify(room, frames.encode(event))

    async def _announce_change(self, key: tuple[str, str], status: str) -> None:
        await self._announce(*key, status)

    async def _announce(self, room: str, user: str, status: str) -> None:
        with contextlib.suppress(RoostError):
            await self.bus.publish(room, _encode(_Announce(room, user, status, self.node)))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for room, users in list(self._local.items()):
                for user in list(users):
                    await self._announce(room, user, "online")
            now = self.clock()
            for room, seen in list(self._seen.items()):
                for key, expires in list(seen.items()):
                    if expires < now:
                        del seen[key]
                        if not self._is_online(room, key[0]):
                            self._emit(room, key[0], False)
