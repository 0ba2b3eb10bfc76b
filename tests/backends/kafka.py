"""Kafka: Tansu (tests/kafka_infra.py) unless ``ROOST_TEST_KAFKA`` names a broker; a topic per test."""

from __future__ import annotations

from pathlib import Path

from roost.ports import Storage

from ..clusters import address
from ..kafka_infra import delete_topic
from .engine import DigestPin, Engine


async def _delete_topic(ns: str) -> None:
    await delete_topic(address("tansu"), ns)


async def _stored_digest(store: Storage, ns: str, data_dir: Path) -> object:
    """In memory only: rebuilt from the log at every start, so no stored data constrains it."""
    from roost.backends.kafka import KafkaStore

    assert isinstance(store, KafkaStore)
    return store._state.rooms["r"].idem["alice", "c1"][2]


async def _records(store: Storage, ns: str, data_dir: Path) -> bytes:
    """Every record of the topic, read from offset 0: Tansu keeps it in memory, the broker's own business."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=address("tansu"), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(ns, p) for p in sorted(consumer.partitions_for_topic(ns) or ())]
        if not partitions:
            await consumer.topics()
            partitions = [TopicPartition(ns, p) for p in sorted(consumer.partitions_for_topic(ns) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out = []
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                out += [r.value or b"" for r in batch.get(tp, [])]
        return b"".join(out)
    finally:
        await consumer.stop()


ENGINES = (
    Engine(
        "kafka",
        store_url=lambda ns: f"kafka://{address('tansu')}/{ns}",
        rig="kafka_broker",
        clean=_delete_topic,
        digest=DigestPin(_stored_digest, lambda d: d[:16]),
        raw=_records,
        erases=False,
    ),
)
