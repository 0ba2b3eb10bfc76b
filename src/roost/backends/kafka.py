"""KafkaStore: Store + Directory on one Kafka topic (aiokafka). Pair it with a Redis or NATS bus.

Design (docs/kafka.md has the failure cases and what was tested against which broker):

* **One topic, rooms hashed to partitions.** Every record of a room (its creation, membership changes,
  messages, join/leave events, retention trims, read positions) is produced with the room as key to partition
  ``murmur2(room) % partitions``, the Java client's default partitioner. Kafka keeps one order per
  partition, so every record of a room has one order that every reader sees.
* **Every node consumes every partition, in order, from offset 0** (no consumer group, so no rebalance)
  and applies each record with one deterministic function of the log: a room's first ``create`` wins,
  a message whose ``(room, sender, cmid)`` was seen before is a duplicate and skipped, a new one gets
  ``head + 1``. The per-room seq is therefore the same on every node and after every restart: it is a
  function of partition order, not of which node produced the record. The directory (rooms, members)
  is replayed the same way.
* **In memory per room:** epoch, first, head, the offset and timestamp of every kept seq (two int64
  arrays), the idempotency keys of every message ever stored (``(sender, cmid) -> seq, ts, digest``,
  kept after retention trims), the members and their read positions. History is a seek + fetch of
  exactly those offsets (``_Readers``), never a scan of the topic.
* **Append** produces with ``acks=all`` and a per-node token in a header, waits for the broker's ack,
  then waits until this node's own consumer has applied that record, which yields the seq (or
  "duplicate", or "conflict"). Two nodes racing the same cmid both produce; the first record in the
  partition wins and the other caller gets that seq with ``duplicate=True``.
* **Reads are linearizable:** ``position``/``read``/directory misses first ask the broker for the
  partitions' end offsets (one coalesced ListOffsets request for all concurrent callers) and wait until
  the consumer has applied up to them, so a node never answers older than an ack another node gave.
* A log that lost records it had acknowledged or shown (the consumer's offset out of range, an end
  offset below what was read, an acked offset holding another record, or ``_verify`` finding the last
  applied record changed), or that lost its beginning (retention), is refused loudly: the store then
  answers every call with ``Unavailable`` (fail-stop; a restart replays what the broker still has).

URL: ``kafka://h1:9092,h2:9092/TOPIC?partitions=8&replicas=3&fetch_wait_ms=5&verify_s=1``. The topic
(default: the ``prefix`` option, else ``roost``) is created on first use with infinite retention and
``cleanup.policy=delete``; its partition count must never change.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import heapq
import itertools
import logging
import secrets
import time
from array import array
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.partitioner import murmur2

from ..ports import Appended
from ..protocol.errors import Conflict, NotFound, Unavailable, UsageError
from ..protocol.types import Draft, Message, Page, Position
from .boundary import engine_boundary
from .idempotency import body_digest
from .options import url_options

__all__ = ["KafkaStore", "parse_kafka_url"]

log = logging.getLogger(__name__)

# ---- records (the topic's value format; JSON arrays, the first element is the tag) ---------------


class _Create(msgspec.Struct, frozen=True, array_like=True, tag="c"):
    room: str
    owner: str
    epoch: str
    ts: int
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    """The room's ``meta`` attributes (absent in records written before rooms had kinds)."""


class _Member(msgspec.Struct, frozen=True, array_like=True, tag="m"):
    room: str
    user: str
    add: bool


class _Msg(msgspec.Struct, frozen=True, array_like=True, tag="s"):
    room: str
    sender: str
    cmid: str
    body: str
    ts: int
    kind: str


class _Attr(msgspec.Struct, frozen=True, array_like=True, tag="a"):
    """Set (or, with ``value`` None, delete) one room attribute."""

    room: str
    ns: str
    key: str
    value: str | None


class _Trim(msgspec.Struct, frozen=True, array_like=True, tag="t"):
    room: str
    keep: int


class _Read(msgspec.Struct, frozen=True, array_like=True, tag="r"):
    room: str
    user: str
    seq: int


