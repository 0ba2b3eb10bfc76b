"""History reads: a small pool of consumers that fetch given offsets of one partition.

The in-memory index maps seqs to offsets; these consumers turn offsets into records with a seek and a
fetch per run of nearby offsets, never a scan of the topic. ``Gone`` tells the verifier that an offset it
applied has left the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from ...protocol.errors import Unavailable
from .clients import stop_quietly, translate

if TYPE_CHECKING:
    from .log import KafkaLog

__all__ = ["Gone", "Readers"]


class Gone(Unavailable):
    """An offset this node applied is no longer in the log."""


class Readers:
    """A small pool of consumers that fetch given offsets of one partition: a seek and a fetch per run."""

    GAP: Final = 256
    """Offsets closer than this are read in one run (the records between belong to other rooms)."""

    def __init__(self, store: KafkaLog, size: int) -> None:
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
                await stop_quietly(consumer)
                raise
            self._idle.append(consumer)
            return out

    async def _new(self) -> Any:
        store = self._store
        consumer = store.new_consumer(fetch_max_wait_ms=store.fetch_wait_ms, max_partition_fetch_bytes=256 << 10)
        try:
            async with translate():
                await consumer.start()
        except BaseException:
            await stop_quietly(consumer)
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
                        raise Gone(f"kafka: offset {run[0]} of partition {p} is out of range") from exc
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
            await stop_quietly(consumer)


def _runs(offsets: Sequence[int], gap: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for offset in offsets:
        if runs and offset - runs[-1][-1] <= gap:
            runs[-1].append(offset)
        else:
            runs.append([offset])
    return runs
