"""Which users have a connection open on some node: what "offline" means for pushes, across nodes.

Presence (presence.py) is per room, and a user's own event stream announces none; a push needs "no
connection anywhere". Each node announces on one bus channel (``~roost-online``) a user whose first connection
to it opened or whose last one closed, at once, and every ``interval_s`` (``presence_interval_s``) the whole
list of its connected users (in notes of at most ``_CHUNK`` names). A node keeps what the others announced
and forgets an entry not refreshed within three intervals (a dead node's users go offline then). So it is
approximate, like presence: a user is taken as online for up to three intervals after their node died, and a
node that just started listening knows only its own users until every node's list came (``warm``: one and a
half intervals), so the dispatcher waits that long before its first push. What counts for a push is whether the
user was online *when the event was stored* (``online_at``): a node remembers when each user last went
offline (for ``_LEFT_KEEP_S``), so an event the user's open connection received live is not pushed when the
dispatcher reaches it after they left. Costs: one small bus message per
user connect/disconnect (first and last connection to a node), and per node ``users / _CHUNK`` messages per
interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from ..notices import BackgroundSubscription
from ..ports import Bus
from ..protocol.errors import RoostError

__all__ = ["CHANNEL", "Online"]

log = logging.getLogger(__name__)

CHANNEL: Final = "~roost-online"
_CHUNK: Final = 500
_LEFT_KEEP_S: Final = 3600.0


class _Note(msgspec.Struct, frozen=True):
    node: str
    users: list[str]
    online: bool


_encode: Final = msgspec.json.Encoder().encode
_decode: Final = msgspec.json.Decoder(_Note).decode


class Online:
    def __init__(
        self,
        bus: Bus,
        local: Callable[[], Iterable[str]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.local = local
        """This node's connected users, read when announcing them all."""
        self.interval_s = interval_s
        self.clock = clock
        self.node = secrets.token_hex(6)
        self._seen: dict[str, dict[str, float]] = {}
        """user -> node -> until when they count as online there."""
        self._left: dict[str, float] = {}
        """user -> when (wall clock, s) they were last seen going offline."""
        self._since = clock()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._notices = BackgroundSubscription(bus, CHANNEL, self._observe)

    async def start(self) -> None:
        self._since = self.clock()
        self._notices.start()
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._heartbeat(), name="roost-online")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pending:  # the last announcements, given a second (a bus that does not answer loses them)
            _, late = await asyncio.wait(set(self._pending), timeout=1.0)
            for task in late:
                task.cancel()
        await self._notices.aclose()

    def changed(self, user: str, online: bool) -> None:
        """The user's first connection to this node opened (True) or their last one closed (False)."""
        if not online:
            self._left[user] = time.time()
        task = asyncio.get_running_loop().create_task(self._publish(_Note(self.node, [user], online)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def is_online(self, user: str) -> bool:
        if user in set(self.local()):
            return True
        now = self.clock()
        return any(until >= now for until in self._seen.get(user, {}).values())

    def online_at(self, user: str, ts_ms: int) -> bool:
        """Online now, or went offline after ``ts_ms`` (wall clock): they had a connection when it happened."""
        return self.is_online(user) or self._left.get(user, 0.0) * 1000 >= ts_ms

    def warm(self) -> bool:
        """True once every live node's full list has had time to arrive."""
        return self.clock() - self._since >= self.interval_s * 1.5

    def _observe(self, data: bytes) -> None:
        try:
            note = _decode(data)
        except msgspec.MsgspecError:
            return
        until = self.clock() + self.interval_s * 3
        for user in note.users:
            nodes = self._seen.setdefault(user, {})
            if note.online:
                nodes[note.node] = until
            else:
                if nodes.pop(note.node, None) is not None:
                    self._left[user] = time.time()
                if not nodes:
                    del self._seen[user]

    async def _publish(self, note: _Note) -> None:
        with contextlib.suppress(RoostError):
            await self.bus.publish(CHANNEL, _encode(note))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            users = sorted(set(self.local()))
            for i in range(0, len(users), _CHUNK):
                await self._publish(_Note(self.node, users[i : i + _CHUNK], True))
            now = self.clock()
            for user, nodes in list(self._seen.items()):
                for node, until in list(nodes.items()):
                    if until < now:
                        del nodes[node]
                        self._left[user] = time.time()
                if not nodes:
                    del self._seen[user]
            forget = time.time() - _LEFT_KEEP_S
            for user, at in list(self._left.items()):
                if at < forget:
                    del self._left[user]