_Record = _Create | _Member | _Msg | _Trim | _Read | _Attr
_decode: Final = msgspec.json.Decoder(_Record).decode
_encode: Final = msgspec.json.Encoder().encode
_TOKEN_HEADER: Final = "roost-t"


def parse_kafka_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``kafka://h1:9092,h2:9092/TOPIC?opt=v`` -> bootstrap servers, topic, options.

    The topic defaults to the ``prefix`` option, else ``roost``.
    """
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise UsageError(f"not a kafka:// URL with brokers: {url!r}")
    options = url_options(url, "kafka", ("prefix", "partitions", "replicas", "fetch_wait_ms", "verify_s", "readers"))
    topic = unquote(parts.path.strip("/")) or options.get("prefix", "roost")
    return parts.netloc, topic, options


def _value_digest(value: bytes | None) -> bytes:
    return hashlib.blake2b(value or b"", digest_size=8).digest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _stop_quietly(client: Any) -> None:
    """Stop an aiokafka client whose connection may be dead; its fetcher can leak a CancelledError."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        log.debug("stopping %r: %r", client, exc)


@contextlib.asynccontextmanager
async def _translate() -> AsyncIterator[None]:
    async with engine_boundary("kafka"):
        yield


@dataclass(slots=True)
class _Room:
    epoch: str
    partition: int
    first: int = 1
    head: int = 0
    offsets: array[int] = field(default_factory=lambda: array("q"))
    """The partition offset of each kept seq: ``offsets[seq - first]``."""
    stamps: array[int] = field(default_factory=lambda: array("q"))
    idem: dict[tuple[str, str], tuple[int, int, bytes]] = field(default_factory=dict)
    """``(sender, cmid) -> (seq, ts, digest)`` for every message ever stored, trimmed or not."""
    members: set[str] = field(default_factory=set)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    """Room attributes by namespace (``meta`` from the create record)."""


