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


ENGINES = (
    Engine(
        "kafka",
        store_url=lambda ns: f"kafka://{address('tansu')}/{ns}",
        rig="kafka_broker",
        clean=_delete_topic,
        digest=DigestPin(_stored_digest, lambda d: d[:16]),
    ),
)
