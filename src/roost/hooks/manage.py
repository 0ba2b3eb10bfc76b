"""What the HTTP API (gateway/consumers.py) does with consumers: create, list, show, delete, resume, rewind.

Who sees what: an administrator every consumer; an API key with the ``consumers`` scope only those of its
principal (created by any of that principal's keys). Another principal's consumer is answered as one that
does not exist (404), so ids cannot be probed.

A consumer starting ``now`` gets a cursor at the head of each matching room it can read, written before its
record: the node that takes it finds them in place, and rooms made later start from their first event. The
API writes only the record (and those first cursors); the resume and rewind requests are ids in the record
that the node delivering the consumer applies, so the cursors have one writer at a time (registry.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import msgspec

from ..config import Limits
from ..ports import Bus, Directory, Store
from ..protocol.codes import Code
from ..protocol.errors import NotFound, ProtocolError, RoostError
from ..protocol.types import MAX_SEQ, valid_room
from ..service.rooms import NS_META, kind_of
from .filters import DEFAULT_KINDS, EVENTS, MAX_PATTERN, ROOM_KINDS, Filter
from .registry import ACTIVE, CHANNEL, Cursor, Record, Registry, Rewind, Status

__all__ = ["Caller", "Consumers", "View"]

log = logging.getLogger(__name__)

MAX_URL: Final = 2048
_ID_BYTES: Final = 8
MAX_FAILURES_CAP: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Caller:
    """An administrator (``key`` empty) or an API key's principal with the ``consumers`` scope."""

    user: str
    key: str = ""

    @property
    def admin(self) -> bool:
        return not self.key


@dataclass(frozen=True, slots=True)
class View:
    """A consumer as its owner sees it: the record, and the state with a pending resume already counted."""

    id: str
    record: Record
    status: Status

    @property
    def state(self) -> str:
        pending = bool(self.record.resume) and self.record.resume != self.status.resumed
        return ACTIVE if pending else self.status.state

    @property
    def failures(self) -> int:
        pending = bool(self.record.resume) and self.record.resume != self.status.resumed
        return 0 if pending else self.status.failures


def check_url(url: str) -> str:
    """http or https, with a host; never followed through redirects (deliverer.py)."""
    parts = urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable():
        raise ProtocolError(f"url must be an http:// or https:// URL with a host, at most {MAX_URL} characters")
    return url


def check_filter(rooms: str, kinds: list[str], events: list[str]) -> Filter:
    if not rooms or len(rooms) > MAX_PATTERN or not rooms.isprintable():
        raise ProtocolError(f"rooms is a glob pattern of 1-{MAX_PATTERN} printable characters")
    if not kinds or set(kinds) - set(ROOM_KINDS):
        raise ProtocolError(f"kinds is a non-empty list of {', '.join(ROOM_KINDS)}")
    if not events or set(events) - set(EVENTS):
        raise ProtocolError(f"events is a non-empty list of {', '.join(EVENTS)}")
    return Filter(rooms, tuple(k for k in ROOM_KINDS if k in kinds), tuple(e for e in EVENTS if e in events))


