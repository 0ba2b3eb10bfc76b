"""SqliteStore: the embedded store and directory, one SQLite file in WAL mode.

Why it is shaped this way:

* One writer thread owns the only write connection. Appends queue up while a transaction commits,
  and the next transaction takes all of them (group commit): one fsync per batch, not per message.
  The writer is the only place seqs are assigned, so the per-room sequence is dense by construction.
* ``synchronous=FULL``: a commit is on disk (WAL fsynced) before any append in it is resolved, so an
  acked message survives ``kill -9`` and a power cut. NORMAL would survive ``kill -9`` only.
* Reads run on a small pool of reader threads with their own connections; WAL gives each read one
  consistent snapshot, so a page and its position always agree.
* The data directory is locked, so one process owns the file; rooms and membership are cached in
  memory and changed only through the writer.
* Erasure (``erase``) rewrites a message's row in place with ``secure_delete`` on (the writer's connection
  always has it: SQLite then zeroes whatever it frees, rows and pages, so no stale copy of a body outlives
  its row), and the commit is followed by a ``wal_checkpoint(TRUNCATE)``: the WAL, which still holds the
  page images written before, is folded into the database and emptied before ``erase`` returns.
* Leases are rows of ``leases``, taken and renewed by one upsert in the writer's transaction, so they outlive
  a restart like everything else in the file (a crashed node's lease runs out rather than vanishing). Expiry is
  this process's wall clock: the only one that opens the file.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from .. import durable
from ..ports import Appended, Redaction
from ..protocol.errors import Conflict, NotFound, RoostError, Unavailable, UsageError
from ..protocol.types import Draft, Message, Page, Position
from .idempotency import body_digest

__all__ = ["SqliteLogReader", "SqliteStore"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    head INTEGER NOT NULL DEFAULT 0,
    first INTEGER NOT NULL DEFAULT 1,
    owner TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    joined_ms INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    cmid TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency ON messages (room, sender, cmid);
CREATE INDEX IF NOT EXISTS messages_ts ON messages (room, ts);
CREATE TABLE IF NOT EXISTS read_markers (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_attrs (
    room TEXT NOT NULL,
    ns TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (room, ns, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trimmed_ids (
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    cmid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (room, sender, cmid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
"""

log = logging.getLogger(__name__)

_LEASE: Final = """
INSERT INTO leases (name, holder, fence, expires_ms) VALUES (:name, :holder, 1, :now + :ttl)
ON CONFLICT (name) DO UPDATE SET
    fence = CASE WHEN holder = excluded.holder AND expires_ms > :now THEN fence ELSE fence + 1 END,
    holder = excluded.holder,
    expires_ms = excluded.expires_ms
WHERE holder = excluded.holder OR expires_ms <= :now
RETURNING fence
"""
"""Take a free name, renew one's own, or answer no row while another holder's lease runs: one statement.
A renewal keeps the token; every other grant (first, after expiry, after release) takes the next one."""

_MAX_BATCH: Final = 512
_STOP: Final = object()
R = TypeVar("R")


def _connect(path: Path, *, writer: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    if writer:
        # Zero what a write frees (cells, freelist pages): an erased body leaves no copy in the file. Appends
        # free nothing, so the send path pays nothing for it; trims and erasures write zeroes (R-ERASE-2).
        conn.execute("PRAGMA secure_delete=ON")
    return conn


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Op:
    """One queued write: ``apply(conn)`` runs inside the batch transaction; its result or error is kept."""

    __slots__ = ("apply", "future", "outcome")

    def __init__(self, apply: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]) -> None:
        self.apply = apply
        self.future = future
        self.outcome: Any = None


