"""aiokafka at arm's length: the URL, the error boundary, the clock, and stopping a client that may be dead.

Each is needed by the log, the readers and the store alike; keeping them here keeps those modules about
Roost's rules rather than the driver's habits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

from ...protocol.errors import UsageError
from ..boundary import engine_boundary
from ..options import url_options

__all__ = ["now_ms", "parse_kafka_url", "stop_quietly", "translate"]

log = logging.getLogger(__package__)  # one logger for the whole engine: "roost.backends.kafka"


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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def stop_quietly(client: Any) -> None:
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
async def translate() -> AsyncIterator[None]:
    """aiokafka errors become ``Unavailable`` here (``engine_boundary``)."""
    async with engine_boundary("kafka"):
        yield
