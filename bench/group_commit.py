"""Group commit vs one commit per message, on the real SqliteStore (synchronous=FULL), same run.

    .venv/bin/python bench/group_commit.py [--messages 4000] [--concurrency 1 16 64 256]

Prints appends/s and latency per append for each (mode, concurrency). The baseline is the same
store with ``max_batch=1``: every append is its own transaction and fsync.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time

from roost.backends.sqlite import SqliteStore
from roost.protocol.types import Draft


async def run(max_batch: int, concurrency: int, messages: int) -> tuple[float, float, float]:
    tmp = tempfile.mkdtemp(prefix="roost-gc-")
    store = await SqliteStore(tmp, max_batch=max_batch).open()
    try:
        await store.create_room("r", "bench")
        latencies: list[float] = []
        counter = iter(range(messages))

        async def worker() -> None:
            for i in counter:
                t0 = time.perf_counter()
                await store.append(Draft("r", "bench", f"m{i}", "x" * 200))
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        return messages / elapsed, statistics.median(latencies) * 1000, p99 * 1000
    finally:
        await store.aclose()
        shutil.rmtree(tmp, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    args = parser.parse_args()
    print("| concurrency | mode | appends/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for concurrency in args.concurrency:
        for label, max_batch in (("one commit per message", 1), ("group commit", 512)):
            n = min(args.messages, 1000) if max_batch == 1 else args.messages
            rate, p50, p99 = await run(max_batch, concurrency, n)
            print(f"| {concurrency} | {label} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
