"""Hub: node-local fan-out. One bus subscription per room per node feeds every local listener.

The hub decodes each bus payload once (just its type, room and seq) and hands the *same bytes* to
every listener, which forwards them unchanged: encode once, never await per socket. A listener that speaks
another encoding (a MessagePack connection) names its ``recode`` when it attaches: each payload is re-encoded
once per encoding and fan-out, and shared by every listener of that encoding (a room with JSON and MessagePack
connections encodes a message at most twice); a room without such listeners does no more than before.

It also keeps the node honest about the bus, which is only an accelerator:

* when the bus reports a reset (it may have lost messages), every listener is told ``dropped``;
* every ``head_check_s`` it reads each followed room's position from the store and passes it to the
  listeners (``head_seen``), which repairs a lost tail that no later message would reveal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

import msgspec

from .metrics import Tally
from .ports import Bus, Store, Subscription
from .presence import Presence
from .protocol.errors import RoostError
from .protocol.types import REMOVING_KINDS, Position

__all__ = ["Hub", "Listener", "Recode", "Wire"]

log = logging.getLogger(__name__)


class Wire(msgspec.Struct, frozen=True, array_like=True):
    """A message as it travels inside a node: its seq, its encoded ``msg`` frame, and who it removes.

    ``left`` names the user a ``leave``, ``kick`` or ``ban`` event takes out of the room (empty otherwise):
    sessions of that user end their subscription after delivering it, on every node.
    """

    seq: int
    data: bytes
    left: str = ""


class _Envelope(msgspec.Struct):
    type: str
    room: str = ""
    seq: int = 0
    kind: str = ""
    sender: str = ""


_envelope: Final = msgspec.json.Decoder(_Envelope)


class Listener(Protocol):
    def on_message(self, room: str, wire: Wire) -> None: ...

    def on_ephemeral(self, room: str, data: bytes) -> None: ...

    def on_dropped(self, room: str) -> None: ...

    def on_head(self, room: str, position: Position) -> None: ...


Recode = Callable[[bytes], bytes]
"""A bus payload (a JSON-encoded frame) in a listener's own encoding."""


class _Room:
    __slots__ = ("listeners", "lock", "recoders", "subscription")

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.recoders: dict[Listener, Recode] = {}
        """The listeners (also in ``listeners``) that take payloads in another encoding, with its recode."""
        self.subscription: Subscription | None = None
        self.lock = asyncio.Lock()
        """Serializes the bus subscribe/unsubscribe of this room, so they never interleave."""


