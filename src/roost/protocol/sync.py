"""RoomSync: turn "a live stream plus store reads" into "each message once, in seq order, or a resync".

Sans-I/O: no awaits, no sockets, no clock. The caller feeds inputs and drains ``take_actions()``.
The same machine runs in a server session (authoritative catch-up) and in the client SDK (dedupe and
gap repair after a reconnect).

Contract with the caller:

* Subscribe to the room's live stream, and wait until that subscription is confirmed, *before*
  ``start()``: every message committed after that point then arrives live, so the store read that
  ``start()`` asks for can only overlap the live stream, never leave a hole between them.
* Execute each ``Fetch`` by reading the store (``after``, ``limit``) and feed the result to ``page()``;
  on failure call ``fetch_failed()`` and back off.

Rules (each has a test in tests/protocol/test_sync.py):

1. A message with ``seq <= last`` is a duplicate and is dropped.
2. In LIVE, ``seq == last + 1`` passes straight through: ``live()`` returns True and queues nothing.
3. In LIVE, ``seq > last + 1`` is a gap: the message is buffered, state becomes FILLING and a
   ``Fetch(after=last)`` is queued.
4. A page is merged with the buffer by seq and the contiguous run from ``last + 1`` is delivered.
   While the room's head (or a buffered seq) is beyond ``last``, the next page is fetched; then the
   rest of the buffer is delivered and ``CaughtUp`` is queued.
5. Continuity that cannot be proven is a ``Resync``, never a partial or silent hole: the epoch
   differs from the cursor's, the history was trimmed past the cursor, or a page breaks the store's
   contract (a hole inside it, or empty while the head is beyond ``last``).
6. The buffer is bounded. On overflow it is dropped and fetching goes on: every live message is also
   in the store, so a dropped buffer costs reads, never messages.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .codes import Code
from .errors import UsageError
from .types import Position

__all__ = [
    "Accepted",
    "Action",
    "CaughtUp",
    "Deliver",
    "Fetch",
    "Resync",
    "RoomSync",
    "Sequenced",
    "State",
]


class Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


T = TypeVar("T", bound=Sequenced)


class State(enum.Enum):
    IDLE = "idle"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    FILLING = "filling"
    RESYNC = "resync"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The first page proved the cursor continuable; the caller may confirm the subscription."""

    position: Position


@dataclass(frozen=True, slots=True)
class Deliver(Generic[T]):
    """Contiguous, ascending messages starting at the previous ``last + 1``."""

    items: tuple[T, ...]


