"""LocalBus: the embedded, in-process bus. Delivery is synchronous, in publish order, never lost."""

from __future__ import annotations

from collections.abc import Callable

from ..protocol.errors import Unavailable

__all__ = ["LocalBus"]


class _LocalSubscription:
    def __init__(self, bus: LocalBus, room: str, sink: Callable[[bytes], None]) -> None:
        self._bus = bus
        self._room = room
        self._sink = sink

    async def aclose(self) -> None:
        sinks = self._bus._sinks.get(self._room)
        if sinks is not None and self._sink in sinks:
            sinks.remove(self._sink)
            if not sinks:
                del self._bus._sinks[self._room]


class LocalBus:
    def __init__(self) -> None:
        self._sinks: dict[str, list[Callable[[bytes], None]]] = {}
        self._closed = False

    async def publish(self, room: str, payload: bytes) -> None:
        if self._closed:
            raise Unavailable("bus is closed")
        for sink in tuple(self._sinks.get(room, ())):
            sink(payload)

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> _LocalSubscription:
        if self._closed:
            raise Unavailable("bus is closed")
        self._sinks.setdefault(room, []).append(sink)
        return _LocalSubscription(self, room, sink)

    def on_reset(self, callback: Callable[[], None]) -> None:
        """An in-process bus never loses a message, so it never resets."""

    async def aclose(self) -> None:
        self._closed = True
        self._sinks.clear()