class SqliteStore:
    """Implements ``Store``, ``Directory`` and ``Leases`` over one SQLite database in ``data_dir``."""

    def __init__(self, data_dir: str | os.PathLike[str], *, max_batch: int = _MAX_BATCH) -> None:
        self.data_dir = Path(data_dir)
        self.max_batch = max_batch
        self.path = self.data_dir / "roost.sqlite3"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="roost-sqlite-read")
        self._local = threading.local()
        self._lock_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Caches written by the writer thread only. The loop's single lookups (``in``, ``get``) are atomic
        # under the GIL, but iterating a dict or set that another thread resizes raises ("dictionary changed
        # size during iteration"): every change of a container's size and every iteration on the loop holds
        # ``_cache_lock``, for the few microseconds the change or the copy takes (never across SQL).
        self._cache_lock = threading.Lock()
        self._rooms: dict[str, str] = {}
        self._heads: dict[str, int] = {}
        self._members: dict[str, set[str]] = {}
        self._attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._undo: list[Callable[[], None]] = []
        self._closed = False
        self._full_since: float | None = None
        """Writer thread: when the disk filled up (None while there is room); see ``_disk_full``."""
        self._refused_full = 0
        self._checkpoint_due = False
        """Writer thread: an erasure committed since the last checkpoint that emptied the WAL (``_fold_wal``)."""

    # ---- lifecycle --------------------------------------------------------------------------

    async def open(self) -> SqliteStore:
        self._loop = asyncio.get_running_loop()
        durable.make_dirs(self.data_dir)  # SQLite syncs its files' names in it, not its own name in its parent
        fd = os.open(self.data_dir / "roost.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # Not retried: another node owns this directory until it stops (a mistake to fix, not to wait out).
            raise UsageError(f"data directory {self.data_dir} is in use by another process") from None
        self._lock_fd = fd
        conn = _connect(self.path, writer=True)
        conn.executescript(_SCHEMA)
        for room, epoch, head in conn.execute("SELECT room, epoch, head FROM rooms"):
            self._rooms[room] = epoch
            self._heads[room] = head
        for room, user in conn.execute("SELECT room, user FROM members"):
            self._members.setdefault(room, set()).add(user)
        for room, ns, key, value in conn.execute("SELECT room, ns, key, value FROM room_attrs"):
            self._attrs.setdefault((room, ns), {})[key] = value
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="roost-sqlite-write")
        self._writer.daemon = True
        self._writer.start()
        return self

    async def durability_warnings(self) -> list[str]:
        """Nothing this store can see about its own durability settings is unsafe (docs/backends.md)."""
        return []

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
        self._readers.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- the writer -------------------------------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_Op] = [first]
                stop = False
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        heads_before = dict(self._heads)
        undo: list[Callable[[], None]] = []
        self._undo = undo
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    op.outcome = op.apply(conn)
                except RoostError as exc:
                    op.outcome = exc
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._cache_lock:
                self._heads = heads_before
                for fn in reversed(undo):
                    fn()
            failure = Unavailable(f"sqlite write failed: {exc}")
            for op in batch:
                op.outcome = failure
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                self._disk_full(len(batch))
        else:
            if self._full_since is not None:
                self._room_again(conn)
            if self._checkpoint_due:
                self._fold_wal(conn)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_resolve, batch)

    def _disk_full(self, refused: int) -> None:
        """Writer thread. One line when the disk fills; the refusals are counted, not logged each."""
        if self._full_since is None:
            self._full_since = time.monotonic()
            log.warning(
                "sqlite: the disk under %s is full: writes are refused (4503) until space returns", self.data_dir
            )
        self._refused_full += refused

    def _room_again(self, conn: sqlite3.Connection) -> None:
        """Writer thread, after the first commit that fit again: fold the WAL, which grew while nothing could
        be checkpointed, back into the database and truncate it, so the space it held is free again."""
        wal = self.path.with_name(self.path.name + "-wal")
        before = wal.stat().st_size if wal.exists() else 0
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:  # readers in the way, or still no room: the next commit tries again
            log.warning("sqlite: writes resumed, but the WAL checkpoint failed: %s", exc)
            return
        after = wal.stat().st_size if wal.exists() else 0
        log.warning(
            "sqlite: writes resumed after %.1f s of a full disk (%d writes refused); WAL folded from %d to %d bytes",
            time.monotonic() - (self._full_since or time.monotonic()),
            self._refused_full,
            before,
            after,
        )
        self._full_since = None
        self._refused_full = 0

    def _fold_wal(self, conn: sqlite3.Connection) -> None:
        """Writer thread, after a commit with an erasure: copy the WAL into the database and truncate it, so the
        page images that still held the erased bodies leave the WAL before ``erase`` answers (R-ERASE-2). Readers
        in the way make it wait (``busy_timeout``); if it still cannot finish, the next commit tries again."""
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("sqlite: the checkpoint after an erasure failed (retried after the next write): %s", exc)
            return
        if busy:
            log.warning("sqlite: the checkpoint after an erasure was blocked by readers (retried after the next write)")
            return
        self._checkpoint_due = False

    async def _write(self, apply: Callable[[sqlite3.Connection], R]) -> R:
        if self._closed or self._loop is None:
            raise Unavailable("store is closed")
        future: asyncio.Future[R] = self._loop.create_future()
        self._queue.put(_Op(apply, future))
        return await future

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        return await self._write(lambda conn: self._append(conn, draft))

    def _append(self, conn: sqlite3.Connection, draft: Draft) -> Appended:
        room = draft.room
        if room not in self._rooms:
            raise NotFound(f"no room {room!r}")
        row = conn.execute(
            "SELECT seq, body, ts, kind FROM messages WHERE room = ? AND sender = ? AND cmid = ?",
            (room, draft.sender, draft.cmid),
        ).fetchone()
        if row is not None and (row[1], row[3]) == (draft.body, draft.kind):
            seq, body, ts, kind = row
            return Appended(Message(room, seq, draft.cmid, draft.sender, body, ts, kind), duplicate=True)
        trimmed = conn.execute(
            "SELECT seq, ts, digest FROM trimmed_ids WHERE room = ? AND sender = ? AND cmid = ?",
            (room, draft.sender, draft.cmid),
        ).fetchone()
        if trimmed is None and row is not None:
            raise Conflict(f"client message id {draft.cmid!r} was used for another message")
        if trimmed is not None:  # trimmed, or erased (its row holds the replacement): the digest decides
            if trimmed[2] != body_digest(draft.body, draft.kind):
                raise Conflict(f"client message id {draft.cmid!r} was used for another message")
            message = Message(room, trimmed[0], draft.cmid, draft.sender, draft.body, trimmed[1], draft.kind)
            return Appended(message, duplicate=True)
        seq = self._heads[room] + 1
        ts = _now_ms()
        conn.execute(
            "INSERT INTO messages (room, seq, sender, cmid, body, ts, kind) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (room, seq, draft.sender, draft.cmid, draft.body, ts, draft.kind),
        )
        conn.execute("UPDATE rooms SET head = ? WHERE room = ?", (seq, room))
        self._heads[room] = seq
        return Appended(Message(room, seq, draft.cmid, draft.sender, draft.body, ts, draft.kind), False)

    async def read(self, room: str, after: int, limit: int) -> Page:
        return await self._read(lambda conn: self._read_page(conn, room, after, limit, ascending=True))

    async def read_before(self, room: str, before: int, limit: int) -> Page:
        return await self._read(lambda conn: self._read_page(conn, room, before, limit, ascending=False))

    async def position(self, room: str) -> Position:
        return await self._read(lambda conn: self._position(conn, room))

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        def query(conn: sqlite3.Connection) -> int:
            self._position(conn, room)
            row = conn.execute("SELECT max(seq) FROM messages WHERE room = ? AND ts < ?", (room, ts_ms)).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return await self._read(query)

    def _position(self, conn: sqlite3.Connection, room: str) -> Position:
        row = conn.execute("SELECT epoch, head, first FROM rooms WHERE room = ?", (room,)).fetchone()
        if row is None:
            raise NotFound(f"no room {room!r}")
        return Position(epoch=row[0], head=row[1], first=row[2])

    def _read_page(self, conn: sqlite3.Connection, room: str, bound: int, limit: int, ascending: bool) -> Page:
        if limit < 0:
            raise UsageError("limit must be >= 0")
        conn.execute("BEGIN")
        try:
            position = self._position(conn, room)
            if ascending:
                sql = (
                    "SELECT seq, cmid, sender, body, ts, kind FROM messages"
                    " WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?"
                )
            else:
                sql = (
                    "SELECT seq, cmid, sender, body, ts, kind FROM messages"
                    " WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
                )
            rows = conn.execute(sql, (room, bound, limit)).fetchall()
        finally:
            conn.execute("COMMIT")
        if not ascending:
            rows.reverse()
        messages = [Message(room, r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
        return Page(messages, position)

    async def _read(self, query: Callable[[sqlite3.Connection], R]) -> R:
        if self._closed:
            raise Unavailable("store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._with_reader, query)
        except sqlite3.Error as exc:
            raise Unavailable(f"sqlite read failed: {exc}") from exc

    def _with_reader(self, query: Callable[[sqlite3.Connection], R]) -> R:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
        return query(conn)

    async def trim(self, room: str, keep_last: int) -> int:
        """Retention: drop all but the newest ``keep_last`` messages; return how many were dropped.

        The idempotency keys of dropped messages are kept (with a digest of the body), so a late
        retry of a trimmed message is still answered with its original seq, never stored twice.
        """

        def apply(conn: sqlite3.Connection) -> int:
            if room not in self._rooms:
                raise NotFound(f"no room {room!r}")
            return self._drop_below(conn, room, max(1, self._heads[room] - keep_last + 1))

        return await self._write(apply)

    async def trim_before(self, room: str, seq: int) -> int:
        def apply(conn: sqlite3.Connection) -> int:
            if room not in self._rooms:
                raise NotFound(f"no room {room!r}")
            return self._drop_below(conn, room, min(max(1, seq), self._heads[room] + 1))

        return await self._write(apply)

    def _drop_below(self, conn: sqlite3.Connection, room: str, first: int) -> int:
        rows = conn.execute(
            "SELECT sender, cmid, seq, ts, body, kind FROM messages WHERE room = ? AND seq < ?", (room, first)
        ).fetchall()
        conn.executemany(
            "INSERT OR IGNORE INTO trimmed_ids (room, sender, cmid, seq, ts, digest) VALUES (?, ?, ?, ?, ?, ?)",
            [(room, r[0], r[1], r[2], r[3], body_digest(r[4], r[5])) for r in rows],
        )
        conn.execute("DELETE FROM messages WHERE room = ? AND seq < ?", (room, first))
        conn.execute("UPDATE rooms SET first = max(first, ?) WHERE room = ?", (first, room))
        return len(rows)

    async def erase(self, room: str, redactions: Sequence[Redaction]) -> int:
        """Rewrite each row in place (``secure_delete`` zeroes the old cell and any page it frees), keep the old
        body's digest in ``trimmed_ids`` for late retries, then empty the WAL after the commit (``_fold_wal``)."""

        def apply(conn: sqlite3.Connection) -> int:
            if room not in self._rooms:
                raise NotFound(f"no room {room!r}")
            replaced = 0
            for r in redactions:
                row = conn.execute(
                    "SELECT sender, cmid, ts, body, kind FROM messages WHERE room = ? AND seq = ?", (room, r.seq)
                ).fetchone()
                if row is None or (row[3], row[4]) == (r.body, r.kind):
                    continue
                conn.execute(
                    "INSERT OR IGNORE INTO trimmed_ids (room, sender, cmid, seq, ts, digest) VALUES (?, ?, ?, ?, ?, ?)",
                    (room, row[0], row[1], r.seq, row[2], body_digest(row[3], row[4])),
                )
                conn.execute(
                    "UPDATE messages SET kind = ?, body = ? WHERE room = ? AND seq = ?", (r.kind, r.body, room, r.seq)
                )
                replaced += 1
            if replaced:
                self._checkpoint_due = True
            return replaced

        return await self._write(apply)

    # ---- Directory --------------------------------------------------------------------------

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            if room in self._rooms:
                return False
            epoch = secrets.token_hex(8)
            now = _now_ms()
            conn.execute(
                "INSERT INTO rooms (room, epoch, head, first, owner, created_ms) VALUES (?, ?, 0, 1, ?, ?)",
                (room, epoch, owner, now),
            )
            conn.execute("INSERT INTO members (room, user, joined_ms) VALUES (?, ?, ?)", (room, owner, now))
            conn.executemany(
                "INSERT INTO room_attrs (room, ns, key, value) VALUES (?, 'meta', ?, ?)",
                [(room, k, v) for k, v in (meta or {}).items()],
            )
            with self._cache_lock:
                if meta:
                    self._attrs[(room, "meta")] = dict(meta)
                self._rooms[room] = epoch
                self._heads[room] = 0
                self._members[room] = {owner}
            self._undo.append(lambda: self._forget_room(room))
            return True

        return await self._write(apply)

    def _forget_room(self, room: str) -> None:
        self._rooms.pop(room, None)
        self._heads.pop(room, None)
        self._members.pop(room, None)
        self._attrs.pop((room, "meta"), None)

    async def room_exists(self, room: str) -> bool:
        return room in self._rooms

    async def is_member(self, room: str, user: str) -> bool:
        members = self._members.get(room)
        return members is not None and user in members

    async def add_member(self, room: str, user: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            members = self._members.get(room)
            if members is None:
                raise NotFound(f"no room {room!r}")
            if user in members:
                return False
            conn.execute("INSERT INTO members (room, user, joined_ms) VALUES (?, ?, ?)", (room, user, _now_ms()))
            with self._cache_lock:
                members.add(user)
            self._undo.append(lambda: members.discard(user))
            return True

        return await self._write(apply)

    async def remove_member(self, room: str, user: str) -> bool:
        def apply(conn: sqlite3.Connection) -> bool:
            members = self._members.get(room)
            if members is None:
                raise NotFound(f"no room {room!r}")
            if user not in members:
                return False
            conn.execute("DELETE FROM members WHERE room = ? AND user = ?", (room, user))
            with self._cache_lock:
                members.discard(user)
            self._undo.append(lambda: members.add(user))
            return True

        return await self._write(apply)

    async def rooms_of(self, user: str) -> list[str]:
        with self._cache_lock:
            rooms = [room for room, members in self._members.items() if user in members]
        return sorted(rooms)

    async def all_rooms(self) -> list[str]:
        with self._cache_lock:
            rooms = list(self._rooms)
        return sorted(rooms)

    async def members(self, room: str) -> list[str]:
        with self._cache_lock:
            members = list(self._members.get(room, ()))
        return sorted(members)

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        with self._cache_lock:
            return dict(self._attrs.get((room, ns), {}))

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")

        def apply(conn: sqlite3.Connection) -> None:
            if room not in self._rooms:
                raise NotFound(f"no room {room!r}")
            with self._cache_lock:
                attrs = self._attrs.setdefault((room, ns), {})
            old = attrs.get(key)
            if value is None:
                conn.execute("DELETE FROM room_attrs WHERE room = ? AND ns = ? AND key = ?", (room, ns, key))
                with self._cache_lock:
                    attrs.pop(key, None)
            else:
                conn.execute(
                    "INSERT INTO room_attrs (room, ns, key, value) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (room, ns, key) DO UPDATE SET value = excluded.value",
                    (room, ns, key, value),
                )
                with self._cache_lock:
                    attrs[key] = value
            self._undo.append(lambda: _restore(attrs, key, old))

        await self._write(apply)

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        def apply(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO read_markers (room, user, seq) VALUES (?, ?, ?)"
                " ON CONFLICT (room, user) DO UPDATE SET seq = max(seq, excluded.seq) RETURNING seq",
                (room, user, seq),
            ).fetchone()
            return int(row[0])

        return await self._write(apply)

    async def read_positions(self, user: str) -> dict[str, int]:
        rows = await self._read(
            lambda conn: conn.execute("SELECT room, seq FROM read_markers WHERE user = ?", (user,)).fetchall()
        )
        return {room: int(seq) for room, seq in rows}

    async def readers(self, room: str) -> dict[str, int]:
        rows = await self._read(
            lambda conn: conn.execute("SELECT user, seq FROM read_markers WHERE room = ?", (room,)).fetchall()
        )
        return {user: int(seq) for user, seq in rows}

    # ---- Leases -----------------------------------------------------------------------------

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        def apply(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(_LEASE, {"name": name, "holder": holder, "now": _now_ms(), "ttl": ttl_ms}).fetchone()
            return None if row is None else int(row[0])

        return await self._write(apply)

    async def release(self, name: str, holder: str) -> None:
        """Expire the row rather than delete it: the name's token must keep growing (R-LEASE-3)."""

        def apply(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE leases SET expires_ms = 0 WHERE name = ? AND holder = ?", (name, holder))

        await self._write(apply)


def _restore(attrs: dict[str, str], key: str, old: str | None) -> None:
    if old is None:
        attrs.pop(key, None)
    else:
        attrs[key] = old


def _resolve(batch: list[_Op]) -> None:
    for op in batch:
        if op.future.done():
            continue
        if isinstance(op.outcome, BaseException):
            op.future.set_exception(op.outcome)
        else:
            op.future.set_result(op.outcome)


class SqliteLogReader:
    """The embedded store's logs and room list read from another process (the search indexer's child,
    search/worker.py), which must not take the data directory's lock the node holds: a ``SqliteStore`` that is
    never opened (no lock, no writer thread) and is only ever asked reads, each on a reader connection of its own
    in one transaction, which WAL keeps consistent beside the node's writer. It writes nothing: no lease is taken
    here (an embedded store has a single node; its index is never a shared one in a child process)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self._store = SqliteStore(data_dir)

    async def read(self, room: str, after: int, limit: int) -> Page:
        return await self._store.read(room, after, limit)

    async def all_rooms(self) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute("SELECT room FROM rooms ORDER BY room")]

        return await self._store._read(query)

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        raise UsageError("the embedded store's reader takes no lease")

    async def release(self, name: str, holder: str) -> None:
        return None

    async def aclose(self) -> None:
        await self._store.aclose()