class KafkaStore:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        partitions: int = 8,
        replicas: int = 1,
        fetch_wait_ms: int = 5,
        readers: int = 4,
        timeout_s: float = 10.0,
        open_timeout_s: float = 300.0,
        verify_s: float = 1.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.replicas = replicas
        self.fetch_wait_ms = fetch_wait_ms
        self.timeout_s = timeout_s
        self.open_timeout_s = open_timeout_s
        self.verify_s = verify_s
        self._nonce = secrets.token_hex(6)
        self._counter = itertools.count()
        self._n = 0
        self._tps: list[TopicPartition] = []
        self._producer: Any = None
        self._consumer: Any = None
        self._side: Any = None
        self._readers = _Readers(self, readers)
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._round_lock = asyncio.Lock()
        self._next_round: asyncio.Future[dict[int, int]] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._rooms: dict[str, _Room] = {}
        self._user_rooms: dict[str, set[str]] = {}
        self._reads: dict[str, dict[str, int]] = {}
        """Read positions, ``room -> user -> seq``, only ever raised; kept for any room name, like every
        store's (the directory does not check the room: the service checks membership first)."""
        self._user_reads: dict[str, dict[str, int]] = {}
        self._applied: list[int] = []
        """Per partition: the next offset to apply (every record below it is in the state)."""
        self._waiters: list[list[tuple[int, int, asyncio.Future[None]]]] = []
        self._pending: dict[bytes, asyncio.Future[tuple[int, object]]] = {}
        self._tail: list[tuple[int, bytes] | None] = []
        """Per partition: the offset and value digest of the last applied record (see ``_verify``)."""
        self._floor: list[int] = []
        """Per partition: 1 + the first offset of the last applied fetch. Any broker's end offset is at least
        this (Tansu reports the last batch's base offset + 1 as the end, not the last offset + 1)."""
        self._expect: dict[tuple[int, int], bytes] = {}
        """``(partition, offset) -> token`` of records acked to this node but not applied yet."""
        self._verifier: asyncio.Task[None] | None = None
        self._closed = False
        self._failure: str | None = None

    @classmethod
    def from_url(cls, url: str) -> KafkaStore:
        bootstrap, topic, options = parse_kafka_url(url)
        return cls(
            bootstrap,
            topic,
            partitions=int(options.get("partitions", "8")),
            replicas=int(options.get("replicas", "1")),
            fetch_wait_ms=int(options.get("fetch_wait_ms", "5")),
            verify_s=float(options.get("verify_s", "1")),
            readers=int(options.get("readers", "4")),
        )

    # ---- lifecycle --------------------------------------------------------------------------

    async def open(self) -> KafkaStore:
        try:
            async with _translate():
                await self._create_topic()
                self._producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=0,
                    max_batch_size=256 * 1024,
                    request_timeout_ms=int(self.timeout_s * 1000),
                )
                await self._producer.start()
                self._n = len(await self._producer.partitions_for(self.topic))
                self._tps = [TopicPartition(self.topic, p) for p in range(self._n)]
                self._applied = [0] * self._n
                self._waiters = [[] for _ in range(self._n)]
                self._tail = [None] * self._n
                self._floor = [0] * self._n
                self._side = self._new_consumer()  # ListOffsets on its own connection: never behind a fetch
                await self._side.start()
                starts = await self._side.beginning_offsets(self._tps)
                lost = {tp.partition: offset for tp, offset in starts.items() if offset > 0}
                if lost:
                    raise Unavailable(
                        f"kafka topic {self.topic!r} has lost its first records (log start offsets {lost}): Roost "
                        "rebuilds its state from offset 0, so it needs a topic that never deletes (retention.ms=-1)"
                    )
                self._consumer = self._new_consumer(fetch_max_wait_ms=self.fetch_wait_ms)
                await self._consumer.start()
                self._consumer.assign(self._tps)
                for tp in self._tps:
                    self._consumer.seek(tp, 0)
            self._task = asyncio.create_task(self._consume(), name=f"kafka-consume-{self.topic}")
            await self._fence(range(self._n), self.open_timeout_s)  # replay everything up to now
            if self.verify_s > 0:
                self._verifier = asyncio.create_task(self._verify(), name=f"kafka-verify-{self.topic}")
        except BaseException:
            await self.aclose()
            raise
        return self

    def _new_consumer(self, **extra: Any) -> Any:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            isolation_level="read_uncommitted",
            request_timeout_ms=max(int(self.timeout_s * 1000), 5000),
            **extra,
        )

    async def _create_topic(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.timeout_s * 1000))
        try:
            await admin.start()
            configs = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
            if self.replicas >= 3:
                configs["min.insync.replicas"] = "2"
            response = await admin.create_topics(
                [NewTopic(self.topic, self.partitions, self.replicas, topic_configs=configs)]
            )
            for _topic, code, *rest in getattr(response, "topic_errors", ()):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS
                    raise Unavailable(f"kafka: cannot create topic {self.topic!r}: error {code} {rest}")
        except KafkaError as exc:
            if type(exc).__name__ != "TopicAlreadyExistsError":
                raise
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def durability_warnings(self) -> list[str]:
        """Nothing this store can see about its own durability settings is unsafe (docs/backends.md)."""
        return []

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_waiters(Unavailable("store is closed"))
        for task in (self._task, self._verifier):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._readers.aclose()
        for client in (self._consumer, self._side, self._producer):
            if client is not None:
                await _stop_quietly(client)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("store is closed")
        if self._failure is not None:
            raise Unavailable(self._failure)

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            log.error("kafka store %s stops serving: %s", self.topic, reason)
            self._failure = reason
        self._fail_waiters(Unavailable(reason))

    def _fail_waiters(self, exc: Unavailable) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        for heap in self._waiters:
            for _, _, waiter in heap:
                if not waiter.done():
                    waiter.set_exception(exc)
            heap.clear()
        if self._next_round is not None and not self._next_round.done():
            self._next_round.set_exception(exc)

    # ---- the consumer: every record of every partition, in order ------------------------------

    async def _consume(self) -> None:
        consumer = self._consumer
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000)
            except OffsetOutOfRangeError as exc:
                self._fail(f"kafka log of {self.topic!r} went backwards (acknowledged records lost): {exc!r}")
                return
            except KafkaError as exc:
                log.warning("kafka consumer: %r", exc)
                await asyncio.sleep(0.2)
                continue
            for tp, records in batch.items():
                p = tp.partition
                try:
                    for record in records:
                        self._apply(p, record)
                except Exception as exc:  # never diverge silently from the other nodes
                    log.exception("kafka store: applying a record failed")
                    self._fail(f"kafka store: applying partition {p} failed: {exc!r}")
                    return
                if records:
                    self._applied[p] = max(self._applied[p], records[-1].offset + 1)
                    self._floor[p] = max(self._floor[p], records[0].offset + 1)
                    self._release(p)

    async def _verify(self) -> None:
        """Every ``verify_s``: is the last record this node applied still in the log, unchanged?

        A broker that loses acknowledged records (unclean leader election, a crash of a broker that had
        not synced) would otherwise hand out their offsets again, and the nodes' states would silently
        part from the log. aiokafka has no leader-epoch validation (KIP-320); this is the stand-in.
        """
        while True:
            await asyncio.sleep(self.verify_s)
            for p, tail in enumerate(self._tail):
                if tail is None:
                    continue
                offset, digest = tail
                try:
                    found = await self._readers.fetch(p, [offset], wait_s=min(self.timeout_s, 2.0))
                except _Gone:
                    self._fail(f"kafka: offset {offset} of partition {p} is gone: the broker lost acked records")
                    return
                except Unavailable:
                    continue  # the broker is away: not a verdict
                if _value_digest(found[offset]) != digest:
                    self._fail(f"kafka: offset {offset} of partition {p} changed: the broker lost acked records")
                    return

    def _release(self, p: int) -> None:
        heap, applied = self._waiters[p], self._applied[p]
        while heap and heap[0][0] <= applied:
            _, _, waiter = heapq.heappop(heap)
            if not waiter.done():
                waiter.set_result(None)

    def _apply(self, p: int, record: Any) -> None:
        self._tail[p] = (record.offset, _value_digest(record.value))
        token: bytes | None = next((v for k, v in record.headers or () if k == _TOKEN_HEADER), None)
        if self._expect and self._expect.pop((p, record.offset), token) != token:
            raise RuntimeError(f"offset {record.offset} of partition {p} was acked to this node for another record")
        try:
            decoded = _decode(record.value)
        except (msgspec.DecodeError, TypeError):
            log.warning("kafka store: skipping an undecodable record at %s/%d", p, record.offset)
            return
        if self._partition_of(decoded.room) != p:
            raise RuntimeError(
                f"room {decoded.room!r} found in partition {p}, expected {self._partition_of(decoded.room)}: "
                "the topic's partition count changed since the room was created"
            )
        outcome = self._outcome(p, record.offset, decoded)
        if token is not None and (fut := self._pending.get(token)) is not None and not fut.done():
            if isinstance(decoded, _Msg) and isinstance(outcome, tuple):
                seq, ts, duplicate = outcome
                message = Message(decoded.room, seq, decoded.cmid, decoded.sender, decoded.body, ts, decoded.kind)
                outcome = Appended(message, duplicate=duplicate)
            fut.set_result((record.offset, outcome))

    def _outcome(self, p: int, offset: int, rec: _Record) -> object:
        """Apply one record to the state; return what its producer is told. Deterministic: no clock, no I/O.

        A message's outcome is ``(seq, ts, duplicate)`` (``_apply`` builds the ``Appended`` only for a
        waiting producer: a replay builds nothing per record but the index entries)."""
        room = self._rooms.get(rec.room)
        if isinstance(rec, _Create):
            if room is not None:
                return False
            attrs = {"meta": dict(rec.meta)} if rec.meta else {}
            self._rooms[rec.room] = _Room(epoch=rec.epoch, partition=p, members={rec.owner}, attrs=attrs)
            self._user_rooms.setdefault(rec.owner, set()).add(rec.room)
            return True
        if isinstance(rec, _Read):
            reads = self._reads.setdefault(rec.room, {})
            value = max(reads.get(rec.user, 0), rec.seq)
            reads[rec.user] = value
            self._user_reads.setdefault(rec.user, {})[rec.room] = value
            return value
        if room is None:
            return NotFound(f"no room {rec.room!r}")
        if isinstance(rec, _Msg):
            key = (rec.sender, rec.cmid)
            digest = body_digest(rec.body, rec.kind, 16)
            earlier = room.idem.get(key)
            if earlier is not None:
                if earlier[2] != digest:
                    return Conflict(f"client message id {rec.cmid!r} was used for another message")
                return (earlier[0], earlier[1], True)
            room.head += 1
            room.offsets.append(offset)
            room.stamps.append(rec.ts)
            room.idem[key] = (room.head, rec.ts, digest)
            return (room.head, rec.ts, False)
        if isinstance(rec, _Member):
            if rec.add:
                if rec.user in room.members:
                    return False
                room.members.add(rec.user)
                self._user_rooms.setdefault(rec.user, set()).add(rec.room)
                return True
            if rec.user not in room.members:
                return False
            room.members.discard(rec.user)
            mine = self._user_rooms.get(rec.user)
            if mine is not None:
                mine.discard(rec.room)
                if not mine:
                    del self._user_rooms[rec.user]
            return True
        if isinstance(rec, _Attr):
            values = room.attrs.setdefault(rec.ns, {})
            if rec.value is None:
                values.pop(rec.key, None)
            else:
                values[rec.key] = rec.value
            return True
        first = max(room.first, room.head - max(rec.keep, 0) + 1)
        gone = first - room.first
        if gone > 0:
            del room.offsets[:gone]
            del room.stamps[:gone]
            room.first = first
        return gone

    # ---- producing and fencing ----------------------------------------------------------------

    def _partition_of(self, room: str) -> int:
        return int((murmur2(room.encode()) & 0x7FFFFFFF) % self._n)

    async def _produce(self, room: str, rec: _Record) -> object:
        """Produce ``rec`` (acks=all), wait until this node applied it, and return (or raise) its outcome."""
        self._check_open()
        token = f"{self._nonce}.{next(self._counter):x}".encode()
        fut: asyncio.Future[tuple[int, object]] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        try:
            async with _translate():
                async with self._send_lock:  # FIFO: concurrent appends enter the batch in call order
                    acked = await self._producer.send(
                        self.topic,
                        _encode(rec),
                        key=room.encode(),
                        partition=self._partition_of(room),
                        headers=[(_TOKEN_HEADER, token)],
                    )
                metadata = await acked  # the broker has it (acks=all)
            key = (metadata.partition, metadata.offset)
            if not fut.done():
                self._expect[key] = token  # the consumer checks that this offset holds this record
            try:
                offset, outcome = await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
            except TimeoutError:
                raise Unavailable("kafka: stored, but not applied in time; a retry is answered by the log") from None
            finally:
                self._expect.pop(key, None)
        finally:
            self._pending.pop(token, None)
        if offset != metadata.offset:
            self._fail(f"kafka: a record acked at offset {metadata.offset} was read at {offset}: the log was rewritten")
            self._check_open()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _fence(self, partitions: Iterable[int], wait_s: float | None = None) -> None:
        """Return once this node has applied every record the broker had when the call began."""
        self._check_open()
        ends = await self._end_offsets()
        waits: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for p in partitions:
            end = ends[p]
            if end > self._applied[p]:
                waiter: asyncio.Future[None] = loop.create_future()
                heapq.heappush(self._waiters[p], (end, id(waiter), waiter))
                waits.append(waiter)
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), wait_s or self.timeout_s)
            except TimeoutError:
                raise Unavailable("kafka: this node is behind the log") from None

    async def _end_offsets(self) -> dict[int, int]:
        """The end offset of every partition, read after the call began; concurrent callers share a request."""
        fut = self._next_round
        if fut is None:
            fut = self._next_round = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._round(fut))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)
        return await asyncio.shield(fut)

    async def _round(self, fut: asyncio.Future[dict[int, int]]) -> None:
        async with self._round_lock:
            if self._next_round is fut:
                self._next_round = None  # callers from now on need a request sent after they came
            if fut.done():
                return
            try:
                floor = list(self._floor)  # before the request goes out
                async with _translate():
                    ends = await self._side.end_offsets(self._tps)
                result = {tp.partition: int(offset) for tp, offset in ends.items()}
                for p, end in result.items():
                    if end < floor[p]:
                        self._fail(
                            f"kafka: partition {p} of {self.topic!r} went backwards to {end} (acked records lost)"
                        )
                        raise Unavailable(f"kafka: the log of {self.topic!r} went backwards")
                fut.set_result(result)
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _synced_room(self, room: str) -> _Room:
        await self._fence([self._partition_of(room)])
        state = self._rooms.get(room)
        if state is None:
            raise NotFound(f"no room {room!r}")
        return state

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        self._check_open()
        room = self._rooms.get(draft.room)
        if room is not None:  # a retry this node has already seen is answered without a record
            earlier = room.idem.get((draft.sender, draft.cmid))
            if earlier is not None:
                seq, ts, digest = earlier
                if digest != body_digest(draft.body, draft.kind, 16):
                    raise Conflict(f"client message id {draft.cmid!r} was used for another message")
                message = Message(draft.room, seq, draft.cmid, draft.sender, draft.body, ts, draft.kind)
                return Appended(message, duplicate=True)
        rec = _Msg(draft.room, draft.sender, draft.cmid, draft.body, _now_ms(), draft.kind)
        outcome = await self._produce(draft.room, rec)
        assert isinstance(outcome, Appended)
        return outcome

    async def read(self, room: str, after: int, limit: int) -> Page:
        state = await self._synced_room(room)
        position = Position(epoch=state.epoch, head=state.head, first=state.first)
        start = max(after + 1, state.first)
        stop = min(state.head, after + limit)
        return Page(await self._load(room, state, start, stop), position)

    async def read_before(self, room: str, before: int, limit: int) -> Page:
        state = await self._synced_room(room)
        position = Position(epoch=state.epoch, head=state.head, first=state.first)
        stop = min(before - 1, state.head)
        start = max(state.first, stop - limit + 1)
        return Page(await self._load(room, state, start, stop), position)

    async def _load(self, room: str, state: _Room, start: int, stop: int) -> list[Message]:
        if stop < start:
            return []
        offsets = state.offsets[start - state.first : stop - state.first + 1].tolist()  # this snapshot's
        records = await self._readers.fetch(state.partition, offsets)
        messages: list[Message] = []
        for seq, offset in enumerate(offsets, start):
            rec = _decode(records[offset])
            if not isinstance(rec, _Msg) or rec.room != room:
                raise Unavailable(f"kafka: offset {offset} is not message {seq} of {room!r}")
            messages.append(Message(room, seq, rec.cmid, rec.sender, rec.body, rec.ts, rec.kind))
        return messages

    async def position(self, room: str) -> Position:
        state = await self._synced_room(room)
        return Position(epoch=state.epoch, head=state.head, first=state.first)

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        state = await self._synced_room(room)
        return max(0, state.first + bisect.bisect_left(state.stamps, ts_ms) - 1)

    async def trim(self, room: str, keep_last: int) -> int:
        await self._synced_room(room)
        gone = await self._produce(room, _Trim(room, keep_last))
        assert isinstance(gone, int)
        return gone

    # ---- Directory --------------------------------------------------------------------------

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        created = await self._produce(room, _Create(room, owner, secrets.token_hex(8), _now_ms(), dict(meta or {})))
        return bool(created)

    async def room_exists(self, room: str) -> bool:
        self._check_open()
        if room in self._rooms:
            return True  # rooms are never deleted
        await self._fence([self._partition_of(room)])
        return room in self._rooms

    async def is_member(self, room: str, user: str) -> bool:
        self._check_open()
        state = self._rooms.get(room)
        if state is not None and user in state.members:
            return True
        await self._fence([self._partition_of(room)])
        state = self._rooms.get(room)
        return state is not None and user in state.members

    async def add_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        return bool(await self._produce(room, _Member(room, user, True)))

    async def remove_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        return bool(await self._produce(room, _Member(room, user, False)))

    async def rooms_of(self, user: str) -> list[str]:
        await self._fence(range(self._n))
        return sorted(self._user_rooms.get(user, ()))

    async def all_rooms(self) -> list[str]:
        await self._fence(range(self._n))
        return sorted(self._rooms)

    async def members(self, room: str) -> list[str]:
        await self._fence([self._partition_of(room)])
        state = self._rooms.get(room)
        return sorted(state.members) if state is not None else []

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        await self._fence([self._partition_of(room)])
        state = self._rooms.get(room)
        return dict(state.attrs.get(ns, {})) if state is not None else {}

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        await self._produce(room, _Attr(room, ns, key, value))

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        await self._fence([self._partition_of(room)])
        current = self._reads.get(room, {}).get(user, 0)
        if seq <= current:
            return current  # a position is only raised: no record needed
        value = await self._produce(room, _Read(room, user, seq))
        assert isinstance(value, int)
        return value

    async def read_positions(self, user: str) -> dict[str, int]:
        await self._fence(range(self._n))
        return dict(self._user_reads.get(user, {}))

    async def readers(self, room: str) -> dict[str, int]:
        await self._fence([self._partition_of(room)])
        return dict(self._reads.get(room, {}))


