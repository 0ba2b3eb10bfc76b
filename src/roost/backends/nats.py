"""NATS engine: JetStreamStore (Store + Directory) and NatsBus (core NATS).

Design:

* **One stream per room** (``ROOST_<prefix>_<token>``, subject ``<prefix>.room.<token>``). A
  stream's sequence is dense and assigned by the stream leader, so the room's seq *is* the stream
  seq: dense, and one order under concurrent senders on any number of nodes, with no client-side
  compare-and-set. The cost: each room is a stream (in a cluster, a Raft group); fine for thousands
  of rooms, and the reason a shared-stream layout would be needed beyond that.
* The **epoch** is the stream's creation time: a recreated stream can never pass for the old one.
* **Idempotency** has two layers: ``Nats-Msg-Id`` (``(room, sender, cmid)`` hashed) makes JetStream
  drop a retry inside ``duplicate_window``; after the ack, the result is also written to the KV bucket
  ``<prefix>_idem``, which answers retries after the window, forever. The one gap: a node that dies
  between the stream ack and the KV write, *and* a retry that comes after the window (default 1 h).
* Membership and the room list live in KV buckets; the bus is core NATS on ``<prefix>.live.<token>``.
* **Erasure** deletes the stream message by seq (JetStream's delete overwrites it in the block file, not only
  its index) after writing its tombstone (cmid, sender, ts and the replacement kind and body) under the
  room's key of the KV bucket ``<prefix>_erased``; reads fill the hole from there. That bucket is read only
  for a stream with a hole or a first seq above 1 (``_erased``).
* **Leases** are keys of the KV bucket ``<prefix>_leases``, taken and renewed by compare-and-set on the key's
  revision (``kv.create``, ``kv.update(last=...)``), so the stream leader orders racing nodes. nats-server 2.9
  keeps no per-key TTL, so the value holds the expiry time: the holder's wall clock plus the ttl, judged by
  the claimant's wall clock. The nodes' clocks decide expiry here, so their skew must stay far below a ttl.

Room names are not valid NATS tokens (``.``), so rooms are addressed by a hash token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from ..ports import Appended, Redaction
from ..protocol.errors import Conflict, NotFound, Unavailable, UsageError
from ..protocol.types import Draft, Message, Page, Position
from .boundary import engine_boundary
from .idempotency import body_digest
from .options import url_options

__all__ = ["JetStreamStore", "NatsBus", "parse_nats_url"]

log = logging.getLogger(__name__)


class _Lease(msgspec.Struct, frozen=True, array_like=True):
    """A lease key's value: who holds it, its token, and when it ends (ms since the epoch, the writer's clock)."""

    holder: str
    token: int
    expires_ms: int


_lease: Final = msgspec.json.Decoder(_Lease)


class _Stored(msgspec.Struct, frozen=True, array_like=True):
    """What the stream holds: a message without its room and seq (the stream knows both)."""

    cmid: str
    sender: str
    body: str
    ts: int
    kind: str


_stored: Final = msgspec.json.Decoder(_Stored)
_tombstones: Final = msgspec.json.Decoder(dict[int, _Stored])
"""A room's key in ``<prefix>_erased``: seq -> what an erased message is served as (its tombstone)."""
_encode: Final = msgspec.json.Encoder().encode
SYNC_ALWAYS_SINCE: Final = (2, 10)
"""The first nats-server that takes ``jetstream { sync_interval: always }`` (fsync before each ack)."""
_CACHE_MESSAGES: Final = 50_000
"""Recently read messages a node keeps (about 20 MB of 200-byte messages): a reconnect storm's working set."""


def parse_nats_url(url: str) -> tuple[list[str], dict[str, str]]:
    """``nats://h1:4222,h2:4222?prefix=x&replicas=3&keep=N&sync=always`` -> server URLs and roost options."""
    parts = urlsplit(url)
    options = url_options(url, "nats", ("prefix", "replicas", "keep", "sync"))
    servers = [f"nats://{host}" for host in parts.netloc.split(",") if host]
    return servers, options


