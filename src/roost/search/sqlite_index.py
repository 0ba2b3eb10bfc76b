"""SqliteIndex: the search index in its own SQLite file, ``search.sqlite3`` in the data directory, with FTS5.

Why a file of its own, not a table in the embedded store's database: SQLite has one writer per database, and the
store's writer is the send path's group commit; index writes there would queue appends behind them and grow the
WAL each append's fsync flushes. A second file has its own lock and WAL, so indexing never delays a send. It is
also what the Redis, NATS and Kafka stores use by default: each node indexes every room into its own file.

* ``docs`` holds each indexed text message (the latest edit's text), keyed by ``docid``, and ``fts`` is an FTS5
  table over it (``content='docs'``: the text is stored once, FTS5 holds the tokens), told of every change by the
  statement that makes it.
  ``docid`` is the message's ``ts`` in ms times 1024 plus a counter, so FTS5's own order (by rowid) is time
  order: "newest first" reads the doclist backwards and stops at ``limit``, never sorting the matches.
* Membership is in the query: each document's room id is a token of the column ``rid`` (``r17``), and the
  query ANDs the user's rooms (``rid : ("r1" OR "r2")``) with the words when the user is in few rooms, so FTS5
  skips other rooms' documents in the doclists; beyond ``_ROOMS_IN_MATCH`` rooms the rooms are a filter on the
  joined rows instead (an OR of a thousand doclists costs more than reading the matches).
* ``rooms`` holds each room's mark (epoch, cursor, first), written in the transaction of the rows it
  describes. ``synchronous=NORMAL``: a commit is atomic but a power cut may undo the last ones, mark and rows
  together, and the indexer applies them again from the store.
* It grows only while its disk has ``RESERVE_BYTES`` free: below that, indexing waits (4503 inside, retried with
  backoff by the indexer), leaving the space to the store that shares the data directory.
* Erasure: the writer has ``secure_delete`` on (freed cells and pages are zeroed), and ``compact`` runs FTS5's
  ``optimize`` (merging every segment into one drops the erased tokens that older segments still held) and
  empties the WAL (``wal_checkpoint(TRUNCATE)``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

from .. import durable
from ..protocol.errors import Unavailable
from .port import SLOT, Change, Edit, Found, Hit, Insert, Mark, Remove, Update, docid_base
from .query import Query

__all__ = ["SqliteIndex"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rooms (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL UNIQUE,
    epoch TEXT NOT NULL,
    cursor INTEGER NOT NULL,
    first INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
    docid INTEGER PRIMARY KEY,
    room_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    rid TEXT GENERATED ALWAYS AS ('r' || room_id) VIRTUAL
);
CREATE UNIQUE INDEX IF NOT EXISTS docs_seq ON docs (room_id, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    body, rid, content='docs', content_rowid='docid', columnsize=0, tokenize='unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

RESERVE_BYTES: Final = 64 * 1024 * 1024
"""Indexing waits while the disk holding the index has less free than this: the space left is the store's (they
share the data directory by default), so a full disk's recovery is not eaten by an index catching up."""
_ROOMS_IN_MATCH: Final = 64
"""Up to this many rooms, membership is a term of the FTS5 query; beyond, a filter on the rows it returns."""
_COMPACT_DUE: Final = "compact_due"
_INSERT: Final = """
INSERT INTO docs (docid, room_id, seq, sender, ts, body)
VALUES (coalesce((SELECT max(docid) + 1 FROM docs WHERE docid >= ?1 AND docid < ?1 + 1024), ?1), ?2, ?3, ?4, ?5, ?6)
"""
"""A document under the next free docid of its millisecond's slot (``docid_base``), found by the insert itself."""
_FTS_ADD: Final = "INSERT INTO fts (rowid, body, rid) SELECT docid, body, rid FROM docs WHERE "
_FTS_DROP: Final = "INSERT INTO fts (fts, rowid, body, rid) SELECT 'delete', docid, body, rid FROM docs WHERE "
"""FTS5 is told of each change of ``docs`` by the statement that makes it (not by triggers: measured, a trigger
doubled the cost of an insert); a removal names the old text, which FTS5 needs to find the tokens to drop."""
R = TypeVar("R")


def _connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    if writer:
        conn.execute("PRAGMA secure_delete=ON")
    return conn


