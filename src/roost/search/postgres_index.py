"""PostgresIndex: the search index in PostgreSQL full-text search (a ``tsvector`` column with a GIN index).

Where: the PostgreSQL store's own database and schema by default (tables ``search_rooms``, ``search_docs``,
``search_state`` beside the store's), or any PostgreSQL a ``--search postgresql://...`` URL names (``?schema=``
as for the store). Every node of a deployment uses the same index: ``shared``, so one node indexes at a time
(the indexer's lease) while every node answers queries from it.

* ``search_docs`` holds each indexed text message: its text (the latest edit's) and ``words``, the tsvector of
  its folded words (query.py ``words``, joined by spaces) in the ``simple`` configuration: no stemming and no
  stop words, the same tokens SQLite's FTS5 index holds, so both engines find the same messages.
* ``docid`` orders by time as in the SQLite index (``ts`` in ms times 1024, plus a counter), and is the cursor
  of the next page; a query reads ``ORDER BY docid DESC LIMIT n`` over the user's rooms, and the planner picks
  the GIN index (rare words) or the primary key walked backwards (common words), with a plan made for each
  query's words (``plan_cache_mode``) from the statistics autovacuum keeps.
* A room's mark is a row of ``search_rooms``, locked (``FOR UPDATE``) and compared with what the indexer
  expects in the transaction that writes the documents: exactly once, whoever races.
* Erasure: ``compact`` runs ``VACUUM`` on ``search_docs`` (the deleted row versions leave the heap, and their
  entries the GIN index) and rebuilds the GIN index (``REINDEX ... CONCURRENTLY``), which a vacuum leaves holding
  the erased words as keys. PostgreSQL's WAL, archives and base backups keep what it wrote, as for the store
  (docs/backends.md, R-ERASE-4).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import asyncpg

from ..backends.boundary import engine_boundary
from ..protocol.errors import Unavailable, UsageError
from .port import SLOT, Change, Edit, Found, Hit, Insert, Mark, Remove, Update, docid_base
from .query import Query, words

__all__ = ["PostgresIndex"]

if TYPE_CHECKING:
    Conn = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS search_rooms (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room text NOT NULL UNIQUE,
    epoch text NOT NULL,
    cursor bigint NOT NULL,
    first bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS search_docs (
    docid bigint PRIMARY KEY,
    room_id bigint NOT NULL,
    seq bigint NOT NULL,
    sender text NOT NULL,
    ts bigint NOT NULL,
    body text NOT NULL,
    words tsvector NOT NULL,
    UNIQUE (room_id, seq)
);
CREATE INDEX IF NOT EXISTS search_docs_words ON search_docs USING gin (words);
CREATE INDEX IF NOT EXISTS search_docs_room ON search_docs (room_id, docid);
CREATE TABLE IF NOT EXISTS search_state (
    key text PRIMARY KEY,
    value bigint NOT NULL
);
"""
_RELATIONS: Final = tuple(re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_COMPACT_DUE: Final = "compact_due"
_QUERY: Final = """
SELECT docid, room_id, seq, sender, ts, body FROM search_docs
WHERE room_id = ANY($1::bigint[]) AND words @@ to_tsquery('simple', $2) AND docid < $3 ORDER BY docid DESC LIMIT $4
"""
"""The planner reads the newest documents backwards and stops at ``limit`` matches (a word common in the user's
rooms), or takes the GIN index's matches and sorts them (a rare one): measured on 1 M documents, this one query
with a custom plan beat reading each room apart (LATERAL) for users in 1 to 500 rooms (docs/benchmarks.md)."""


@contextlib.asynccontextmanager
async def _translate() -> AsyncIterator[None]:
    async with engine_boundary("postgres-search"):
        yield


class PostgresIndex:
    shared = True

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.schema = options.pop("schema", "roost")
        options.pop("keep", None)  # a store URL's retention option: not the index's
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise UsageError(f"invalid schema name {self.schema!r}")
        query = "&".join(f"{k}={v}" for k, v in options.items())
        self.dsn = parts._replace(scheme="postgresql", query=query).geturl()
        self._pool: asyncpg.Pool[Any] | None = None

    async def open(self) -> PostgresIndex:
        async with _translate():
            conn = await asyncpg.connect(self.dsn)
            try:
                found = await conn.fetchval(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = $1 AND c.relname = ANY($2::text[])",
                    self.schema,
                    list(_RELATIONS),
                )
                if found != len(_RELATIONS):  # DDL only when something is missing: it takes locks (postgres.py)
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    await conn.execute(f"SET lock_timeout = '10s'; SET search_path TO {self.schema}; {_SCHEMA}")
            finally:
                await conn.close()
            # Plans per query's words, never a generic one: whether a word is rare or common decides the plan.
            settings = {"search_path": self.schema, "plan_cache_mode": "force_custom_plan"}
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4, server_settings=settings)
        return self

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise Unavailable("search index is closed")
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # ---- the indexer's side ---------------------------------------------------------------------------------

    async def marks(self) -> dict[str, Mark]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT room, epoch, cursor, first FROM search_rooms")
        return {r["room"]: Mark(r["epoch"], r["cursor"], r["first"]) for r in rows}

    async def apply(
        self, room: str, expected: Mark | None, mark: Mark, changes: Sequence[Change], *, reset: bool = False
    ) -> bool:
        return (await self.apply_many([Update(room, expected, mark, changes, reset)]))[0]

    async def apply_many(self, updates: Sequence[Update]) -> list[bool]:
        async with _translate(), self.pool.acquire() as conn, conn.transaction():
            return [await self._apply(conn, update) for update in updates]

    async def _apply(self, conn: Conn, update: Update) -> bool:
        room, expected, mark = update.room, update.expected, update.mark
        row = await conn.fetchrow("SELECT id, epoch, cursor, first FROM search_rooms WHERE room = $1 FOR UPDATE", room)
        stored = None if row is None else Mark(row["epoch"], row["cursor"], row["first"])
        if stored != expected:
            return False  # nothing written for this room yet
        if row is None:
            room_id = await conn.fetchval(
                "INSERT INTO search_rooms (room, epoch, cursor, first) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (room) DO NOTHING RETURNING id",
                room,
                mark.epoch,
                mark.cursor,
                mark.first,
            )
            if room_id is None:  # another indexer added the room meanwhile
                raise Unavailable(f"search index: room {room!r} added concurrently")
        else:
            room_id = row["id"]
            await conn.execute(
                "UPDATE search_rooms SET epoch = $2, cursor = $3, first = $4 WHERE id = $1",
                room_id,
                mark.epoch,
                mark.cursor,
                mark.first,
            )
        if update.reset:
            await conn.execute("DELETE FROM search_docs WHERE room_id = $1", room_id)
        elif expected is not None and mark.first > expected.first:
            await conn.execute("DELETE FROM search_docs WHERE room_id = $1 AND seq < $2", room_id, mark.first)
        await self._changes(conn, room_id, update.changes)
        return True

    async def _changes(self, conn: Conn, room_id: int, changes: Sequence[Change]) -> None:
        run: list[Insert] = []
        erased = False
        for change in [*changes, None]:
            if isinstance(change, Insert):
                run.append(change)
                continue
            if run:
                await self._insert(conn, room_id, run)
                run = []
            if isinstance(change, Edit):
                await conn.execute(
                    "UPDATE search_docs SET body = $4, words = to_tsvector('simple', $5)"
                    " WHERE room_id = $1 AND seq = $2 AND sender = $3 AND body != $4",
                    room_id,
                    change.target,
                    change.sender,
                    change.body,
                    " ".join(words(change.body)),
                )
            elif isinstance(change, Remove):
                await conn.execute("DELETE FROM search_docs WHERE room_id = $1 AND seq = $2", room_id, change.target)
                erased = erased or change.erase
        if erased:
            await conn.execute(
                "INSERT INTO search_state (key, value) VALUES ($1, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = search_state.value + 1",
                _COMPACT_DUE,
            )

    async def _insert(self, conn: Conn, room_id: int, docs: list[Insert]) -> None:
        """One query for the highest docid of each millisecond slot the documents fall in, then one batch."""
        have = {
            r["seq"]
            for r in await conn.fetch(
                "SELECT seq FROM search_docs WHERE room_id = $1 AND seq = ANY($2::bigint[])",
                room_id,
                [d.seq for d in docs],
            )
        }
        docs = [d for d in docs if d.seq not in have]
        if not docs:
            return
        slots = sorted({docid_base(d.ts) for d in docs})
        rows = await conn.fetch(
            "SELECT s.base, (SELECT max(docid) FROM search_docs WHERE docid >= s.base AND docid < s.base + $2) AS top"
            " FROM unnest($1::bigint[]) AS s(base)",
            slots,
            SLOT,
        )
        free = {r["base"]: r["base"] if r["top"] is None else r["top"] + 1 for r in rows}
        values = []
        for d in docs:
            base = docid_base(d.ts)
            docid = free[base]
            while docid >= base + SLOT and await conn.fetchval("SELECT 1 FROM search_docs WHERE docid = $1", docid):
                docid += 1  # a full slot spills into the next millisecond's, past what is there
            free[base] = docid + 1
            values.append((docid, room_id, d.seq, d.sender, d.ts, d.body, " ".join(words(d.body))))
        await conn.executemany(
            "INSERT INTO search_docs (docid, room_id, seq, sender, ts, body, words)"
            " VALUES ($1, $2, $3, $4, $5, $6, to_tsvector('simple', $7))",
            values,
        )

    async def compact(self) -> bool:
        async with _translate(), self.pool.acquire() as conn:
            due = await conn.fetchval("SELECT value FROM search_state WHERE key = $1", _COMPACT_DUE)
            if due is None:
                return False
            await conn.execute("VACUUM (INDEX_CLEANUP ON) search_docs")
            await conn.execute("REINDEX INDEX CONCURRENTLY search_docs_words")
            # Only the erasures seen before the vacuum are done: one applied meanwhile leaves the flag set.
            await conn.execute("DELETE FROM search_state WHERE key = $1 AND value = $2", _COMPACT_DUE, due)
        return True

    # ---- queries --------------------------------------------------------------------------------------------

    async def search(self, rooms: Sequence[str], query: Query, limit: int, before: int | None) -> Found:
        if not rooms or limit <= 0:
            return Found([], None)
        bound = (1 << 62) if before is None else before
        async with _translate(), self.pool.acquire() as conn:
            names = {
                r["id"]: r["room"]
                for r in await conn.fetch(
                    "SELECT id, room FROM search_rooms WHERE room = ANY($1::text[])", list(dict.fromkeys(rooms))
                )
            }
            if not names:
                return Found([], None)
            rows = await conn.fetch(_QUERY, list(names), query.tsquery(), bound, limit)
        hits = [Hit(names[r["room_id"]], r["seq"], r["sender"], r["ts"], r["body"]) for r in rows]
        return Found(hits, rows[-1]["docid"] if len(rows) == limit else None)
