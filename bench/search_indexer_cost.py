"""CPU the search indexer spends per message, in the shape of the fan-out (S1: 20 rooms), by messages per room
per pass: what a busy node pays to keep its index, apart from any noise of the rest of the server.

The embedded store is filled by passes: each appends N messages of 200 bytes to each of 20 rooms, then the
indexer makes one pass over the 20 rooms (a page read of each, one index transaction for all), timed with
``process_time`` (every thread of the process: the store's reader, the index's writer, the event loop). At
2,000 messages a second over 20 rooms and a pass every 200 ms (``_GATHER_S``), a pass finds 20 per room.

    .venv/bin/python bench/search_indexer_cost.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from roost.backends.local import LocalBus
from roost.backends.sqlite import SqliteStore
from roost.config import Limits
from roost.metrics import NodeMetrics
from roost.protocol.types import Draft
from roost.search.indexer import Indexer
from roost.search.sqlite_index import SqliteIndex

ROOMS = 20
PASSES = 100


async def per_message(per_room: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore(tmp).open()
        index = await SqliteIndex(Path(tmp) / "search.sqlite3").open()
        try:
            rooms = [f"room{r}" for r in range(ROOMS)]
            for room in rooms:
                await store.create_room(room, "alice")
            indexer = Indexer(store, LocalBus(), index, Limits(), NodeMetrics())
            indexer._marks = await index.marks()
            cpu = 0.0
            for p in range(PASSES):
                sends = [Draft(r, "alice", f"{p}-{k}", "x" * 200, "text") for r in rooms for k in range(per_room)]
                await asyncio.gather(*(store.append(draft) for draft in sends))
                indexer._dirty = set(rooms)
                started = time.process_time()
                await indexer._pass()
                cpu += time.process_time() - started
            assert indexer.indexed == PASSES * ROOMS * per_room
            return cpu / indexer.indexed
        finally:
            await index.aclose()
            await store.aclose()


async def main() -> None:
    print("| messages per room per pass | CPU per message (µs) |\n|---|---|")
    for per_room in (1, 5, 10, 20, 50):
        print(f"| {per_room} | {await per_message(per_room) * 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