class Consumers:
    def __init__(
        self, directory: Directory, store: Store, bus: Bus, limits: Limits, clock: Callable[[], float] = time.time
    ) -> None:
        self.registry = Registry(directory)
        self.directory = directory
        self.store = store
        self.bus = bus
        self.limits = limits
        self.clock = clock

    async def create(
        self,
        caller: Caller,
        url: str,
        rooms: str = "*",
        kinds: list[str] | None = None,
        events: list[str] | None = None,
        after: int | None = None,
        max_failures: int | None = None,
    ) -> tuple[str, Record]:
        """A new consumer; its record holds the secret, which the answer shows (the only answer that does)."""
        check_url(url)
        chosen = check_filter(
            rooms, list(DEFAULT_KINDS) if kinds is None else kinds, list(EVENTS) if events is None else events
        )
        if after is not None and not 0 <= after <= MAX_SEQ:
            raise ProtocolError(f"from must be between 0 and {MAX_SEQ}, or absent (now)")
        failures = self.limits.consumer_max_failures if max_failures is None else max_failures
        if not 1 <= failures <= MAX_FAILURES_CAP:
            raise ProtocolError(f"max_failures must be between 1 and {MAX_FAILURES_CAP}")
        if len(await self.registry.all()) >= self.limits.max_consumers:
            raise RoostError(
                f"{self.limits.max_consumers} consumers exist already (max_consumers): delete one first",
                Code.TOO_MANY_ROOMS,
            )
        consumer = secrets.token_hex(_ID_BYTES)
        record = Record(
            url=url,
            secret=secrets.token_urlsafe(32),
            rooms=chosen.rooms,
            kinds=chosen.kinds,
            events=chosen.events,
            start=0 if after is None else after,
            after=after,
            owner="" if caller.admin else caller.user,
            key=caller.key,
            by=caller.user,
            created_at=int(self.clock()),
            max_failures=failures,
        )
        await self.registry.ensure_room()
        if after is None:
            for room in await self.matching(record):
                position = await self.store.position(room)
                await self.registry.set_cursor(consumer, room, Cursor(position.head, position.epoch))
        await self.registry.put(consumer, record)
        await self._announce(consumer)
        return consumer, record

    async def matching(self, record: Record) -> list[str]:
        """The rooms ``record`` takes now: by name and kind, among every room (an administrator's) or the rooms
        its principal is a member of (a key's)."""
        chosen = Filter(record.rooms, record.kinds, record.events)
        names = await (self.directory.rooms_of(record.owner) if record.key else self.directory.all_rooms())
        out = []
        for room in names:
            if valid_room(room) and chosen.room_named(room):
                kind = kind_of(room, await self.directory.room_attrs(room, NS_META))
                if chosen.room(room, kind):
                    out.append(room)
        return out

    async def visible(self, caller: Caller) -> list[View]:
        records, statuses = await self.registry.all(), await self.registry.statuses()
        return [
            View(consumer, record, statuses.get(consumer) or Status())
            for consumer, record in sorted(records.items())
            if caller.admin or (record.key and record.owner == caller.user)
        ]

    async def get(self, caller: Caller, consumer: str) -> View:
        record = await self.registry.get(consumer)
        if record is None or not (caller.admin or (record.key and record.owner == caller.user)):
            raise NotFound(f"no consumer {consumer!r}", Code.UNKNOWN_ROOM)
        return View(consumer, record, await self.registry.status(consumer))

    async def cursors(self, view: View) -> dict[str, int]:
        return {room: cursor.seq for room, cursor in sorted((await self.registry.cursors(view.id)).items())}

    async def delete(self, caller: Caller, consumer: str) -> None:
        await self.get(caller, consumer)
        await self.registry.delete(consumer)
        await self._announce(consumer)

    async def resume(self, caller: Caller, consumer: str) -> View:
        """Active again with no failures counted, applied by the node delivering it (at once if it hears the
        notice, else at its next scan); a consumer that is not paused is unchanged."""
        view = await self.get(caller, consumer)
        record = _replace(view.record, resume=secrets.token_hex(_ID_BYTES))
        await self.registry.put(consumer, record)
        await self._announce(consumer)
        return View(consumer, record, view.status)

    async def rewind(self, caller: Caller, consumer: str, seq: int, room: str | None) -> View:
        """Deliver again (or skip to) everything after ``seq``, in ``room`` or in every room: the cursors are
        set by the node delivering the consumer, so this cannot race its own cursor writes."""
        view = await self.get(caller, consumer)
        if not 0 <= seq <= MAX_SEQ:
            raise ProtocolError(f"seq must be between 0 and {MAX_SEQ}")
        if room is not None and not valid_room(room):
            raise ProtocolError("room names are 1-128 characters of A-Z a-z 0-9 _ . : @ -")
        request = Rewind(secrets.token_hex(_ID_BYTES), seq, room)
        start = view.record.start if room is not None else seq  # rooms without a cursor yet start there too
        record = _replace(view.record, rewind=request, start=start)
        await self.registry.put(consumer, record)
        await self._announce(consumer)
        return View(consumer, record, view.status)

    async def _announce(self, consumer: str) -> None:
        try:
            await self.bus.publish(CHANNEL, consumer.encode())
        except RoostError as exc:  # the nodes' next scan finds the change instead
            log.warning("consumer %s: change not announced on the bus (%s)", consumer, exc.reason)


def _replace(record: Record, **changes: object) -> Record:
    return msgspec.structs.replace(record, **changes)
