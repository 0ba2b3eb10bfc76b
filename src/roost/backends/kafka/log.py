"""How a node follows the topic: produce with acks=all, consume every partition in order, fence reads.

``KafkaLog`` owns the aiokafka clients and the bookkeeping that makes the store linearizable: which offset
each partition has been applied up to, who waits for which offset, which acked records this node expects
to see, and the fail-stop verdict when the log went backwards. ``KafkaStore`` adds the ports on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import secrets
from collections.abc import Iterable
from typing import Any, Self

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.partitioner import murmur2

from ...ports import Appended
from ...protocol.errors import NotFound, Unavailable
from ...protocol.types import Message
from .clients import log, parse_kafka_url, stop_quietly, translate
from .readers import Gone, Readers
from .records import TOKEN_HEADER, Msg, Record, decode, encode, value_digest
from .state import Replica, RoomState

__all__ = ["KafkaLog"]


class KafkaLog:
    """This node's follower of the topic; everything the store knows comes through ``_apply``."""

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
        self._readers = Readers(self, readers)
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._round_lock = asyncio.Lock()
        self._next_round: asyncio.Future[dict[int, int]] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        self._state = Replica()
        self._applied: list[int] = []
        """Per partition: the next offset to apply (every record below it is in the state)."""
        self._waiters: list[list[tuple[int, int, asyncio.Future[None]]]] = []
        self._pending: dict[bytes, asyncio.Future[tuple[int, object]]] = {}
        self._tail: list[tuple[int, bytes] | None] = []
        """Per partition: the offset and value digest of the last applied record (see ``_verify``)."""
        self._hole_since: list[float | None] = []
        """Per partition: since when the next offset has not been readable while later ones were (``_consume``)."""
        self._floor: list[int] = []
        """Per partition: 1 + the first offset of the last applied fetch. Any broker's end offset is at least
        this (Tansu reports the last batch's base offset + 1 as the end, not the last offset + 1)."""
        self._expect: dict[tuple[int, int], bytes] = {}
        """``(partition, offset) -> token`` of records acked to this node but not applied yet."""
        self._verifier: asyncio.Task[None] | None = None
        self._closed = False
        self._failure: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Self:
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

    async def open(self) -> Self:
        try:
            async with translate():
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
                self._hole_since = [None] * self._n
                self._side = self.new_consumer()  # ListOffsets on its own connection: never behind a fetch
                await self._side.start()
                starts = await self._side.beginning_offsets(self._tps)
                lost = {tp.partition: offset for tp, offset in starts.items() if offset > 0}
                if lost:
                    raise Unavailable(
                        f"kafka topic {self.topic!r} has lost its first records (log start offsets {lost}): Roost "
                        "rebuilds its state from offset 0, so it needs a topic that never deletes (retention.ms=-1)"
                    )
                self._consumer = self.new_consumer(fetch_max_wait_ms=self.fetch_wait_ms)
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

    def new_consumer(self, **extra: Any) -> Any:
        """A consumer outside any group (no rebalance), failing loudly on an offset out of range."""
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

    async def replication(self) -> tuple[int, int]:
        """The topic's replication factor (its smallest partition's) and ``min.insync.replicas`` (1, Kafka's
        default, where the broker names none)."""
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=int(self.timeout_s * 1000))
        try:
            async with translate():
                await admin.start()
                (described,) = await admin.describe_topics([self.topic])
                factor = min(len(p["replicas"]) for p in described["partitions"])
                (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, self.topic)])
                entries = {str(e[0]): e[1] for resource in response.resources for e in resource[4]}
                min_insync = int(entries.get("min.insync.replicas") or 1)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        return factor, min_insync

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
                await stop_quietly(client)

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
            if (stuck := self._unfilled_hole()) is not None:
                self._fail(
                    f"kafka: partition {stuck} of {self.topic!r} has a hole at offset {self._applied[stuck]} that "
                    f"did not fill in {self.timeout_s:g} s: the broker lost records"
                )
                return
            holes = False
            for tp, records in batch.items():
                p = tp.partition
                contiguous = self._contiguous(p, records)
                if len(contiguous) < len(records):
                    consumer.seek(tp, self._applied[p] + len(contiguous))  # read the hole again
                    holes = True
                    if self._hole_since[p] is None:
                        self._hole_since[p] = asyncio.get_running_loop().time()
                elif contiguous:
                    self._hole_since[p] = None
                try:
                    for record in contiguous:
                        self._apply(p, record)
                except Exception as exc:  # never diverge silently from the other nodes
                    log.exception("kafka store: applying a record failed")
                    self._fail(f"kafka store: applying partition {p} failed: {exc!r}")
                    return
                if contiguous:
                    self._applied[p] = contiguous[-1].offset + 1
                    self._floor[p] = max(self._floor[p], contiguous[0].offset + 1)
                    self._release(p)
            if holes:
                await asyncio.sleep(0.005)  # the broker fills a hole within moments: do not spin on it

    def _unfilled_hole(self) -> int | None:
        """A partition whose hole has stayed open longer than the store's timeout, if any."""
        now = asyncio.get_running_loop().time()
        for p, since in enumerate(self._hole_since):
            if since is not None and now - since > self.timeout_s:
                return p
        return None

    def _contiguous(self, p: int, records: list[Any]) -> list[Any]:
        """The records that continue the partition exactly where this node stands, up to the first hole.

        Roost's topic has no compaction and no transactions, so its offsets are dense and a consumer must see
        every one, in order. A broker that makes an offset readable before the ones below it (Tansu does, under
        concurrent producers: a fetch from offset n answers n+2) would otherwise be skipped past for good,
        and this node's seqs would part from the log's. Records already applied (a re-read) are dropped."""
        expected = self._applied[p]
        out = []
        for record in records:
            if record.offset < expected:
                continue
            if record.offset > expected:
                break
            out.append(record)
            expected += 1
        return out

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
                except Gone:
                    self._fail(f"kafka: offset {offset} of partition {p} is gone: the broker lost acked records")
                    return
                except Unavailable:
                    continue  # the broker is away: not a verdict
                if value_digest(found[offset]) != digest:
                    self._fail(f"kafka: offset {offset} of partition {p} changed: the broker lost acked records")
                    return

    def _release(self, p: int) -> None:
        heap, applied = self._waiters[p], self._applied[p]
        while heap and heap[0][0] <= applied:
            _, _, waiter = heapq.heappop(heap)
            if not waiter.done():
                waiter.set_result(None)

    def _apply(self, p: int, record: Any) -> None:
        self._tail[p] = (record.offset, value_digest(record.value))
        token: bytes | None = next((v for k, v in record.headers or () if k == TOKEN_HEADER), None)
        if self._expect and self._expect.pop((p, record.offset), token) != token:
            raise RuntimeError(f"offset {record.offset} of partition {p} was acked to this node for another record")
        try:
            decoded = decode(record.value)
        except (msgspec.DecodeError, TypeError):
            log.warning("kafka store: skipping an undecodable record at %s/%d", p, record.offset)
            return
        if self._partition_of(decoded.room) != p:
            raise RuntimeError(
                f"room {decoded.room!r} found in partition {p}, expected {self._partition_of(decoded.room)}: "
                "the topic's partition count changed since the room was created"
            )
        outcome = self._state.apply(p, record.offset, decoded)
        if token is not None and (fut := self._pending.get(token)) is not None and not fut.done():
            if isinstance(decoded, Msg) and isinstance(outcome, tuple):
                seq, ts, duplicate = outcome
                message = Message(decoded.room, seq, decoded.cmid, decoded.sender, decoded.body, ts, decoded.kind)
                outcome = Appended(message, duplicate=duplicate)
            fut.set_result((record.offset, outcome))

    # ---- producing and fencing ----------------------------------------------------------------

    def _partition_of(self, room: str) -> int:
        return int((murmur2(room.encode()) & 0x7FFFFFFF) % self._n)

    async def _produce(self, room: str, rec: Record) -> object:
        """Produce ``rec`` (acks=all), wait until this node applied it, and return (or raise) its outcome."""
        self._check_open()
        token = f"{self._nonce}.{next(self._counter):x}".encode()
        fut: asyncio.Future[tuple[int, object]] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        try:
            async with translate():
                async with self._send_lock:  # FIFO: concurrent appends enter the batch in call order
                    acked = await self._producer.send(
                        self.topic,
                        encode(rec),
                        key=room.encode(),
                        partition=self._partition_of(room),
                        headers=[(TOKEN_HEADER, token)],
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
        if not waits:
            return
        try:
            # asyncio.wait, not gather: a caller that gives up (a readiness probe's own timeout) leaves no
            # gathering future behind whose cancellation asyncio would log as an error.
            done, pending = await asyncio.wait(waits, timeout=wait_s or self.timeout_s)
        finally:
            for waiter in waits:
                waiter.cancel()  # no effect on a done one; the heap drops cancelled ones as they come up
        if pending:
            raise Unavailable("kafka: this node is behind the log")
        for waiter in done:
            waiter.result()  # the store's failure, if it failed meanwhile

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
                async with translate():
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

    async def _synced_room(self, room: str) -> RoomState:
        await self._fence([self._partition_of(room)])
        state = self._state.rooms.get(room)
        if state is None:
            raise NotFound(f"no room {room!r}")
        return state