async def connect_nats(servers: list[str], on_reset: Callable[[], None] | None = None) -> NatsClient:
    errors = 0  # since the last (re)connect: the first is logged, the rest are counted

    async def reconnected() -> None:
        nonlocal errors
        log.warning("nats reconnected (%d errors while disconnected)", errors)
        errors = 0
        if on_reset is not None:
            on_reset()

    async def error(exc: Exception) -> None:
        nonlocal errors
        errors += 1
        if errors == 1:
            log.warning("nats error: %s (further errors are counted until it reconnects)", exc)
        if on_reset is not None and "slow consumer" in str(exc).lower():
            on_reset()

    # nats-py retries an unreachable server forever when reconnects are unlimited, even on the first
    # connect: check that one answers at all, so a start without NATS is an error the node can retry.
    await _one_answers(servers)
    try:
        return await nats.connect(
            servers=servers,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            connect_timeout=5,
            # A connection that silently stops answering (a partition) is found within ~6 s, not after
            # nats-py's default of 2 x 120 s; readiness (roost.readiness) notices sooner still.
            ping_interval=2,
            max_outstanding_pings=2,
            reconnected_cb=reconnected,
            error_cb=error,
            pending_size=64 * 1024 * 1024,
        )
    except (NatsError, OSError) as exc:
        raise Unavailable(f"nats: {exc}") from exc


async def _one_answers(servers: list[str], within_s: float = 2.0) -> None:
    causes = []
    for server in servers:
        parts = urlsplit(server)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 4222), within_s)
        except (OSError, TimeoutError) as exc:
            causes.append(f"{parts.hostname}:{parts.port or 4222}: {exc or type(exc).__name__}")
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise Unavailable(f"nats: no server answers ({'; '.join(causes)})")


@contextlib.asynccontextmanager
async def _translate() -> AsyncIterator[None]:
    async with engine_boundary("nats"):
        yield


_NO_SUCH_SEQ: Final = 10043
"""JetStream's error code for a delete of a sequence that is not (or no longer) in the stream."""


def _gone(cause: BaseException | None) -> bool:
    """A delete that found nothing to delete: another erasure of the same message came first."""
    return isinstance(cause, NotFoundError) or getattr(cause, "err_code", None) == _NO_SUCH_SEQ


def _message_of(room: str, seq: int, stored: _Stored) -> Message:
    return Message(room, seq, stored.cmid, stored.sender, stored.body, stored.ts, stored.kind)


