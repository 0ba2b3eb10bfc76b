"""PostgresStore: Store + Directory on PostgreSQL (asyncpg). Pair it with a Redis or NATS bus.

* The per-room seq is assigned in the insert transaction: ``UPDATE rooms SET head = head + 1 ...
  RETURNING head`` takes the room's row lock, so concurrent appends to one room (from any number of
  nodes) serialize there, commit in seq order, and the seq is dense.
* ``UNIQUE (room, sender, cmid)`` makes idempotency a database fact; two concurrent first attempts
  of one message race to it, and the loser re-reads the winner's row. Keys of trimmed messages move
  to ``trimmed_ids`` with a body digest, so idempotency outlives retention.
* Durability is PostgreSQL's ``synchronous_commit`` (on by default): the commit is flushed to the WAL
  before ``append`` returns; PostgreSQL batches concurrent commits into one flush itself.
* Erasure updates the row (kind and body replaced; the old body's digest goes to ``trimmed_ids`` for late
  retries), then runs ``VACUUM (INDEX_CLEANUP OFF)`` on ``messages``: an UPDATE leaves the old row version in
  the page (and its TOAST chunks) until a vacuum prunes it, and pruning defragments the page over it. The
  WAL, its archives and base backups keep the old row as PostgreSQL wrote it (docs/backends.md, R-ERASE-4).
* Leases are rows of ``leases``, each taken or renewed by one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``:
  the row lock orders racing nodes, and the server's ``now()`` decides expiry, so no node's clock matters.
  A row, not an advisory lock: an advisory lock lives as long as a session, and a pooled session (or a
  partitioned node's) outlives the node's interest in it, while a row expires by itself and carries the
  token a lock cannot.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import asyncpg

from ..ports import Appended, Redaction
from ..protocol.errors import Conflict, NotFound, Unavailable, UsageError
from ..protocol.types import Draft, Message, Page, Position
from .boundary import engine_boundary
from .idempotency import body_digest

__all__ = ["PostgresStore"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rooms (
    room text PRIMARY KEY,
    epoch text NOT NULL,
    head bigint NOT NULL DEFAULT 0,
    first bigint NOT NULL DEFAULT 1,
    owner text NOT NULL,
    created_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    room text NOT NULL REFERENCES rooms ON DELETE CASCADE,
    "user" text NOT NULL,
    joined_ms bigint NOT NULL,
    PRIMARY KEY (room, "user")
);
CREATE INDEX IF NOT EXISTS members_user ON members ("user");
CREATE TABLE IF NOT EXISTS messages (
    room text NOT NULL,
    seq bigint NOT NULL,
    sender text NOT NULL,
    cmid text NOT NULL,
    body text NOT NULL,
    ts bigint NOT NULL,
    kind text NOT NULL,
    PRIMARY KEY (room, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency ON messages (room, sender, cmid);
CREATE INDEX IF NOT EXISTS messages_ts ON messages (room, ts);
CREATE TABLE IF NOT EXISTS read_markers (
    room text NOT NULL,
    "user" text NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (room, "user")
);
CREATE TABLE IF NOT EXISTS room_attrs (
    room text NOT NULL REFERENCES rooms ON DELETE CASCADE,
    ns text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (room, ns, key)
);
CREATE TABLE IF NOT EXISTS trimmed_ids (
    room text NOT NULL,
    sender text NOT NULL,
    cmid text NOT NULL,
    seq bigint NOT NULL,
    ts bigint NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (room, sender, cmid)
);
CREATE TABLE IF NOT EXISTS leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    fence bigint NOT NULL,
    expires timestamptz NOT NULL
);
"""

_RELATIONS: Final = tuple(re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))
"""Every table and index of the schema: a node that finds them all runs no DDL at startup."""
_SESSION: Final = {
    # A transaction whose client went quiet (a partitioned or frozen node) holds its row locks, and every
    # other node's appends to that room wait behind them: PostgreSQL ends it after this long.
    "idle_in_transaction_session_timeout": "10s",
}

if TYPE_CHECKING:
    Conn = asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]
_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