class _Gone(Unavailable):
    """An offset this node applied is no longer in the log."""


class _Readers:
    """A small pool of consumers that fetch given offsets of one partition: a seek and a fetch per run."""

    GAP: Final = 256
    """Offsets closer than this are read in one run (the records between belong to other rooms)."""

    def __init__(self, store: KafkaStore, size: int) -> None:
        self._store = store
        self._size = max(1, size)
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self._free = asyncio.Semaphore(self._size)

    async def fetch(self, p: int, offsets: Sequence[int], wait_s: float | None = None) -> dict[int, bytes]:
        async with self._free:
            consumer = self._idle.pop() if self._idle else await self._new()
            try:
                out = await self._fetch(consumer, p, offsets, wait_s or self._store.timeout_s)
            except BaseException:
                with contextlib.suppress(ValueError):
                    self._all.remove(consumer)  # its fetch state is unknown: do not reuse it
                await _stop_quietly(consumer)
                raise
            self._idle.append(consumer)
            return out

    async def _new(self) -> Any:
        store = self._store
        consumer = store._new_consumer(fetch_max_wait_ms=store.fetch_wait_ms, max_partition_fetch_bytes=256 << 10)
        try:
            async with _translate():
                await consumer.start()
        except BaseException:
            await _stop_quietly(consumer)
            raise
        self._all.append(consumer)
        return consumer

    async def _fetch(self, consumer: Any, p: int, offsets: Sequence[int], wait_s: float) -> dict[int, bytes]:
        tp = TopicPartition(self._store.topic, p)
        if consumer.assignment() != {tp}:
            consumer.assign([tp])
        else:
            consumer.resume(tp)
        out: dict[int, bytes] = {}
        deadline = time.monotonic() + wait_s
        try:
            for run in _runs(offsets, self.GAP):
                wanted = set(run)
                consumer.seek(tp, run[0])
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Unavailable(f"kafka: reading partition {p} timed out")
                    try:
                        batch = await consumer.getmany(tp, timeout_ms=int(left * 1000))
                    except OffsetOutOfRangeError as exc:
                        raise _Gone(f"kafka: offset {run[0]} of partition {p} is out of range") from exc
                    except (KafkaError, OSError) as exc:
                        raise Unavailable(f"kafka: {exc!r}") from exc
                    records = batch.get(tp, [])
                    for record in records:
                        if record.offset in wanted:
                            out[record.offset] = record.value
                    if records and records[-1].offset >= run[-1]:
                        break
        finally:
            consumer.pause(tp)  # no prefetching between reads
        missing = [o for o in offsets if o not in out]
        if missing:
            raise Unavailable(f"kafka: offsets {missing[:5]} of partition {p} could not be read")
        return out

    async def aclose(self) -> None:
        consumers, self._all, self._idle = self._all, [], []
        for consumer in consumers:
            await _stop_quietly(consumer)


def _runs(offsets: Sequence[int], gap: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][-1] <= gap:
            runs[-1].append(offset)
        else:
            runs.append([offset])
    return runs