def token(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


class JetStreamStore:
    def __init__(
        self,
        nc: NatsClient,
        *,
        prefix: str = "roost",
        replicas: int = 1,
        keep: int = 0,
        duplicate_window_s: float = 3600.0,
        sync_always: bool = False,
    ) -> None:
        self.nc = nc
        self.sync_always = sync_always
        """The operator says every server runs ``jetstream { sync_interval: always }`` (``?sync=always``)."""
        self.js: JetStreamContext = nc.jetstream(timeout=10)
        self.prefix = prefix
        self.replicas = replicas
        self.keep = keep
        self.duplicate_window_s = duplicate_window_s
        self._bucket_names: dict[int, str] = {}
        self._cache: OrderedDict[tuple[str, str, int], Message] = OrderedDict()
        self._inflight: dict[tuple[str, str, int], asyncio.Future[Message]] = {}
        self._rooms_kv: KeyValue | None = None
        self._members_kv: KeyValue | None = None
        self._idem_kv: KeyValue | None = None
        self._attrs_kv: KeyValue | None = None
        self._leases_kv: KeyValue | None = None
        self._erased_kv: KeyValue | None = None
        self._known: set[str] = set()
        self._closed = False

    async def open(self) -> JetStreamStore:
        version = self.nc.connected_server_version
        if self.sync_always and (version.major, version.minor) < SYNC_ALWAYS_SINCE:
            raise UsageError(
                f"?sync=always: nats-server {version} cannot fsync every write (`jetstream {{ sync_interval:"
                f" always }}` needs {'.'.join(map(str, SYNC_ALWAYS_SINCE))} or newer; docs/backends.md)"
            )
        async with _translate():  # concurrently: each bucket is a stream (a Raft group with replicas > 1)
            (
                self._rooms_kv,
                self._members_kv,
                self._idem_kv,
                self._attrs_kv,
                self._leases_kv,
                self._erased_kv,
            ) = await asyncio.gather(
                self._bucket("rooms"),
                self._bucket("members"),
                self._bucket("idem"),
                self._bucket("attrs"),
                self._bucket("leases"),
                self._bucket("erased"),
            )
        return self

    async def _bucket(self, name: str) -> KeyValue:
        bucket = f"{self.prefix}_{name}".replace(".", "_")
        try:
            kv = await self.js.key_value(bucket)
        except (NotFoundError, NatsError):
            kv = await self.js.create_key_value(bucket=bucket, replicas=self.replicas, storage=StorageType.FILE)
        self._bucket_names[id(kv)] = bucket
        return kv

    async def durability_warnings(self) -> list[str]:
        """Streams with fewer replicas than the cluster can give lose acked messages with one server's disk;
        a server that fsyncs on an interval loses them to its own power loss.

        The cluster's size is what the client knows of it: the servers it was given and those the
        cluster announced (nats-py's server pool). The server's ``sync_interval`` is not visible to a
        client: ``?sync=always`` is the operator saying it is set (checked against the server's version)."""
        servers = len({(u.hostname, u.port) for u in self.nc.servers})
        wanted = min(servers, 3)
        warnings = []
        if self.replicas < wanted:
            warnings.append(
                f"nats: streams have {self.replicas} replica(s) on a cluster of {servers} servers: losing one"
                f" server's disk loses acked messages; add ?replicas={wanted} to the store URL (docs/backends.md)"
            )
        if self.replicas < 3 and not self.sync_always:
            warnings.append(
                "nats: the JetStream file store fsyncs on an interval (2 min by default): a power loss or OS crash"
                " of the server loses acked messages; run nats-server 2.10+ with `jetstream { sync_interval:"
                " always }` and add ?sync=always to the store URL, or use ?replicas=3 on a cluster"
                " (docs/backends.md)"
            )
        return warnings

    async def aclose(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            await self.nc.drain()

    def _stream(self, room: str) -> str:
        return f"ROOST_{self.prefix}_{token(room)}".replace(".", "_")

    def _subject(self, room: str) -> str:
        return f"{self.prefix}.room.{token(room)}"

    @property
    def rooms_kv(self) -> KeyValue:
        assert self._rooms_kv is not None
        return self._rooms_kv

    @property
    def members_kv(self) -> KeyValue:
        assert self._members_kv is not None
        return self._members_kv

    @property
    def attrs_kv(self) -> KeyValue:
        assert self._attrs_kv is not None
        return self._attrs_kv

    @property
    def idem_kv(self) -> KeyValue:
        assert self._idem_kv is not None
        return self._idem_kv

    @property
    def leases_kv(self) -> KeyValue:
        assert self._leases_kv is not None
        return self._leases_kv

    @property
    def erased_kv(self) -> KeyValue:
        assert self._erased_kv is not None
        return self._erased_kv

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        if self._closed:
            raise Unavailable("store is closed")
        room = draft.room
        await self._require(room)
        key = f"{token(room)}.{token(draft.sender + chr(10) + draft.cmid)}"
        digest = body_digest(draft.body, draft.kind, 16).hex()
        async with _translate():
            earlier = await self._idem_get(key)
            if earlier is not None:
                return self._duplicate(draft, earlier, digest)
            ts = time.time_ns() // 1_000_000
            payload = _encode(_Stored(draft.cmid, draft.sender, draft.body, ts, draft.kind))
            ack = await self.js.publish(
                self._subject(room), payload, stream=self._stream(room), headers={"Nats-Msg-Id": key}
            )
            if ack.duplicate:
                stored = await self._stored_or_erased(room, ack.seq)
                if body_digest(stored.body, stored.kind, 16).hex() != digest:
                    raise Conflict(f"client message id {draft.cmid!r} was used for another message")
                await self.idem_kv.put(key, f"{ack.seq}:{stored.ts}:{digest}".encode())
                return Appended(stored, duplicate=True)
            await self.idem_kv.put(key, f"{ack.seq}:{ts}:{digest}".encode())
        message = Message(room, ack.seq, draft.cmid, draft.sender, draft.body, ts, draft.kind)
        return Appended(message, duplicate=False)

    async def _idem_get(self, key: str) -> str | None:
        try:
            entry = await self.idem_kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    @staticmethod
    def _duplicate(draft: Draft, record: str, digest: str) -> Appended:
        seq, ts, stored_digest = record.split(":", 2)
        if stored_digest != digest:
            raise Conflict(f"client message id {draft.cmid!r} was used for another message")
        message = Message(draft.room, int(seq), draft.cmid, draft.sender, draft.body, int(ts), draft.kind)
        return Appended(message, duplicate=True)

    async def _get(self, room: str, epoch: str, seq: int) -> Message:
        """One stored message, through the node's cache of recent reads.

        JetStream answers one message per request, so a catch-up of N messages is N requests. When
        many clients of one room come back at once they read the same range: the cache (and the
        in-flight map, so concurrent readers of one seq share one request) makes that one request per
        message instead of one per message per client. A stored message changes only by an erasure, which
        every read overrides from the ``<prefix>_erased`` record (``_at``), so a cached copy is never served
        once erased; the key holds the stream's epoch, so a room deleted and created again never serves the
        old one."""
        key = (room, epoch, seq)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            message = await self._fetch_one(room, seq)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: a failure nobody else waited for is not "unretrieved"
            raise
        finally:
            del self._inflight[key]
        future.set_result(message)
        self._cache[key] = message
        if len(self._cache) > _CACHE_MESSAGES:
            self._cache.popitem(last=False)
        return message

    async def _fetch_one(self, room: str, seq: int) -> Message:
        raw = await self.js.get_msg(self._stream(room), seq)
        assert raw.data is not None
        stored = _stored.decode(raw.data)
        return Message(room, seq, stored.cmid, stored.sender, stored.body, stored.ts, stored.kind)

    async def _stored_or_erased(self, room: str, seq: int) -> Message:
        """A retry JetStream's duplicate window caught: the message, or its tombstone once erased."""
        try:
            return await self._fetch_one(room, seq)
        except NotFoundError:
            tombstone = (await self._erased_record(room))[0].get(seq)
            if tombstone is None:
                raise
            return _message_of(room, seq, tombstone)

    async def read(self, room: str, after: int, limit: int) -> Page:
        position, erased = await self._snapshot(room)
        start = max(after + 1, position.first)
        stop = min(position.head, start + limit - 1)  # from the first kept seq when ``after`` is below it
        return Page(await self._get_range(room, position.epoch, start, stop, erased), position)

    async def read_before(self, room: str, before: int, limit: int) -> Page:
        position, erased = await self._snapshot(room)
        stop = min(before - 1, position.head)
        start = max(position.first, stop - limit + 1)
        return Page(await self._get_range(room, position.epoch, start, stop, erased), position)

    async def _get_range(
        self, room: str, epoch: str, start: int, stop: int, erased: dict[int, _Stored]
    ) -> list[Message]:
        if stop < start:
            return []
        async with _translate():
            results = await asyncio.gather(
                *(self._at(room, epoch, seq, erased) for seq in range(start, stop + 1)), return_exceptions=True
            )
        messages: list[Message] = []
        for result in results:
            if isinstance(result, NotFoundError):
                if messages:
                    break  # trimmed while we read: what we have is contiguous
                continue
            if isinstance(result, BaseException):
                raise Unavailable(f"nats: {result!r}") from result
            messages.append(result)
        return messages

    async def _at(self, room: str, epoch: str, seq: int, erased: dict[int, _Stored]) -> Message:
        """Message ``seq``: its tombstone if erased (also over another node's cached copy), else the stream's."""
        tombstone = erased.get(seq)
        if tombstone is not None:
            return _message_of(room, seq, tombstone)
        return await self._get(room, epoch, seq)

    async def position(self, room: str) -> Position:
        return (await self._snapshot(room))[0]

    async def _snapshot(self, room: str) -> tuple[Position, dict[int, _Stored]]:
        """The room's position and its erased messages. ``first`` reaches down over erased seqs: deleting the
        stream's first message moves the stream's first seq, but the room still holds it, as a tombstone."""
        try:
            async with _translate():
                info = await self.js.stream_info(self._stream(room))
        except Unavailable as exc:
            if isinstance(exc.__cause__, NotFoundError):
                raise NotFound(f"no room {room!r}") from None
            raise
        state = info.state
        epoch = info.created.strftime("%Y%m%dT%H%M%S.%f") if info.created else "0"
        first = max(1, state.first_seq) if state.messages else state.last_seq + 1
        erased: dict[int, _Stored] = {}
        if state.num_deleted or first > 1:  # a hole, or a first seq that may be an erased one's successor
            erased = (await self._erased_record(room))[0]
            while first - 1 in erased:
                first -= 1
        return Position(epoch=epoch, head=state.last_seq, first=first), erased

    async def _erased_record(self, room: str) -> tuple[dict[int, _Stored], int]:
        """The room's tombstones and the revision of their KV entry (0: none yet)."""
        async with _translate():
            try:
                entry = await self.erased_kv.get(token(room))
            except KeyNotFoundError:
                return {}, 0
        return (_tombstones.decode(entry.value) if entry.value else {}), entry.revision or 0

    async def _put_erased(self, room: str, change: Callable[[dict[int, _Stored]], bool]) -> None:
        """Change the room's tombstones by compare-and-set (``change`` says whether it changed anything)."""
        while True:
            record, revision = await self._erased_record(room)
            if not change(record):
                return
            value = _encode(record)
            try:
                async with _translate():
                    if revision:
                        await self.erased_kv.update(token(room), value, last=revision)
                    else:
                        await self.erased_kv.create(token(room), value)
                return
            except Unavailable as exc:
                if not isinstance(exc.__cause__, KeyWrongLastSequenceError):
                    raise  # another node changed it meanwhile: read it again

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        position, erased = await self._snapshot(room)
        lo, hi, best = position.first, position.head, position.first - 1
        async with _translate():
            while lo <= hi:
                mid = (lo + hi) // 2
                message = await self._at(room, position.epoch, mid, erased)
                if message.ts < ts_ms:
                    best, lo = mid, mid + 1
                else:
                    hi = mid - 1
        return max(0, best)

    async def trim(self, room: str, keep_last: int) -> int:
        position = await self.position(room)
        return await self._purge(room, position, max(1, position.head - keep_last + 1))

    async def trim_before(self, room: str, seq: int) -> int:
        position = await self.position(room)
        return await self._purge(room, position, min(max(1, seq), position.head + 1))

    async def _purge(self, room: str, position: Position, first: int) -> int:
        """Purge the stream below ``first``, then drop the tombstones below it (in that order: a failure between
        leaves tombstones of purged seqs, which reads then serve as tombstones still, never a hole)."""
        if first <= position.first:
            return 0
        async with _translate():
            await self.js.purge_stream(self._stream(room), seq=first)

        def below(record: dict[int, _Stored]) -> bool:
            gone = [seq for seq in record if seq < first]
            for seq in gone:
                del record[seq]
            return bool(gone)

        await self._put_erased(room, below)
        return first - position.first

    async def erase(self, room: str, redactions: Sequence[Redaction]) -> int:
        """Tombstones first, then the deletes (a failure between leaves a stored message that reads already
        serve as its tombstone; erasing again deletes it). JetStream's delete overwrites the message in its
        block file (``no_erase`` false), on every replica (R-ERASE-5)."""
        position, erased = await self._snapshot(room)
        new: dict[int, _Stored] = {}
        for r in redactions:
            if not position.first <= r.seq <= position.head or r.seq in erased or r.seq in new:
                continue
            try:
                async with _translate():
                    stored = await self._fetch_one(room, r.seq)
            except Unavailable as exc:
                if isinstance(exc.__cause__, NotFoundError):
                    continue  # trimmed meanwhile
                raise
            new[r.seq] = _Stored(stored.cmid, stored.sender, r.body, stored.ts, r.kind)
        if not new:
            return 0

        def add(record: dict[int, _Stored]) -> bool:
            record.update(new)
            return True

        await self._put_erased(room, add)
        for seq in new:
            try:
                async with _translate():
                    await self.js.delete_msg(self._stream(room), seq)
            except Unavailable as exc:
                if not _gone(exc.__cause__):
                    raise
            self._cache.pop((room, position.epoch, seq), None)
        return len(new)

    # ---- Directory --------------------------------------------------------------------------

    async def _require(self, room: str) -> None:
        if room in self._known:
            return
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        """The room's key in the rooms bucket holds its name and its ``meta`` (JSON after a newline):
        one compare-and-set creates both, so no reader sees the room without its meta."""
        record = room.encode() + (b"\n" + msgspec.json.encode(dict(meta)) if meta else b"")
        async with _translate():
            try:
                await self.rooms_kv.create(token(room), record)
            except KeyWrongLastSequenceError:
                return False
            config = StreamConfig(
                name=self._stream(room),
                subjects=[self._subject(room)],
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                max_msgs=self.keep if self.keep > 0 else -1,
                duplicate_window=self.duplicate_window_s,
            )
            await self.js.add_stream(config)
            await self._put_member(room, owner)
        self._known.add(room)
        return True

    async def room_exists(self, room: str) -> bool:
        if room in self._known:
            return True
        async with _translate():
            try:
                await self.rooms_kv.get(token(room))
            except KeyNotFoundError:
                return False
        self._known.add(room)
        return True

    async def _put_member(self, room: str, user: str) -> None:
        await self.members_kv.put(f"m.{token(room)}.{token(user)}", user.encode())
        await self.members_kv.put(f"u.{token(user)}.{token(room)}", room.encode())

    async def is_member(self, room: str, user: str) -> bool:
        async with _translate():
            try:
                await self.members_kv.get(f"m.{token(room)}.{token(user)}")
            except KeyNotFoundError:
                return False
        return True

    async def add_member(self, room: str, user: str) -> bool:
        await self._require(room)
        if await self.is_member(room, user):
            return False
        async with _translate():
            await self._put_member(room, user)
        return True

    async def remove_member(self, room: str, user: str) -> bool:
        await self._require(room)
        if not await self.is_member(room, user):
            return False
        async with _translate():
            await self.members_kv.delete(f"m.{token(room)}.{token(user)}")
            await self.members_kv.delete(f"u.{token(user)}.{token(room)}")
        return True

    async def rooms_of(self, user: str) -> list[str]:
        return await self._values(self.members_kv, f"u.{token(user)}.*")

    async def all_rooms(self) -> list[str]:
        return sorted(value.partition("\n")[0] for value in await self._values(self.rooms_kv, ">"))

    async def members(self, room: str) -> list[str]:
        return await self._values(self.members_kv, f"m.{token(room)}.*")

    # ---- attributes -------------------------------------------------------------------------
    # ``meta`` rides in the rooms bucket (see create_room); the others are keys of the attrs bucket,
    # ``<room>.<ns>.<key>`` = "<key>\n<value>" (tokens in the key, the names in the value).

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        if ns == "meta":
            async with _translate():
                try:
                    entry = await self.rooms_kv.get(token(room))
                except KeyNotFoundError:
                    return {}
            _, _, raw = (entry.value or b"").partition(b"\n")
            return msgspec.json.decode(raw, type=dict[str, str]) if raw else {}
        out: dict[str, str] = {}
        for value in await self._values(self.attrs_kv, f"{token(room)}.{token(ns)}.*"):
            key, _, val = value.partition("\n")
            out[key] = val
        return out

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")
        await self._require(room)
        name = f"{token(room)}.{token(ns)}.{token(key)}"
        async with _translate():
            if value is None:
                await self.attrs_kv.delete(name)
            else:
                await self.attrs_kv.put(name, f"{key}\n{value}".encode())

    # ---- read positions ---------------------------------------------------------------------
    # In the members bucket: ``r.<room>.<user>`` = "<seq> <user>" (the truth, for ``readers``) and
    # ``p.<user>.<room>`` = "<seq> <room>" (for ``read_positions``), both raised with compare-and-set.

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        async with _translate():
            value = await self._raise(f"r.{token(room)}.{token(user)}", seq, user)
            await self._raise(f"p.{token(user)}.{token(room)}", value, room)
        return value

    async def _raise(self, key: str, seq: int, label: str) -> int:
        """Raise the position at ``key`` to ``seq`` (never lower it); return the position."""
        kv = self.members_kv
        while True:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                try:
                    await kv.create(key, f"{seq} {label}".encode())
                    return seq
                except KeyWrongLastSequenceError:
                    continue  # created meanwhile: compare with it
            current = int((entry.value or b"0").split()[0])
            if seq <= current:
                return current
            try:
                await kv.update(key, f"{seq} {label}".encode(), last=entry.revision)
                return seq
            except KeyWrongLastSequenceError:
                continue  # raised meanwhile: compare again

    async def read_positions(self, user: str) -> dict[str, int]:
        return {label: seq for seq, label in await self._positions(f"p.{token(user)}.*")}

    async def readers(self, room: str) -> dict[str, int]:
        return {label: seq for seq, label in await self._positions(f"r.{token(room)}.*")}

    async def _positions(self, pattern: str) -> list[tuple[int, str]]:
        out = []
        for value in await self._values(self.members_kv, pattern):
            seq, _, label = value.partition(" ")
            out.append((int(seq), label))
        return out

    # ---- leases -----------------------------------------------------------------------------
    # ``<prefix>_leases``: key = the name's token, value = ``_Lease``. A key is never deleted (a release
    # expires it), so its revision only grows and a grant's token can be the revision it replaced, plus one:
    # greater than the token of every earlier holder, each of which is at most its own grant's revision.

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        if self._closed:
            raise Unavailable("store is closed")
        key, kv = token(name), self.leases_kv
        async with _translate():
            while True:
                try:
                    entry = await kv.get(key)
                except KeyNotFoundError:
                    entry = None
                now = time.time_ns() // 1_000_000
                if entry is None:
                    try:
                        await kv.create(key, _encode(_Lease(holder, 1, now + ttl_ms)))
                    except KeyWrongLastSequenceError:
                        continue  # another claimant was first: look at what it wrote
                    return 1
                held, revision = _lease.decode(entry.value or b'["",0,0]'), entry.revision or 0
                if held.expires_ms > now and held.holder != holder:
                    return None
                fence = held.token if held.expires_ms > now else revision + 1
                try:
                    await kv.update(key, _encode(_Lease(holder, fence, now + ttl_ms)), last=revision)
                except KeyWrongLastSequenceError:
                    continue  # changed since we read it: decide again on what is there now
                return fence

    async def release(self, name: str, holder: str) -> None:
        if self._closed:
            raise Unavailable("store is closed")
        key, kv = token(name), self.leases_kv
        async with _translate():
            while True:
                try:
                    entry = await kv.get(key)
                except KeyNotFoundError:
                    return
                held = _lease.decode(entry.value or b'["",0,0]')
                if held.holder != holder or held.expires_ms == 0:
                    return
                try:
                    await kv.update(key, _encode(_Lease(holder, held.token, 0)), last=entry.revision)
                except KeyWrongLastSequenceError:
                    continue
                return

    async def _values(self, kv: KeyValue, pattern: str) -> list[str]:
        """The values of the live keys matching ``pattern`` (a subject wildcard such as ``u.<user>.*``).

        Read-your-writes, also on a cluster: the keys come from the stream leader's subject index
        (stream info with a subject filter) and each value from a leader ``get``. A KV watch is not
        enough there: its consumer may read a replica that has not applied the latest write yet, so a
        ban, a join or a read position just stored could be missing from the list (seen on the 3-node
        test cluster). nats-py's ``keys(filters=...)`` matches filters as plain substrings on the
        client, so it cannot list a wildcard either."""
        bucket = self._bucket_names[id(kv)]
        prefix = f"$KV.{bucket}."
        async with _translate(), asyncio.timeout(10):
            info = await self.js.stream_info(f"KV_{bucket}", subjects_filter=prefix + pattern)
            keys = [subject.removeprefix(prefix) for subject in (info.state.subjects or {})]
            entries = await asyncio.gather(*(kv.get(key) for key in keys), return_exceptions=True)
        out: list[str] = []
        for entry in entries:
            if isinstance(entry, KeyNotFoundError):
                continue  # deleted or purged: its marker still counts as a subject
            if isinstance(entry, BaseException):
                raise Unavailable(f"nats: {entry!r}") from entry
            if entry.value:
                out.append(entry.value.decode())
        return sorted(out)


class _NatsSubscription:
    def __init__(self, bus: NatsBus, subject: str, sink: Callable[[bytes], None]) -> None:
        self._bus = bus
        self._subject = subject
        self._sink = sink

    async def aclose(self) -> None:
        await self._bus._unsubscribe(self._subject, self._sink)


_PROBE: Final = "Roost-Probe"
"""The header of an interest probe (``NatsBus._confirm_interest``): every subscriber drops such a message."""


class NatsBus:
    """Core NATS: at-most-once fan-out; a reconnect or a slow-consumer drop is reported as a reset.

    On a cluster, ``subscribe`` returns only once every other server routes the subject to us: the flush
    confirms the SUB on our own server, which tells the others over its routes a moment later, and a
    publish another node made there in between would be lost. So a probe (a message with the
    ``Roost-Probe`` header, dropped by every subscriber) is published on the subject from a connection
    to each other server (a *witness*, opened on first need) until it comes back.
    """

    PROBE_EVERY_S: Final = 0.05
    CONFIRM_WITHIN_S: Final = 5.0

    def __init__(self, nc: NatsClient, *, prefix: str = "roost") -> None:
        self.nc = nc
        self.prefix = prefix
        self._sinks: dict[str, list[Callable[[bytes], None]]] = {}
        self._subs: dict[str, Any] = {}
        self._reset_callbacks: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._witnesses: dict[str, NatsClient] = {}
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._closed = False

    def subject(self, room: str) -> str:
        return f"{self.prefix}.live.{token(room)}"

    def reset(self) -> None:
        """Report a reset once the server has our subscriptions again (nats-py resends them on reconnect)."""
        task = asyncio.get_running_loop().create_task(self._reset())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reset(self) -> None:
        try:
            await self.nc.flush(timeout=5)  # the PONG comes after the server processed the resent SUBs
        except Exception as exc:
            log.warning("nats flush before reset failed: %s", exc)
        for callback in list(self._reset_callbacks):
            callback()

    async def publish(self, room: str, payload: bytes) -> None:
        async with _translate():
            await self.nc.publish(self.subject(room), payload)

    async def subscribe(self, room: str, sink: Callable[[bytes], None]) -> _NatsSubscription:
        subject = self.subject(room)
        sinks = self._sinks.setdefault(subject, [])
        sinks.append(sink)
        if len(sinks) == 1:

            async def deliver(msg: Msg) -> None:
                if msg.headers and _PROBE in msg.headers:
                    probe = self._probes.pop(msg.headers[_PROBE], None)
                    if probe is not None and not probe.done():
                        probe.set_result(None)
                    return
                for each in tuple(self._sinks.get(subject, ())):
                    each(msg.data)

            try:
                async with _translate():
                    self._subs[subject] = await self.nc.subscribe(subject, cb=deliver, pending_msgs_limit=65536)
                    await self.nc.flush(timeout=5)  # the server has the SUB once the PONG is back
                    await self._confirm_interest(subject)
            except BaseException:
                sinks.remove(sink)
                if not sinks:
                    del self._sinks[subject]
                raise
        return _NatsSubscription(self, subject, sink)

    async def _unsubscribe(self, subject: str, sink: Callable[[bytes], None]) -> None:
        sinks = self._sinks.get(subject)
        if sinks is None or sink not in sinks:
            return
        sinks.remove(sink)
        if not sinks:
            del self._sinks[subject]
            sub = self._subs.pop(subject, None)
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _confirm_interest(self, subject: str) -> None:
        """Return once every server of the cluster, our own included, delivers ``subject`` to us (see the
        class). Our own too: even a single server answered the PONG after our SUB and still dropped a
        publish made from another connection right after it, about 1 in 500 (a raw nats-py loop showed it;
        once one probe has come through, the next publishes all arrive)."""
        servers = {f"{u.scheme}://{u.netloc}" for u in self.nc.servers}
        await asyncio.gather(*(self._probe_via(server, subject) for server in sorted(servers)))

    async def _probe_via(self, server: str, subject: str) -> None:
        witness = await self._witness(server)
        if witness is None:
            return  # that server is down: it learns every subscription when it rejoins, before it serves
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.CONFIRM_WITHIN_S
        key = secrets.token_hex(8)
        probe = self._probes[key] = loop.create_future()
        try:
            while True:
                await witness.publish(subject, b"", headers={_PROBE: key})
                try:
                    await asyncio.wait_for(asyncio.shield(probe), self.PROBE_EVERY_S)
                    return
                except TimeoutError:
                    if loop.time() > deadline:
                        raise Unavailable(f"nats: {server} did not route {subject} to us in time") from None
        finally:
            self._probes.pop(key, None)

    async def _witness(self, server: str) -> NatsClient | None:
        witness = self._witnesses.get(server)
        if witness is not None and witness.is_connected:
            return witness
        if witness is not None:
            self._witnesses.pop(server, None)
            with contextlib.suppress(Exception):
                await witness.close()
        try:
            witness = await nats.connect(servers=[server], allow_reconnect=False, connect_timeout=2)
        except (NatsError, OSError) as exc:
            log.debug("nats: no witness connection to %s: %s", server, exc)
            return None
        if self._closed:
            await witness.close()
            raise Unavailable("bus is closed")
        self._witnesses[server] = witness
        return witness

    def on_reset(self, callback: Callable[[], None]) -> None:
        self._reset_callbacks.append(callback)

    async def aclose(self) -> None:
        self._closed = True
        for witness in list(self._witnesses.values()):
            with contextlib.suppress(Exception):
                await witness.close()
        self._witnesses.clear()
        self._sinks.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.nc.drain()
