"""The ``SearchIndex`` contract of src/roost/search/port.py on both index engines: SQLite FTS5 (a file in a
temporary directory) and PostgreSQL full-text search (a fresh schema on this machine's server), through the port
alone; then what each holds of an erased text, read raw, after its compaction."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from roost.protocol.errors import ProtocolError, Unavailable
from roost.search.port import Change, Edit, Insert, Mark, Remove, SearchIndex, Update
from roost.search.postgres_index import PostgresIndex
from roost.search.query import parse
from roost.search.sqlite_index import SqliteIndex

from .postgres import POSTGRES, _drop_schema
from .rawbytes import files_under

TS = 1_790_000_000_000
E = "epoch-1"


class Opened:
    """One index engine over one namespace; ``reopen`` is the same index after a restart."""

    def __init__(self, engine: str, tmp_path: Path) -> None:
        self.engine = engine
        self.dir = tmp_path / "search"
        self.ns = "s" + uuid.uuid4().hex[:12]
        self.opened: list[SearchIndex] = []

    async def open(self) -> SearchIndex:
        index: SearchIndex
        if self.engine == "sqlite":
            index = await SqliteIndex(self.dir / "search.sqlite3").open()
        else:
            index = await PostgresIndex(f"{POSTGRES}?schema={self.ns}").open()
        self.opened.append(index)
        return index

    async def reopen(self, index: SearchIndex) -> SearchIndex:
        await index.aclose()
        return await self.open()

    async def raw(self) -> bytes:
        """Every byte the engine holds of the index: the SQLite files; PostgreSQL's tables (each row version)
        and the data files of their indexes after a checkpoint."""
        if self.engine == "sqlite":
            return files_under(self.dir)
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
            await conn.execute("CHECKPOINT")
            out = []
            for table in ("search_docs", "search_rooms"):
                name = f"{self.ns}.{table}"
                pages = await conn.fetchval(
                    "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int", name
                )
                for page in range(pages):
                    rows = await conn.fetch(
                        "SELECT t_data FROM heap_page_items(get_raw_page($1, $2)) WHERE t_data IS NOT NULL", name, page
                    )
                    out += [bytes(r["t_data"]) for r in rows]
            indexes = await conn.fetch(
                "SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relkind = 'i'",
                self.ns,
            )
            for index in indexes:
                path = await conn.fetchval("SELECT pg_relation_filepath($1::regclass)", index["name"])
                out.append(bytes(await conn.fetchval("SELECT pg_read_binary_file($1)", path)))
            return b"".join(out)
        finally:
            await conn.close()

    async def aclose(self) -> None:
        for index in self.opened:
            await index.aclose()
        if self.engine == "postgres":
            await _drop_schema(self.ns)


@pytest.fixture(params=["sqlite", "postgres"])
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opened]:
    chosen = Opened(request.param, tmp_path)
    yield chosen
    await chosen.aclose()


@pytest.fixture
async def index(opened: Opened) -> SearchIndex:
    return await opened.open()


async def consistent(index: SearchIndex) -> None:
    """FTS5's own check that its tokens are exactly those of the texts it indexes (SQLite; PostgreSQL computes
    the tsvector in the row it describes, so it cannot drift)."""
    if isinstance(index, SqliteIndex):
        await index._write(lambda: index._db.execute("INSERT INTO fts (fts, rank) VALUES ('integrity-check', 1)"))


def text(seq: int, body: str, sender: str = "alice", ts: int | None = None) -> Insert:
    return Insert(seq, sender, TS + seq if ts is None else ts, body)


async def found(
    index: SearchIndex, query: str, rooms: list[str] | None = None, limit: int = 20
) -> list[tuple[str, int]]:
    result = await index.search(rooms or ["r", "s"], parse(query), limit, None)
    return [(h.room, h.seq) for h in result.hits]


async def test_texts_are_found_newest_first_in_the_rooms_asked_only(index: SearchIndex) -> None:
    """[R-SEARCH-1] Every word must match, newest first; documents of rooms not asked for are never returned."""
    assert await index.apply("r", None, Mark(E, 3), [text(1, "the red fox"), text(3, "a red hen")])
    assert await index.apply("s", None, Mark(E, 2), [text(2, "red alert", ts=TS + 2)])
    assert await index.apply("t", None, Mark(E, 1), [text(1, "red secret of t", ts=TS + 9)])
    assert await found(index, "red") == [("r", 3), ("s", 2), ("r", 1)]
    assert await found(index, "red fox") == [("r", 1)]
    assert await found(index, "red", ["s"]) == [("s", 2)]
    assert await found(index, "secret") == []
    assert await found(index, "red", ["nowhere"]) == []
    assert (await index.search([], parse("red"), 20, None)).hits == []
    hit = (await index.search(["r"], parse("hen"), 20, None)).hits[0]
    assert (hit.room, hit.seq, hit.sender, hit.ts, hit.body) == ("r", 3, "alice", TS + 3, "a red hen")


async def test_pages_follow_the_cursor_without_repeats_or_gaps(index: SearchIndex) -> None:
    """[R-SEARCH-5] A full page carries ``next``; asking ``before`` it continues with older hits, the same
    millisecond included, until a page that is not full has no ``next``."""
    docs = [text(seq, f"word number {seq}", ts=TS + seq // 3) for seq in range(1, 26)]  # three per millisecond
    assert await index.apply("r", None, Mark(E, 25), docs)
    seen: list[int] = []
    before = None
    for _ in range(10):
        page = await index.search(["r"], parse("word"), 7, before)
        seen += [h.seq for h in page.hits]
        if page.next is None:
            assert len(page.hits) < 7
            break
        before = page.next
    assert sorted(seen) == list(range(1, 26)) and len(seen) == 25
    assert [h.ts for h in (await index.search(["r"], parse("word"), 25, None)).hits] == sorted(
        (d.ts for d in docs), reverse=True
    )


async def test_a_mark_moves_only_from_the_one_the_caller_read(opened: Opened, index: SearchIndex) -> None:
    """[R-SEARCH-7] ``apply`` writes only over the expected mark, documents and mark in one step: a stale caller
    changes nothing, and a reopened index resumes from the stored marks."""
    assert await index.apply("r", None, Mark(E, 2), [text(1, "one"), text(2, "two")])
    assert not await index.apply("r", None, Mark(E, 3), [text(3, "three")])
    assert not await index.apply("r", Mark(E, 1), Mark(E, 3), [text(3, "three")])
    assert await found(index, "three") == []
    assert await index.apply("r", Mark(E, 2), Mark(E, 4, 1), [text(4, "four")])
    again = await opened.reopen(index)
    assert await again.marks() == {"r": Mark(E, 4, 1)}
    assert await found(again, "one") == [("r", 1)] and await found(again, "four") == [("r", 4)]


async def test_many_rooms_in_one_step_each_checked_on_its_own(index: SearchIndex) -> None:
    """[R-SEARCH-7] ``apply_many`` applies several rooms in one transaction: a room whose mark is stale is skipped
    (nothing of it written), the others are applied."""
    assert await index.apply("b", None, Mark(E, 1), [text(1, "b was here first")])
    updates = [
        Update("a", None, Mark(E, 1), [text(1, "alpha one")]),
        Update("b", None, Mark(E, 2), [text(2, "stale bravo")]),  # b has a mark: this caller read an old state
        Update("c", None, Mark(E, 2), [text(1, "charlie one"), text(2, "charlie two")]),
    ]
    assert await index.apply_many(updates) == [True, False, True]
    assert await index.marks() == {"a": Mark(E, 1), "b": Mark(E, 1), "c": Mark(E, 2)}
    assert await found(index, "one", ["a", "b", "c"]) == [("c", 1), ("a", 1)]
    assert await found(index, "bravo", ["b"]) == []
    assert await index.apply_many([]) == []
    await consistent(index)


async def test_edits_replace_deletes_remove_and_history_changes_drop(index: SearchIndex) -> None:
    """[R-SEARCH-7] An edit by the sender replaces the text (another sender's is ignored, as readers fold it); a
    delete removes it; a raised ``first`` drops what retention dropped; a reset (a new epoch) drops the room."""
    assert await index.apply("r", None, Mark(E, 3), [text(1, "alpha"), text(2, "beta"), text(3, "gamma")])
    changes: list[Change] = [Edit(1, "alice", "omega"), Edit(2, "mallory", "hijacked"), Remove(3)]
    assert await index.apply("r", Mark(E, 3), Mark(E, 6), changes)
    assert await found(index, "alpha") == [] and await found(index, "omega") == [("r", 1)]
    assert await found(index, "beta") == [("r", 2)] and await found(index, "hijacked") == []
    assert await found(index, "gamma") == []
    assert await index.apply("r", Mark(E, 6), Mark(E, 6, 2), [])
    assert await found(index, "omega") == [] and await found(index, "beta") == [("r", 2)]
    assert await index.apply("r", Mark(E, 6, 2), Mark("epoch-2", 1), [text(1, "fresh start")], reset=True)
    assert await found(index, "beta") == [] and await found(index, "fresh") == [("r", 1)]
    assert await index.apply(
        "r",
        Mark("epoch-2", 1),
        Mark("epoch-2", 2),
        [text(2, "insert, then edit"), Edit(2, "alice", "edited in the same page")],
    )
    assert await found(index, "insert") == [] and await found(index, "edited") == [("r", 2)]
    again = [Edit(2, "alice", "edited in the same page"), Edit(2, "alice", "edited twice"), Edit(1, "alice", "fresh")]
    assert await index.apply("r", Mark("epoch-2", 2), Mark("epoch-2", 5), again)
    assert await found(index, "twice") == [("r", 2)] and await found(index, "fresh") == [("r", 1)]
    assert await found(index, "page") == [] and await found(index, "start") == []
    await consistent(index)


async def test_the_query_language_on_the_engine(index: SearchIndex) -> None:
    """[R-SEARCH-3] Words match case- and accent-blind, phrases in order, prefixes by their start; operators and
    punctuation are words or nothing, never the engine's syntax (R-SEARCH-4)."""
    bodies = ["Café au lait", "lait au café", "The NEAR future", "body: of work", "prefixes everywhere", "x AND y"]
    assert await index.apply("r", None, Mark(E, 6), [text(i + 1, b) for i, b in enumerate(bodies)])
    assert await found(index, "CAFE") == [("r", 2), ("r", 1)]
    assert await found(index, '"cafe au lait"') == [("r", 1)]
    assert await found(index, '"lait au"') == [("r", 2)]
    assert await found(index, "pref*") == [("r", 5)]
    assert await found(index, '"near fut*"') == [("r", 3)]
    assert await found(index, "NEAR") == [("r", 3)]
    assert await found(index, "body:work") == []  # "body work" as a phrase: not in that order
    assert await found(index, "body: work") == [("r", 4)]
    assert await found(index, "x AND y") == [("r", 6)]
    hostile = [
        "NEAR(cafe lait, 2)",
        "body:cafe OR rid:r1",
        '"unbalanced',
        "cafe) OR (1=1",
        "'; DROP TABLE docs; --",
        "rid : r1",
        "{body rid}: cafe",
        "cafe^",
        "-cafe",
        "cafe NOT lait",
        "\\'\\\\ cafe",
        "café*",
        "\U0001d520\U0001d51e\U0001d523\U0001d522",
        "\x00cafe",
    ]
    for query in hostile:
        try:
            parsed = parse(query)
        except ProtocolError:
            continue  # 4400: no word in it
        await index.search(["r"], parsed, 20, None)  # results or none, never an engine error
    for bad in ["", "   ", "***", '""', "a*", "x" * 257, " ".join(f"w{i}" for i in range(17))]:
        with pytest.raises(ProtocolError):
            parse(bad)


async def test_many_rooms_are_searched_alike(index: SearchIndex) -> None:
    """[R-SEARCH-2] A user in hundreds of rooms: the same answer as room by room (the SQLite index then filters
    the rows instead of ANDing the rooms into the query)."""
    rooms = [f"room-{i}" for i in range(150)]
    for i, room in enumerate(rooms):
        body = "needle in a haystack" if i % 10 == 0 else "just hay"
        assert await index.apply(room, None, Mark(E, 1), [text(1, body, ts=TS + i)])
    hits = (await index.search(rooms, parse("needle"), 100, None)).hits
    assert [h.room for h in hits] == [rooms[i] for i in range(140, -1, -10)]
    assert [h.room for h in (await index.search(rooms[:5], parse("needle"), 100, None)).hits] == ["room-0"]


async def test_an_erased_text_leaves_the_engine_after_compaction(opened: Opened, index: SearchIndex) -> None:
    """[R-SEARCH-8] A removal marked as an erasure is found by no query at once, and after ``compact`` no byte of
    the engine's storage holds the text or its words (the index's files; PostgreSQL's rows and index files),
    while a kept text stays; a compaction with nothing to do does nothing."""
    secret = "qqzyxsecretword"
    assert await index.apply("r", None, Mark(E, 2), [text(1, f"my password is {secret}"), text(2, "kept words")])
    assert await index.compact() is False
    assert secret.encode() in await opened.raw()  # the check below could fail: the bytes are there to find
    assert await index.apply("r", Mark(E, 2), Mark(E, 3), [Remove(1, erase=True)])
    assert await found(index, secret) == []
    again = await opened.reopen(index)  # the need to compact outlives a restart
    assert await again.compact() is True
    raw = await opened.raw()
    assert secret.encode() not in raw and b"password" not in raw
    assert b"kept" in raw and await found(again, "kept") == [("r", 2)]
    assert await again.compact() is False
    await consistent(again)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (as tests/integration/test_full_disk.py mounts one: the suite runs as root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_the_sqlite_index_waits_on_a_nearly_full_disk(small_disk: Path) -> None:
    """The SQLite index grows only while its disk has 64 MiB free: below, a change is refused (4503, which the
    indexer retries with backoff) and nothing is written, so the store sharing the disk keeps the space left; a
    step that only moves a mark still goes, and searching goes on."""
    index = await SqliteIndex(small_disk / "search.sqlite3").open()
    try:
        with pytest.raises(Unavailable, match="free on its disk"):
            await index.apply("r", None, Mark(E, 1), [text(1, "not now")])
        assert await index.marks() == {}
        assert await index.apply("r", None, Mark(E, 1), [])  # a room with nothing to index: its mark only
        assert await found(index, "now") == []
    finally:
        await index.aclose()
