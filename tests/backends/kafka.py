"""Kafka: Tansu (tests/kafka_infra.py) unless ``ROOST_TEST_KAFKA`` names a broker; a topic per test."""

from __future__ import annotations

from ..kafka_infra import KAFKA, delete_topic
from .engine import Engine


async def _delete_topic(ns: str) -> None:
    await delete_topic(KAFKA, ns)


ENGINES = (Engine("kafka", store_url=lambda ns: f"kafka://{KAFKA}/{ns}", rig="kafka_broker", clean=_delete_topic),)
