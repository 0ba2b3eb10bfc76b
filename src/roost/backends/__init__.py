"""Backends, chosen by URL. Each engine lives in its own module, imported only when asked for.

Stores: (none) or ``sqlite://DIR`` (embedded), ``redis://``, ``redis+cluster://``, ``postgresql://``,
``nats://``. Buses: (none) or ``local`` (in-process), ``redis://``, ``redis+cluster://``, ``nats://``.
``kafka://`` (docs/kafka.md) is a store only: pair it with a Redis or NATS bus.
Options ride in the query string: ``prefix`` (key/subject namespace), ``keep`` (retention: messages
kept per room), ``schema`` (PostgreSQL), ``replicas`` (JetStream).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ports import Bus, Directory, Leases, Storage
from ..protocol.errors import UsageError

__all__ = ["Backends", "open_backends", "open_bus", "open_store"]


@dataclass(frozen=True, slots=True)
class Backends:
    store: Storage
    """The store engine: Store, and the Leases beside it (the same object as ``directory``)."""
    directory: Directory
    bus: Bus
    leases: Leases
    """The store engine again: jobs one node at a time does (a durable consumer's deliveries) are leased there."""

    async def aclose(self) -> None:
        await self.bus.aclose()
        await self.store.aclose()


async def open_store(url: str | None, data_dir: str, *, atomic_bus: bool = False) -> Storage:
    """The store (and directory) ``url`` names; ``atomic_bus``: a Redis store publishes inside its append.

    Typed as the ports, not ``Any``: mypy checks every engine class against its interfaces here."""
    if url in (None, "", "sqlite") or (url or "").startswith("sqlite:"):
        from .sqlite import SqliteStore

        path = (url or "").removeprefix("sqlite://") or data_dir
        return await SqliteStore(path).open()
    assert url is not None
    if url.startswith(("redis://", "rediss://", "redis+cluster://")):
        from .redis import RedisStore, connect_redis, parse_redis_url

        plain, options = parse_redis_url(url)
        return RedisStore(
            connect_redis(plain),
            prefix=options.get("prefix", "roost"),
            publish=atomic_bus,
            keep=int(options.get("keep", "0")),
            wait=int(options.get("wait", "0")),
        )
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return await PostgresStore(url).open()
    if url.startswith("nats://"):
        from .nats import JetStreamStore, connect_nats, parse_nats_url

        servers, options = parse_nats_url(url)
        nc = await connect_nats(servers)
        return await JetStreamStore(
            nc,
            prefix=options.get("prefix", "roost"),
            replicas=int(options.get("replicas", "1")),
            keep=int(options.get("keep", "0")),
            sync_always=_sync_option(options.get("sync")),
        ).open()
    if url.startswith("kafka://"):
        from .kafka import KafkaStore

        return await KafkaStore.from_url(url).open()
    raise UsageError(f"unsupported store URL {url!r}")


def _sync_option(value: str | None) -> bool:
    if value in (None, ""):
        return False
    if value == "always":
        return True
    raise UsageError(f"nats URL option sync={value!r}: the only value is 'always' (docs/backends.md)")


async def open_bus(url: str | None) -> Bus:
    if url in (None, "", "local"):
        from .local import LocalBus

        return LocalBus()
    assert url is not None
    if url.startswith(("redis://", "rediss://", "redis+cluster://")):
        from .redis import RedisBus, connect_redis, parse_redis_url

        plain, options = parse_redis_url(url)
        return RedisBus(connect_redis(plain), prefix=options.get("prefix", "roost"))
    if url.startswith("nats://"):
        from .nats import NatsBus, connect_nats, parse_nats_url

        servers, options = parse_nats_url(url)
        holder: list[NatsBus] = []
        nc = await connect_nats(servers, on_reset=lambda: holder[0].reset() if holder else None)
        bus = NatsBus(nc, prefix=options.get("prefix", "roost"))
        holder.append(bus)
        return bus
    raise UsageError(f"unsupported bus URL {url!r}")


async def open_backends(store_url: str | None, bus_url: str | None, data_dir: str) -> Backends:
    """``None`` for both is the embedded default: SQLite in ``data_dir`` and the in-process bus.

    With Redis as both store and bus (the same URL), the store publishes inside its append script,
    atomically with the write, and the service does not publish again.
    """
    if store_url and bus_url is None and store_url.startswith(("redis", "nats")):
        bus_url = store_url  # a distributed store implies its own engine as the bus
    atomic = bool(store_url and bus_url and store_url.startswith("redis") and store_url == bus_url)
    store = await open_store(store_url, data_dir, atomic_bus=atomic)
    try:
        bus = await open_bus(bus_url)
    except BaseException:
        await store.aclose()
        raise
    if store_url is not None and not store_url.startswith("sqlite") and bus_url in (None, "", "local"):
        await store.aclose()
        await bus.aclose()
        raise UsageError("a shared store needs a shared bus (redis:// or nats://): nodes could not hear each other")
    return Backends(store=store, directory=store, bus=bus, leases=store)