_LEASE: Final = """
INSERT INTO leases AS l (name, holder, fence, expires)
VALUES ($1, $2, 1, now() + $3::float8 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE SET
    fence = CASE WHEN l.holder = excluded.holder AND l.expires > now() THEN l.fence ELSE l.fence + 1 END,
    holder = excluded.holder,
    expires = excluded.expires
WHERE l.holder = excluded.holder OR l.expires <= now()
RETURNING fence
"""
"""Take a free name, renew one's own, or return no row while another holder's lease runs. A renewal keeps the
token; every other grant (first, after expiry, after release) takes the next one."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def _translate() -> AsyncIterator[None]:
    async with engine_boundary("postgres"):
        yield


class PostgresStore:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.schema = options.pop("schema", "roost")
        self.keep = int(options.pop("keep", "0"))
        """Retention: keep the newest ``keep`` messages per room (0: keep everything)."""
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise UsageError(f"invalid schema name {self.schema!r}")
        query = "&".join(f"{k}={v}" for k, v in options.items())
        self.dsn = parts._replace(scheme="postgresql", query=query).geturl()
        self._pool: asyncpg.Pool[Any] | None = None
        self._closed = False

    async def open(self) -> PostgresStore:
        async with _translate():
            conn = await asyncpg.connect(self.dsn)
            try:
                await self._ensure_schema(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=2, max_size=16, server_settings={"search_path": self.schema, **_SESSION}
            )
        return self

    async def _ensure_schema(self, conn: asyncpg.Connection[Any]) -> None:
        """Create what is missing, and only then: ``CREATE INDEX IF NOT EXISTS`` takes a SHARE lock on its table
        even when the index exists, so it waits for every open write transaction, and every write after it
        waits for it. A node restarting while another node's transaction hung (a partition) stalled all
        appends (seen in a chaos run); with the schema in place a start takes no lock at all."""
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relname = ANY($2::text[])",
            self.schema,
            list(_RELATIONS),
        )
        if found == len(_RELATIONS):
            return
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        await conn.execute(f"SET lock_timeout = '10s'; SET search_path TO {self.schema}; {_SCHEMA}")

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise Unavailable("store is closed")
        return self._pool

    async def durability_warnings(self) -> list[str]:
        """A server that acks a commit before its WAL is on disk loses acked messages to a power loss or an OS
        crash (docs/backends.md); the settings are read as this store's sessions see them."""
        async with _translate(), self.pool.acquire() as conn:
            fsync = await conn.fetchval("SHOW fsync")
            commit = await conn.fetchval("SHOW synchronous_commit")
        warnings = []
        if fsync != "on":
            warnings.append(
                "postgresql: fsync is off: a power loss or OS crash can lose acked messages and corrupt the"
                " database; turn it on (docs/backends.md)"
            )
        if commit in ("off",):
            warnings.append(
                "postgresql: synchronous_commit is off: a commit is acked before its WAL is on disk and a"
                " power loss or OS crash loses the last acked messages; use on (the default) (docs/backends.md)"
            )
        return warnings

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # ---- Store ------------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Appended:
        for _ in range(3):
            try:
                async with _translate(), self.pool.acquire() as conn, conn.transaction():
                    return await self._append(conn, draft)
            except Unavailable as exc:
                if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                    continue  # a concurrent first attempt of the same message won; read it back
                raise
        raise Unavailable("append kept conflicting")

    async def _append(self, conn: Conn, draft: Draft) -> Appended:
        room = draft.room
        row = await conn.fetchrow(
            "SELECT seq, body, ts, kind FROM messages WHERE room = $1 AND sender = $2 AND cmid = $3",
            room,
            draft.sender,
            draft.cmid,
        )
        if row is not None and (row["body"], row["kind"]) == (draft.body, draft.kind):
            message = Message(room, row["seq"], draft.cmid, draft.sender, row["body"], row["ts"], row["kind"])
            return Appended(message, duplicate=True)
        trimmed = await conn.fetchrow(
            "SELECT seq, ts, digest FROM trimmed_ids WHERE room = $1 AND sender = $2 AND cmid = $3",
            room,
            draft.sender,
            draft.cmid,
        )
        if trimmed is None and row is not None:
            raise Conflict(f"client message id {draft.cmid!r} was used for another message")
        if trimmed is not None:  # trimmed, or erased (its row holds the replacement): the digest decides
            if bytes(trimmed["digest"]) != body_digest(draft.body, draft.kind):
                raise Conflict(f"client message id {draft.cmid!r} was used for another message")
            message = Message(room, trimmed["seq"], draft.cmid, draft.sender, draft.body, trimmed["ts"], draft.kind)
            return Appended(message, duplicate=True)
        seq = await conn.fetchval("UPDATE rooms SET head = head + 1 WHERE room = $1 RETURNING head", room)
        if seq is None:
            raise NotFound(f"no room {room!r}")
        ts = _now_ms()
        await conn.execute(
            "INSERT INTO messages (room, seq, sender, cmid, body, ts, kind) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            room,
            seq,
            draft.sender,
            draft.cmid,
            draft.body,
            ts,
            draft.kind,
        )
        if self.keep and seq > self.keep:
            await self._trim(conn, room, seq - self.keep + 1)  # in the append's transaction: no window
        return Appended(Message(room, seq, draft.cmid, draft.sender, draft.body, ts, draft.kind), duplicate=False)

    async def read(self, room: str, after: int, limit: int) -> Page:
        return await self._page(room, after, limit, ascending=True)

    async def read_before(self, room: str, before: int, limit: int) -> Page:
        return await self._page(room, before, limit, ascending=False)

    async def _page(self, room: str, bound: int, limit: int, ascending: bool) -> Page:
        sql = (
            "SELECT seq, cmid, sender, body, ts, kind FROM messages WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            if ascending
            else "SELECT seq, cmid, sender, body, ts, kind FROM messages WHERE room = $1 AND seq < $2"
            " ORDER BY seq DESC LIMIT $3"
        )
        async with _translate(), self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await self._position(conn, room)
            rows = await conn.fetch(sql, room, bound, limit)
        if not ascending:
            rows.reverse()
        messages = [Message(room, r["seq"], r["cmid"], r["sender"], r["body"], r["ts"], r["kind"]) for r in rows]
        return Page(messages, position)

    async def position(self, room: str) -> Position:
        async with _translate(), self.pool.acquire() as conn:
            return await self._position(conn, room)

    @staticmethod
    async def _position(conn: Conn, room: str) -> Position:
        row = await conn.fetchrow("SELECT epoch, head, first FROM rooms WHERE room = $1", room)
        if row is None:
            raise NotFound(f"no room {room!r}")
        return Position(epoch=row["epoch"], head=row["head"], first=row["first"])

    async def seq_before_time(self, room: str, ts_ms: int) -> int:
        async with _translate(), self.pool.acquire() as conn:
            await self._position(conn, room)
            value = await conn.fetchval("SELECT max(seq) FROM messages WHERE room = $1 AND ts < $2", room, ts_ms)
        return int(value or 0)

    async def trim(self, room: str, keep_last: int) -> int:
        async with _translate(), self.pool.acquire() as conn, conn.transaction():
            head = await conn.fetchval("SELECT head FROM rooms WHERE room = $1 FOR UPDATE", room)
            if head is None:
                raise NotFound(f"no room {room!r}")
            return await self._trim(conn, room, max(1, head - keep_last + 1))

    async def trim_before(self, room: str, seq: int) -> int:
        async with _translate(), self.pool.acquire() as conn, conn.transaction():
            head = await conn.fetchval("SELECT head FROM rooms WHERE room = $1 FOR UPDATE", room)
            if head is None:
                raise NotFound(f"no room {room!r}")
            return await self._trim(conn, room, min(max(1, seq), head + 1))

    async def erase(self, room: str, redactions: Sequence[Redaction]) -> int:
        """Replace the rows, then vacuum the table so the old row versions leave its pages (R-ERASE-4).

        ``INDEX_CLEANUP OFF``: pruning the heap removes the old versions' bytes; the indexes hold no body, so
        their cleanup (a scan of every index, the costly part on a large table) is left to autovacuum."""
        async with _translate(), self.pool.acquire() as conn:
            async with conn.transaction():
                if await conn.fetchval("SELECT head FROM rooms WHERE room = $1 FOR UPDATE", room) is None:
                    raise NotFound(f"no room {room!r}")
                replaced = 0
                for r in redactions:
                    row = await conn.fetchrow(
                        "SELECT sender, cmid, ts, body, kind FROM messages WHERE room = $1 AND seq = $2", room, r.seq
                    )
                    if row is None or (row["body"], row["kind"]) == (r.body, r.kind):
                        continue
                    await conn.execute(
                        "INSERT INTO trimmed_ids (room, sender, cmid, seq, ts, digest) VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT DO NOTHING",
                        room,
                        row["sender"],
                        row["cmid"],
                        r.seq,
                        row["ts"],
                        body_digest(row["body"], row["kind"]),
                    )
                    await conn.execute(
                        "UPDATE messages SET kind = $3, body = $4 WHERE room = $1 AND seq = $2",
                        room,
                        r.seq,
                        r.kind,
                        r.body,
                    )
                    replaced += 1
            if replaced:
                await conn.execute("VACUUM (INDEX_CLEANUP OFF) messages")
        return replaced

    @staticmethod
    async def _trim(conn: Conn, room: str, first: int) -> int:
        """Drop messages below ``first``; their idempotency keys move to ``trimmed_ids``."""
        rows = await conn.fetch(
            "DELETE FROM messages WHERE room = $1 AND seq < $2 RETURNING sender, cmid, seq, ts, body, kind",
            room,
            first,
        )
        await conn.executemany(
            "INSERT INTO trimmed_ids (room, sender, cmid, seq, ts, digest) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT DO NOTHING",
            [(room, r["sender"], r["cmid"], r["seq"], r["ts"], body_digest(r["body"], r["kind"])) for r in rows],
        )
        await conn.execute("UPDATE rooms SET first = greatest(first, $2) WHERE room = $1", room, first)
        return len(rows)

    # ---- Directory --------------------------------------------------------------------------

    async def create_room(self, room: str, owner: str, meta: Mapping[str, str] | None = None) -> bool:
        now = _now_ms()
        async with _translate(), self.pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                "INSERT INTO rooms (room, epoch, owner, created_ms) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING RETURNING true",
                room,
                secrets.token_hex(8),
                owner,
                now,
            )
            if not created:
                return False
            await conn.execute('INSERT INTO members (room, "user", joined_ms) VALUES ($1, $2, $3)', room, owner, now)
            if meta:
                await conn.executemany(
                    "INSERT INTO room_attrs (room, ns, key, value) VALUES ($1, 'meta', $2, $3)",
                    [(room, k, v) for k, v in meta.items()],
                )
            return True

    async def room_exists(self, room: str) -> bool:
        async with _translate(), self.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT true FROM rooms WHERE room = $1", room))

    async def is_member(self, room: str, user: str) -> bool:
        async with _translate(), self.pool.acquire() as conn:
            return bool(await conn.fetchval('SELECT true FROM members WHERE room = $1 AND "user" = $2', room, user))

    async def add_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with _translate(), self.pool.acquire() as conn:
            added = await conn.fetchval(
                'INSERT INTO members (room, "user", joined_ms) VALUES ($1, $2, $3)'
                " ON CONFLICT DO NOTHING RETURNING true",
                room,
                user,
                _now_ms(),
            )
        return bool(added)

    async def remove_member(self, room: str, user: str) -> bool:
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with _translate(), self.pool.acquire() as conn:
            removed = await conn.fetchval(
                'DELETE FROM members WHERE room = $1 AND "user" = $2 RETURNING true', room, user
            )
        return bool(removed)

    async def rooms_of(self, user: str) -> list[str]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch('SELECT room FROM members WHERE "user" = $1 ORDER BY room', user)
        return [r["room"] for r in rows]

    async def all_rooms(self) -> list[str]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT room FROM rooms ORDER BY room")
        return [r["room"] for r in rows]

    async def members(self, room: str) -> list[str]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch('SELECT "user" FROM members WHERE room = $1 ORDER BY "user"', room)
        return [r["user"] for r in rows]

    async def room_attrs(self, room: str, ns: str) -> dict[str, str]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT key, value FROM room_attrs WHERE room = $1 AND ns = $2", room, ns)
        return {r["key"]: r["value"] for r in rows}

    async def set_room_attr(self, room: str, ns: str, key: str, value: str | None) -> None:
        if ns == "meta":
            raise UsageError("meta attributes are written by create_room only")
        if not await self.room_exists(room):
            raise NotFound(f"no room {room!r}")
        async with _translate(), self.pool.acquire() as conn:
            if value is None:
                await conn.execute("DELETE FROM room_attrs WHERE room = $1 AND ns = $2 AND key = $3", room, ns, key)
            else:
                await conn.execute(
                    "INSERT INTO room_attrs (room, ns, key, value) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (room, ns, key) DO UPDATE SET value = excluded.value",
                    room,
                    ns,
                    key,
                    value,
                )

    async def mark_read(self, room: str, user: str, seq: int) -> int:
        async with _translate(), self.pool.acquire() as conn:
            value = await conn.fetchval(
                'INSERT INTO read_markers (room, "user", seq) VALUES ($1, $2, $3)'
                ' ON CONFLICT (room, "user") DO UPDATE SET seq = greatest(read_markers.seq, excluded.seq)'
                " RETURNING seq",
                room,
                user,
                seq,
            )
        return int(value)

    async def read_positions(self, user: str) -> dict[str, int]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch('SELECT room, seq FROM read_markers WHERE "user" = $1', user)
        return {r["room"]: int(r["seq"]) for r in rows}

    async def readers(self, room: str) -> dict[str, int]:
        async with _translate(), self.pool.acquire() as conn:
            rows = await conn.fetch('SELECT "user", seq FROM read_markers WHERE room = $1', room)
        return {r["user"]: int(r["seq"]) for r in rows}

    # ---- Leases -----------------------------------------------------------------------------

    async def lease(self, name: str, holder: str, ttl_ms: int) -> int | None:
        async with _translate(), self.pool.acquire() as conn:
            token = await conn.fetchval(_LEASE, name, holder, ttl_ms)
        return None if token is None else int(token)

    async def release(self, name: str, holder: str) -> None:
        """Expire the row rather than delete it: the name's token must keep growing (R-LEASE-3)."""
        async with _translate(), self.pool.acquire() as conn:
            await conn.execute("UPDATE leases SET expires = '-infinity' WHERE name = $1 AND holder = $2", name, holder)
