"""Backends, chosen by URL. Each engine lives in its own module, imported only when asked for."""

from __future__ import annotations

from dataclasses import dataclass

from ..ports import Bus, Directory, Store
from ..protocol.errors import UsageError

__all__ = ["Backends", "open_backends"]


@dataclass(frozen=True, slots=True)
class Backends:
    store: Store
    directory: Directory
    bus: Bus

    async def aclose(self) -> None:
        await self.bus.aclose()
        await self.store.aclose()


async def open_backends(store_url: str | None, bus_url: str | None, data_dir: str) -> Backends:
    """``None`` for both is the embedded default: SQLite in ``data_dir`` and the in-process bus."""
    if store_url in (None, "", "sqlite") or (store_url or "").startswith("sqlite:"):
        from .sqlite import SqliteStore

        path = data_dir
        if store_url and store_url.startswith("sqlite://"):
            path = store_url.removeprefix("sqlite://") or data_dir
        store = await SqliteStore(path).open()
    else:
        raise UsageError(f"unsupported store URL {store_url!r}")
    if bus_url in (None, "", "local"):
        from .local import LocalBus

        bus = LocalBus()
    else:
        await store.aclose()
        raise UsageError(f"unsupported bus URL {bus_url!r}")
    return Backends(store=store, directory=store, bus=bus)
