"""Search query latency on a large index: p50/p99 of ``SearchIndex.search`` on 1 M stored messages.

The documents are written straight into the index through its own ``apply`` (what the indexer calls), not sent
through a server: a million sends would take an hour on this machine and measure the store, not the index.
The text is synthetic: a vocabulary of 20,000 made-up words drawn with a Zipf law (s = 1.1, as word frequencies
in natural text), 4-30 words a message, over ``--rooms`` rooms of equal size, one message per 10 ms.

Queries, each shape ``--queries`` times with fresh words, for a user in 1, 10 and 500 rooms (chosen at random):

* ``rare``: a word of rank 5,000-20,000; ``common``: rank 1-50; ``two``: a common and a mid word (rank 200-2,000);
* ``phrase``: two words that follow each other in some message; ``prefix``: the first 3 letters of a mid word.

Then the whole index's rebuild after an erasure (``compact``), once. On PostgreSQL the tables are analyzed first
(``ANALYZE``: the statistics autovacuum gathers soon after such a load, which the planner needs to tell a rare
word from a common one).

    .venv/bin/python bench/search_latency.py --engine sqlite --dir /tmp/search-bench
    .venv/bin/python bench/search_latency.py --engine postgres --pg postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from roost.search.port import Insert, Mark, Remove, SearchIndex
from roost.search.postgres_index import PostgresIndex
from roost.search.query import parse
from roost.search.sqlite_index import SqliteIndex

LETTERS = "etaoinshrdlucmfwypvbgkjqxz"


def vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        n = rng.choice((2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10))
        words.add("".join(rng.choice(LETTERS[: rng.randint(8, 26)]) for _ in range(n)))
    return sorted(sorted(words), key=lambda w: len(w) + rng.random() * 4)  # frequent words tend to be short


def zipf_weights(size: int, s: float = 1.1) -> list[float]:
    return [1 / (rank**s) for rank in range(1, size + 1)]


async def fill(index: SearchIndex, docs: int, rooms: int, rng: random.Random, vocab: list[str]) -> list[str]:
    weights = list(itertools.accumulate(zipf_weights(len(vocab))))
    per_room = docs // rooms
    names = [f"room-{i}" for i in range(rooms)]
    start_ts = 1_700_000_000_000
    batch = 2000
    started = time.monotonic()
    spent = 0.0
    for round_ in range(0, per_room, batch):
        for r, room in enumerate(names):
            first = round_ + 1
            count = min(batch, per_room - round_)
            changes = []
            for seq in range(first, first + count):
                n = rng.randint(4, 30)
                text = " ".join(rng.choices(vocab, cum_weights=weights, k=n))
                ts = start_ts + ((seq - 1) * rooms + r) * 10
                changes.append(Insert(seq, f"user{rng.randint(0, 999)}", ts, text))
            expected = None if round_ == 0 else Mark("e", round_)
            applying = time.monotonic()
            assert await index.apply(room, expected, Mark("e", round_ + count), changes)
            spent += time.monotonic() - applying
            if r % 100 == 99:
                print(f"  {round_ * rooms + (r + 1) * count:,} documents, {spent:.0f} s in apply", flush=True)
        done = (round_ + batch) * rooms
        print(f"  {min(done, docs):,} documents in {time.monotonic() - started:.0f} s", flush=True)
    return names


def shapes(rng: random.Random, vocab: list[str], phrases: list[str]) -> dict[str, str]:
    return {
        "rare": rng.choice(vocab[5000:]),
        "common": rng.choice(vocab[:50]),
        "two": f"{rng.choice(vocab[:50])} {rng.choice(vocab[200:2000])}",
        "phrase": f'"{rng.choice(phrases)}"',
        "prefix": rng.choice([w for w in vocab[200:2000] if len(w) >= 4])[:3] + "*",
    }


async def measure(
    index: SearchIndex, names: Sequence[str], rng: random.Random, vocab: list[str], phrases: list[str], n: int
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for member_of in (1, 10, 500):
        times: dict[str, list[float]] = {}
        hits: dict[str, int] = {}
        for _ in range(n):
            rooms = rng.sample(list(names), min(member_of, len(names)))
            for shape, text in shapes(rng, vocab, phrases).items():
                query = parse(text)
                started = time.perf_counter()
                found = await index.search(rooms, query, 20, None)
                times.setdefault(shape, []).append(time.perf_counter() - started)
                hits[shape] = hits.get(shape, 0) + len(found.hits)
        for shape, samples in times.items():
            samples.sort()
            out[f"{member_of} rooms, {shape}"] = {
                "p50_ms": round(statistics.median(samples) * 1000, 2),
                "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 2),
                "max_ms": round(samples[-1] * 1000, 2),
                "hits_per_query": round(hits[shape] / n, 1),
            }
            print(f"  {member_of:>3} rooms  {shape:<7} {out[f'{member_of} rooms, {shape}']}", flush=True)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dir", default="/tmp/roost-search-bench", help="the SQLite index's folder")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL server")
    parser.add_argument("--schema", default="roost_search_bench", help="PostgreSQL schema (kept for --reuse)")
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200, help="queries per shape and room count")
    parser.add_argument("--reuse", action="store_true", help="query an index an earlier run filled")
    parser.add_argument("--out", help="write the figures here (JSON)")
    args = parser.parse_args()
    rng = random.Random(7)
    vocab = vocabulary(rng, 20_000)
    index: SearchIndex
    if args.engine == "sqlite":
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        index = await SqliteIndex(Path(args.dir) / "search.sqlite3").open()
    else:
        index = await PostgresIndex(f"{args.pg}?schema={args.schema}").open()
    try:
        names = [f"room-{i}" for i in range(args.rooms)]
        if not args.reuse:
            print(f"filling {args.docs:,} documents into {args.engine} ...", flush=True)
            started = time.monotonic()
            names = await fill(index, args.docs, args.rooms, rng, vocab)
            print(f"filled in {time.monotonic() - started:.0f} s", flush=True)
        if isinstance(index, PostgresIndex):  # the statistics autovacuum gathers within a minute of such a load
            async with index.pool.acquire() as conn:
                await conn.execute("ANALYZE search_docs")
                await conn.execute("ANALYZE search_rooms")
        phrases = [
            " ".join(h.body.split()[:2])
            for h in (await index.search(names[:50], parse(vocab[0]), 100, None)).hits
            if len(h.body.split()) >= 2
        ]
        print("queries (20 results each):", flush=True)
        figures = await measure(index, names, rng, vocab, phrases, args.queries)
        # One erasure, then the compaction it calls for: the cost of the rebuild on this index.
        doomed = (await index.search(names[:1], parse(vocab[0]), 1, None)).hits[0]
        marks = await index.marks()
        mark = marks[names[0]]
        moved = Mark(mark.epoch, mark.cursor + 1, mark.first)
        assert await index.apply(names[0], mark, moved, [Remove(doomed.seq, erase=True)])
        started = time.monotonic()
        await index.compact()
        compact_s = round(time.monotonic() - started, 2)
        print(f"compaction after an erasure: {compact_s} s", flush=True)
        if args.out:
            Path(args.out).write_text(
                json.dumps(
                    {"engine": args.engine, "docs": args.docs, "queries": figures, "compact_s": compact_s}, indent=1
                )
                + "\n"
            )
    finally:
        await index.aclose()


if __name__ == "__main__":
    asyncio.run(main())