@dataclass(frozen=True, slots=True)
class Fetch:
    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Everything up to ``seq`` was delivered; from here on the live stream passes through."""

    seq: int


@dataclass(frozen=True, slots=True)
class Resync:
    """Continuity from the cursor cannot be proven. Nothing more is delivered by this machine."""

    code: Code
    reason: str
    position: Position | None


Action = Accepted | Deliver[T] | Fetch | CaughtUp | Resync

_TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.CATCHING_UP, State.CLOSED}),
    State.CATCHING_UP: frozenset({State.LIVE, State.RESYNC, State.CLOSED}),
    State.LIVE: frozenset({State.FILLING, State.RESYNC, State.CLOSED}),
    State.FILLING: frozenset({State.LIVE, State.RESYNC, State.CLOSED}),
    State.RESYNC: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}
"""The only allowed transitions (docs/protocol.md, sections 8 and 9, describes them in prose)."""


class RoomSync(Generic[T]):
    """Per-room, per-subscriber delivery state. ``last`` is the newest seq delivered (the cursor)."""

    def __init__(
        self,
        cursor: int,
        epoch: str | None = None,
        *,
        page_limit: int = 500,
        max_buffer: int = 10_000,
    ) -> None:
        if cursor < 0 or page_limit < 1 or max_buffer < 1:
            raise UsageError("cursor must be >= 0, page_limit and max_buffer >= 1")
        self.last = cursor
        self.epoch = epoch
        self.state = State.IDLE
        self.page_limit = page_limit
        self.max_buffer = max_buffer
        self.buffer_overflows = 0
        self._buffer: dict[int, T] = {}
        self._seen_max = cursor
        self._recheck = False
        self._accepted = False
        self._actions: list[Action[T]] = []

    @classmethod
    def resumed(cls, cursor: int, epoch: str | None = None, **kwargs: int) -> RoomSync[T]:
        """A machine already LIVE at ``cursor``: for a client whose server has done the catch-up."""
        machine: RoomSync[T] = cls(cursor, epoch, **kwargs)
        machine.state = State.LIVE
        machine._accepted = True
        return machine

    # ---- inputs -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.state is not State.IDLE:
            raise UsageError(f"start() in state {self.state.value}")
        self._to(State.CATCHING_UP)
        self._fetch()

    def live(self, item: T) -> bool:
        """A live message arrived. True means: deliver ``item`` now (the hot path, rule 2)."""
        seq = item.seq
        state = self.state
        if state is State.LIVE:
            if seq == self.last + 1:
                self.last = seq
                return True
            if seq <= self.last:
                return False
            self._buffer_item(item)
            self._to(State.FILLING)
            self._fetch()
            return False
        if (state is State.CATCHING_UP or state is State.FILLING) and seq > self.last:
            self._buffer_item(item)
        return False

    def page(self, messages: Sequence[T], position: Position) -> None:
        """A store read for the last queued ``Fetch`` returned ``messages`` and ``position``."""
        if self.state not in (State.CATCHING_UP, State.FILLING):
            if self.state in (State.RESYNC, State.CLOSED):
                return
            raise UsageError(f"page() in state {self.state.value}")
        if self.epoch is not None and position.epoch != self.epoch:
            self._resync("the room's history was recreated (epoch changed)", position)
            return
        self.epoch = position.epoch
        if self.last > position.head:
            self._resync(f"the cursor {self.last} is ahead of the room's head {position.head}", position)
            return
        if self.last + 1 < position.first:
            self._resync(f"history before seq {position.first} is no longer kept", position)
            return
        # Validate the whole page before acting on it: a broken page is a Resync only, without an
        # Accepted before it and without moving ``last`` over messages that are never delivered.
        last = self.last
        out: list[T] = []
        for item in messages:
            seq = item.seq
            if seq == last + 1:
                out.append(item)
                last = seq
            elif seq > last + 1:
                self._resync(f"store page has a hole before seq {seq}", position)
                return
        if not messages and position.head > last:
            self._resync("store page is empty below its head", position)
            return
        if not self._accepted:
            self._accepted = True
            self._actions.append(Accepted(position))
        self.last = last
        self._drain_buffer(out)
        if out:
            self._actions.append(Deliver(tuple(out)))
        if self.last < max(position.head, self._seen_max) or self._recheck:
            self._recheck = False
            self._fetch()
            return
        self._buffer.clear()
        self._to(State.LIVE)
        self._actions.append(CaughtUp(self.last))

    def fetch_failed(self) -> None:
        """The last ``Fetch`` could not be executed; it is queued again (the caller backs off)."""
        if self.state in (State.CATCHING_UP, State.FILLING):
            self._fetch()

    def dropped(self, count: int) -> None:
        """The live stream lost ``count`` messages (overflow, reconnect): treated as a gap."""
        if count <= 0:
            return
        if self.state is State.LIVE:
            self._to(State.FILLING)
            self._fetch()
        elif self.state in (State.CATCHING_UP, State.FILLING):
            self._recheck = True

    def head_seen(self, position: Position) -> None:
        """A periodic read of the room's head: catches a lost tail that no later message reveals."""
        if self.state is not State.LIVE:
            return
        if self.epoch is not None and position.epoch != self.epoch:
            self._resync("the room's history was recreated (epoch changed)", position)
        elif position.head > self.last:
            self._seen_max = max(self._seen_max, position.head)
            self._to(State.FILLING)
            self._fetch()

    def close(self) -> None:
        self._buffer.clear()
        self._to(State.CLOSED)

    # ---- outputs ------------------------------------------------------------------------------

    def take_actions(self) -> list[Action[T]]:
        actions, self._actions = self._actions, []
        return actions

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # ---- internals ----------------------------------------------------------------------------

    def _to(self, state: State) -> None:
        if state is self.state:
            return
        if state not in _TRANSITIONS[self.state]:
            raise UsageError(f"transition {self.state.value} -> {state.value}")
        self.state = state

    def _fetch(self) -> None:
        self._actions.append(Fetch(after=self.last, limit=self.page_limit))

    def _buffer_item(self, item: T) -> None:
        seq = item.seq
        if seq > self._seen_max:
            self._seen_max = seq
        if len(self._buffer) >= self.max_buffer:
            self._buffer.clear()
            self.buffer_overflows += 1
            return
        self._buffer[seq] = item

    def _drain_buffer(self, out: list[T]) -> None:
        buffer = self._buffer
        if not buffer:
            return
        for seq in [s for s in buffer if s <= self.last]:
            del buffer[seq]
        while (item := buffer.pop(self.last + 1, None)) is not None:
            out.append(item)
            self.last = item.seq

    def _resync(self, reason: str, position: Position | None) -> None:
        self._buffer.clear()
        self._to(State.RESYNC)
        self._actions.append(Resync(Code.RESYNC_REQUIRED, reason, position))