class SqliteIndex:
    shared = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-search-write")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="roost-search-read")
        self._local = threading.local()
        self._readers_opened: list[sqlite3.Connection] = []
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def open(self) -> SqliteIndex:
        durable.make_dirs(self.path.parent)

        def setup() -> None:
            conn = _connect(self.path, writer=True)
            conn.executescript(_SCHEMA)
            self._conn = conn

        await self._write(setup, opening=True)
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._writer, close)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        for conn in self._readers_opened:
            conn.close()

    # ---- threads --------------------------------------------------------------------------------------------

    async def _write(self, work: Callable[[], R], *, opening: bool = False) -> R:
        if self._closed or (self._conn is None and not opening):
            raise Unavailable("search index is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, work)
        except sqlite3.Error as exc:
            raise Unavailable(f"search index: {exc}") from exc

    async def _read(self, query: Callable[[sqlite3.Connection], R]) -> R:
        if self._closed:
            raise Unavailable("search index is closed")

        def run() -> R:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = _connect(self.path, writer=False)
                self._readers_opened.append(conn)
            return query(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise Unavailable(f"search index: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise Unavailable("search index is closed")
        return self._conn

    # ---- the indexer's side ---------------------------------------------------------------------------------

    async def marks(self) -> dict[str, Mark]:
        rows = await self._read(lambda c: c.execute("SELECT room, epoch, cursor, first FROM rooms").fetchall())
        return {room: Mark(epoch, cursor, first) for room, epoch, cursor, first in rows}

    async def apply(
        self, room: str, expected: Mark | None, mark: Mark, changes: Sequence[Change], *, reset: bool = False
    ) -> bool:
        return (await self.apply_many([Update(room, expected, mark, changes, reset)]))[0]

    async def apply_many(self, updates: Sequence[Update]) -> list[bool]:
        return await self._write(lambda: self._apply_many(updates))

    def _room_left(self) -> None:
        """Writer thread: refuse to grow the index on a nearly full disk (``RESERVE_BYTES``)."""
        disk = os.statvfs(self.path.parent)
        if disk.f_bavail * disk.f_frsize < RESERVE_BYTES:
            raise Unavailable(f"search index: under {RESERVE_BYTES >> 20} MiB free on its disk: indexing waits")

    def _apply_many(self, updates: Sequence[Update]) -> list[bool]:
        conn = self._db
        if any(u.changes for u in updates):
            self._room_left()
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = [self._apply(conn, update) for update in updates]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return done

    def _apply(self, conn: sqlite3.Connection, update: Update) -> bool:
        room, expected, mark = update.room, update.expected, update.mark
        row = conn.execute("SELECT id, epoch, cursor, first FROM rooms WHERE room = ?", (room,)).fetchone()
        stored = None if row is None else Mark(row[1], row[2], row[3])
        if stored != expected:
            return False  # nothing written for this room yet
        if row is None:
            room_id = conn.execute(
                "INSERT INTO rooms (room, epoch, cursor, first) VALUES (?, ?, ?, ?) RETURNING id",
                (room, mark.epoch, mark.cursor, mark.first),
            ).fetchone()[0]
        else:
            room_id = row[0]
            conn.execute(
                "UPDATE rooms SET epoch = ?, cursor = ?, first = ? WHERE id = ?",
                (mark.epoch, mark.cursor, mark.first, room_id),
            )
        if update.reset:
            self._drop(conn, "room_id = ?", (room_id,))
        elif expected is not None and mark.first > expected.first:
            self._drop(conn, "room_id = ? AND seq < ?", (room_id, mark.first))
        erased = False
        inserts: list[Insert] = []
        for change in [*update.changes, None]:
            if isinstance(change, Insert):
                inserts.append(change)
                continue
            if inserts:
                self._insert_all(conn, room_id, inserts)
                inserts = []
            if isinstance(change, Edit):
                where = "room_id = ? AND seq = ? AND sender = ? AND body != ?"
                params = (room_id, change.target, change.sender, change.body)
                conn.execute(_FTS_DROP + where, params)
                if conn.execute(f"UPDATE docs SET body = ? WHERE {where}", (change.body, *params)).rowcount:
                    conn.execute(_FTS_ADD + "room_id = ? AND seq = ?", (room_id, change.target))
            elif isinstance(change, Remove):
                self._drop(conn, "room_id = ? AND seq = ?", (room_id, change.target))
                erased = erased or change.erase
        if erased:
            conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, '1')", (_COMPACT_DUE,))
        return True

    @staticmethod
    def _drop(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> None:
        conn.execute(_FTS_DROP + where, params)
        conn.execute(f"DELETE FROM docs WHERE {where}", params)

    def _insert_all(self, conn: sqlite3.Connection, room_id: int, docs: list[Insert]) -> None:
        """One statement for the run's rows, each docid found by its insert (``_INSERT``), then one for their tokens;
        only if a docid collides (a millisecond with over ``SLOT`` documents) or a seq is indexed already is the
        run inserted one by one. The run's seqs are above every seq indexed before it (a page is applied in order),
        so its range names its rows alone."""
        conn.execute("SAVEPOINT run")
        try:
            conn.executemany(_INSERT, [(docid_base(d.ts), room_id, d.seq, d.sender, d.ts, d.body) for d in docs])
            conn.execute(_FTS_ADD + "room_id = ? AND seq >= ? AND seq <= ?", (room_id, docs[0].seq, docs[-1].seq))
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO run")
            for doc in docs:
                self._insert(conn, room_id, doc)
        conn.execute("RELEASE run")

    @staticmethod
    def _insert(conn: sqlite3.Connection, room_id: int, doc: Insert) -> None:
        if conn.execute("SELECT 1 FROM docs WHERE room_id = ? AND seq = ?", (room_id, doc.seq)).fetchone():
            return  # applied already (a page read again after its mark moved: impossible, but never twice)
        base = docid_base(doc.ts)
        top = conn.execute("SELECT max(docid) FROM docs WHERE docid >= ? AND docid < ?", (base, base + SLOT))
        docid = base if (found := top.fetchone()[0]) is None else found + 1
        while conn.execute("SELECT 1 FROM docs WHERE docid = ?", (docid,)).fetchone():
            docid += 1
        conn.execute(
            "INSERT INTO docs (docid, room_id, seq, sender, ts, body) VALUES (?, ?, ?, ?, ?, ?)",
            (docid, room_id, doc.seq, doc.sender, doc.ts, doc.body),
        )
        conn.execute(_FTS_ADD + "docid = ?", (docid,))

    async def compact(self) -> bool:
        return await self._write(self._compact)

    def _compact(self) -> bool:
        conn = self._db
        if conn.execute("SELECT 1 FROM state WHERE key = ?", (_COMPACT_DUE,)).fetchone() is None:
            return False
        self._room_left()  # a merge of every segment writes the index again before it frees the old one
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO fts (fts) VALUES ('optimize')")
            conn.execute("DELETE FROM state WHERE key = ?", (_COMPACT_DUE,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:  # a reader holds old pages: try again at the next compaction
            conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, '1')", (_COMPACT_DUE,))
        return True

    # ---- queries --------------------------------------------------------------------------------------------

    async def search(self, rooms: Sequence[str], query: Query, limit: int, before: int | None) -> Found:
        if not rooms or limit <= 0:
            return Found([], None)
        return await self._read(lambda conn: self._search(conn, rooms, query, limit, before))

    def _search(
        self, conn: sqlite3.Connection, rooms: Sequence[str], query: Query, limit: int, before: int | None
    ) -> Found:
        conn.execute("BEGIN")
        try:
            names: dict[int, str] = {}
            wanted = list(dict.fromkeys(rooms))
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for room_id, room in conn.execute(f"SELECT id, room FROM rooms WHERE room IN ({marks})", chunk):
                    names[room_id] = room
            if not names:
                return Found([], None)
            bound = (1 << 62) if before is None else before
            select = (
                "SELECT d.docid, d.room_id, d.seq, d.sender, d.ts, d.body FROM fts JOIN docs d ON d.docid = fts.rowid"
            )
            if len(names) <= _ROOMS_IN_MATCH:
                rids = " OR ".join(f'"r{room_id}"' for room_id in names)
                rows = conn.execute(
                    f"{select} WHERE fts MATCH ? AND fts.rowid < ? ORDER BY fts.rowid DESC LIMIT ?",
                    (f"{query.fts5()} AND rid : ({rids})", bound, limit),
                ).fetchall()
            else:
                ids = ",".join(str(room_id) for room_id in names)  # integers from the index itself
                rows = conn.execute(
                    f"{select} WHERE fts MATCH ? AND fts.rowid < ? AND d.room_id IN ({ids})"
                    " ORDER BY fts.rowid DESC LIMIT ?",
                    (query.fts5(), bound, limit),
                ).fetchall()
        finally:
            conn.execute("COMMIT")
        hits = [Hit(names[r[1]], r[2], r[3], r[4], r[5]) for r in rows]
        return Found(hits, rows[-1][0] if len(rows) == limit else None)
