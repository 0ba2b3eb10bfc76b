"""The ports the service is written against. Every backend implements them; nothing else may vary.

Contracts. Each is checked at the port, on every engine, by the contract suites in tests/backends/
(``test_store.py``, ``test_leases.py``, ``test_bus.py``; the engines are listed there, one file each), and
through whole servers by the conformance suite, tests/integration/, which runs over every backend (a store
engine paired with a bus engine) of tests/backends/__init__.py, parametrized in tests/conftest.py.

Store
  * ``append`` assigns the room's next dense seq (1, 2, 3, ...) atomically with the durable write, and
    returns only after the backend's documented durability point. It is idempotent on
    ``(room, sender, cmid)`` forever: a retry returns the original message with ``duplicate=True``;
    the same key with another body raises ``Conflict``. An unknown room raises ``NotFound``; a
    backend failure raises ``Unavailable`` and stores nothing.
  * ``read(room, after, limit)``: messages with ``seq > after``, ascending, without holes, at most
    ``limit``, and the room's ``Position`` read in the same snapshot.
  * ``read_before(room, before, limit)``: the newest ``limit`` messages with ``seq < before``, ascending;
    ``before`` 0 or 1 is an empty page with the position, never an error.
  * The epoch changes if and only if the room's history was lost or recreated: not by appends, trims or
    restarts.
  * ``trim`` (keep the newest N) and ``trim_before`` (drop the seqs below one) keep the idempotency keys of
    what they drop, so a late retry is still answered, not stored; ``first`` only ever rises.
  * ``erase`` replaces stored messages in place: the same seq, cmid, sender and ts, another kind and body
    (a tombstone), and the old body is physically removed from the engine's storage as far as the engine
    allows (docs/backends.md, "Erasure"; R-ERASE-*). Reads return the replacement; the sequence keeps no
    hole; a late retry of an erased message is still answered as a duplicate.
  * After ``aclose`` every call raises ``Unavailable``; closing twice is harmless.

Directory
  * Rooms and their members. Membership is checked by the service on every read and write.
  * Per-room attribute maps (``room_attrs``/``set_room_attr``): small string maps by namespace that the
    service gives meaning to (``meta``: kind and owner, written once by ``create_room``; ``roles``,
    ``bans``, ``invites``). Backends store them and know nothing of what they mean, so the rules of
    private rooms, roles and bans live in the service alone and are the same on every backend.
  * Read positions (``mark_read``) are kept for any room name, existing or not: the directory does not
    check the room (the service checks membership first), so the readiness probe writes one for a room
    no user can name, on every engine alike.

Leases
  * ``lease(name, holder, ttl_ms)`` takes the lease ``name`` for ``holder``, or keeps it (renews it for
    ``ttl_ms`` from now) when ``holder`` holds it already, and returns the fencing token; it returns
    ``None`` while another holder's lease has not expired. At most one holder holds a name at any moment
    as the clock that ends leases counts (the engine's; the nodes' on NATS and Kafka: docs/reliability.md,
    "Leases"); a lease not renewed expires after ``ttl_ms``. Tokens are positive and grow every time a
    name changes hands, so a token orders the holders of a name.
  * ``release(name, holder)`` ends ``holder``'s lease at once (no-op when it does not hold it).
  * The engine is the arbiter (a Redis key with PX, a JetStream KV revision, a PostgreSQL row, a Kafka
    record in partition order, a SQLite row): no node's own state decides.

Bus
  * ``publish`` is at-most-once; no subscribers is not an error.
  * ``subscribe`` returns only once the broker has confirmed the subscription, so a publish made
    after it returns is delivered (subscribe-then-read depends on this).
  * ``on_reset`` callbacks run when the bus may have lost messages (a reconnect): subscribers then
    repair from the store, and their subscriptions deliver again.
  * After ``aclose`` nothing more is delivered, and ``publish``/``subscribe`` raise ``Unavailable``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import msgspec

from .protocol.types import Draft, Message, Page, Position

__all__ = ["Appended", "Bus", "Directory", "Leases", "Redaction", "Storage", "Store", "Subscription"]


class Appended(msgspec.Struct, frozen=True):
    message: Message
    duplicate: bool
    published: bool = False
    """True when the store already published the message atomically with the write (Redis Lua)."""


class Redaction(msgspec.Struct, frozen=True):
    """What an erased message becomes: ``kind`` and ``body`` replace the stored ones at ``seq``; the store keeps
    the rest (cmid, sender, ts). The service decides them (``protocol.relations.redact``); engines store them."""

    seq: int
    kind: str
    body: str


class Store(Protocol):
    async def append(self, draft: Draft) -> Appended: ...

    async def read(self, room: str, after: int, limit: int) -> Page: ...

    async def read_before(self, room: str, before: int, limit: int) -> Page: ...

    async def position(self, room: str) -> Position: ...

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        """The highest seq stored before ``ts_ms`` (approximate: clocks of nodes differ)."""
        ...

    async def durability_warnings(self) -> list[str]:
        """What the store can see of its engine's settings that breaks the no-loss promise (logged at
        startup and shown in ``/readyz``); empty when nothing is known to be unsafe."""
        ...

    async def trim(self, room: str, keep_last: int) -> int:
        """Retention: keep the newest ``keep_last`` messages (idempotency keys are kept); return how many went."""
        ...

    async def trim_before(self, room: str, seq: int) -> int:
        """Retention by age: drop every message with a seq below ``seq`` (at most up to the head); return how
        many went. Exact under concurrent appends, which ``trim`` with a count computed earlier is not."""
        ...

    async def erase(self, room: str, redactions: Sequence[Redaction]) -> int:
        """Erasure: replace each message named by a redaction, physically removing its old body (see the module
        docstring); seqs not kept (trimmed, or beyond the head) are skipped. Return how many were replaced."""
        ...

    async def aclose(self) -> None: ...


class Directory(Protocol):
    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        """Create ``room`` with ``owner`` as its first member; False if it already exists.

        ``meta`` becomes the room's ``meta`` attributes in the same atomic step as the creation, so no
        reader ever sees the room without them (a private room is never briefly public). It is never
        changed afterwards; ``room_attrs(room, "meta")`` returns it (empty for rooms made before it)."""
        ...

    async def room_exists(self, room: str) -> bool: ...

    async def is_member(self, room: str, user: str) -> bool: ...

    async def add_member(self, room: str, user: str) -> bool:
        """False if ``user`` was a member already."""
        ...

    async def remove_member(self, room: str, user: str) -> bool: ...

    async def members(self, room: str) -> list[str]:
        """The room's members, sorted (empty for an unknown room)."""
        ...

    async def rooms_of(self, user: str) -> list[str]: ...

    async def all_rooms(self) -> list[str]:
        """Every room, sorted, whatever its kind: the service decides what to show."""
        ...

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        """The room's attributes in namespace ``ns`` (empty if none, or the room is unknown)."""
        ...

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        """Set one attribute (``None`` deletes it). Raises ``NotFound`` for an unknown room. Not for ``meta``."""
        ...

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        """Raise ``user``'s read position in ``room`` to ``seq``; never lower it. Return the position.

        One position per user per room, shared by all the user's devices (the role the seed gives
        to Redis consumer groups), so unread counts and "seen by" agree everywhere."""
        ...

    async def read_positions(self, user: str) -> dict[str, int]: ...

    async def readers(self, room: str) -> dict[str, int]:
        """Every user's read position in ``room``."""
        ...


class Leases(Protocol):
    """Who does a job that must run on one node at a time (a durable consumer's deliveries, hooks.py)."""

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        """Take or renew ``name`` for ``holder``: the fencing token, or ``None`` while another holds it."""
        ...

    async def release(self, name: str, holder: str) -> None: ...


class Storage(Store, Directory, Leases, Protocol):
    """What a store engine opens: one object serves the three ports (the directory and the leases live
    beside the messages, in the same engine)."""


class Subscription(Protocol):
    async def aclose(self) -> None: ...


class Bus(Protocol):
    async def publish(self, room: str, payload: bytes) -> None: ...

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> Subscription: ...

    def on_reset(self, callback: Callable[[], None]) -> None: ...

    async def aclose(self) -> None: ...