class Hub:
    def __init__(
        self,
        bus: Bus,
        store: Store,
        head_check_s: float = 10.0,
        presence_interval_s: float = 10.0,
        tally: Tally | None = None,
        coalesce_s: float = 0.5,
    ) -> None:
        self.tally = tally
        self.bus = bus
        self.store = store
        self.head_check_s = head_check_s
        self._rooms: dict[str, _Room] = {}
        self._checker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.presence = Presence(
            bus, self._notify, interval_s=presence_interval_s, ttl_s=presence_interval_s * 3, coalesce_s=coalesce_s
        )
        bus.on_reset(self._on_reset)

    async def start(self) -> None:
        await self.presence.start()
        if self.head_check_s > 0:
            self._checker = asyncio.create_task(self._check_heads(), name="roost-head-check")

    def _notify(self, room: str, data: bytes) -> None:
        entry = self._rooms.get(room)
        if entry is not None:
            if entry.recoders:
                _recoded_ephemeral(entry, room, data)
                return
            for listener in tuple(entry.listeners):
                listener.on_ephemeral(room, data)

    async def aclose(self) -> None:
        await self.presence.aclose()
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        rooms, self._rooms = self._rooms, {}
        for entry in rooms.values():
            if entry.subscription is not None:
                await entry.subscription.aclose()

    async def attach(self, room: str, listener: Listener, recode: Recode | None = None) -> None:
        """Return once the room's bus subscription is confirmed; from then on ``listener`` gets it all, in its
        own encoding when it names a ``recode`` (its messages and ephemeral frames re-encoded by it)."""
        entry = self._rooms.get(room)
        if entry is None:
            entry = self._rooms[room] = _Room()
        entry.listeners.add(listener)
        if recode is not None:
            entry.recoders[listener] = recode
        async with entry.lock:
            if entry.subscription is not None:
                return
            try:
                entry.subscription = await self.bus.subscribe(room, lambda data: self._on_payload(room, data))
            except BaseException:
                entry.listeners.discard(listener)
                entry.recoders.pop(listener, None)
                if not entry.listeners and self._rooms.get(room) is entry:
                    del self._rooms[room]
                raise

    def detach(self, room: str, listener: Listener) -> None:
        """Stop delivering to ``listener`` now; the bus subscription is dropped in the background."""
        entry = self._rooms.get(room)
        if entry is None:
            return
        entry.listeners.discard(listener)
        entry.recoders.pop(listener, None)
        if not entry.listeners:
            task = asyncio.create_task(self._release(room, entry))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _release(self, room: str, entry: _Room) -> None:
        async with entry.lock:
            if entry.listeners or entry.subscription is None:
                return
            subscription, entry.subscription = entry.subscription, None
            try:
                await subscription.aclose()
            except RoostError as exc:
                log.warning("unsubscribe from %s failed: %s", room, exc.reason)
            # Forget the room only now: an attach that came meanwhile found this entry, waits on
            # its lock, and subscribes again after the unsubscribe is complete.
            if not entry.listeners and self._rooms.get(room) is entry:
                del self._rooms[room]

    def _on_payload(self, room: str, data: bytes) -> None:
        if self.tally is not None:
            self.tally.bus_payloads += 1
        entry = self._rooms.get(room)
        if entry is None:
            return
        try:
            head = _envelope.decode(data)
        except msgspec.MsgspecError:
            log.warning("dropping undecodable bus payload in room %s", room)
            return
        if head.type == "msg":
            wire = Wire(head.seq, data, head.sender if head.kind in REMOVING_KINDS else "")
            if entry.recoders:
                _recoded_message(entry, room, wire)
                return
            for listener in tuple(entry.listeners):
                listener.on_message(room, wire)
        elif head.type == "presence":
            self.presence.observe(room, data)
        elif entry.recoders:
            _recoded_ephemeral(entry, room, data)
        else:
            for listener in tuple(entry.listeners):
                listener.on_ephemeral(room, data)

    def _on_reset(self) -> None:
        if self.tally is not None:
            self.tally.bus_resets += 1
        for room, entry in list(self._rooms.items()):
            for listener in tuple(entry.listeners):
                listener.on_dropped(room)

    async def _check_heads(self) -> None:
        while True:
            await asyncio.sleep(self.head_check_s)
            for room in list(self._rooms):
                try:
                    position = await self.store.position(room)
                except RoostError as exc:
                    log.warning("head check of %s failed: %s", room, exc.reason)
                    continue
                entry = self._rooms.get(room)
                if entry is None:
                    continue
                for listener in tuple(entry.listeners):
                    listener.on_head(room, position)


def _recoded_message(entry: _Room, room: str, wire: Wire) -> None:
    """The fan-out of a room with listeners of other encodings: one re-encoding per encoding, shared."""
    recoders = entry.recoders
    wires: dict[Recode, Wire] = {}
    for listener in tuple(entry.listeners):
        recode = recoders.get(listener)
        if recode is None:
            listener.on_message(room, wire)
            continue
        recoded = wires.get(recode)
        if recoded is None:
            recoded = wires[recode] = Wire(wire.seq, recode(wire.data), wire.left)
        listener.on_message(room, recoded)


def _recoded_ephemeral(entry: _Room, room: str, data: bytes) -> None:
    recoders = entry.recoders
    payloads: dict[Recode, bytes] = {}
    for listener in tuple(entry.listeners):
        recode = recoders.get(listener)
        if recode is None:
            listener.on_ephemeral(room, data)
            continue
        recoded = payloads.get(recode)
        if recoded is None:
            recoded = payloads[recode] = recode(data)
        listener.on_ephemeral(room, recoded)
