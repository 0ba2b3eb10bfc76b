"""Redis engine: RedisStore (Store + Directory) and RedisBus, standalone or Redis Cluster.

Layout: every key of a room shares one hash tag, ``{<prefix>:<room>}``, so a room lives in one
cluster slot and one Lua script can touch all of it:

* ``{..}:meta``  hash: ``epoch``, ``head`` (newest seq), ``first`` (oldest kept seq)
* ``{..}:log``   stream; entry id ``<seq>-0``, field ``d`` = the encoded ``msg`` frame
* ``{..}:idem``  hash: ``sender\\ncmid`` -> ``seq:ts:digest``, kept forever (retention does not drop it)
* ``{..}:members`` set; ``{..}:live`` the pub/sub channel (sharded in a cluster)
* ``{..}:reads`` hash: user -> read position (seq), only ever raised; mirrored per user in
  ``<prefix>:index:reads:<user>`` (room -> seq) for unread counts, written after the room's hash

The append script does the idempotency check, the seq increment, the ``XADD``, the retention trim
and the ``PUBLISH``/``SPUBLISH`` in one atomic step: a message is never stored but unpublished, nor
published out of seq order (Redis runs scripts one at a time).

On a cluster the script's ``SPUBLISH`` goes to the room's ``:live`` channel, which shares the room's
hash tag and so its slot: the master running the script owns the channel, and delivers to the shard's
subscribers exactly once (checked on Redis 7.0.15). Redis 7.0 does not check a script's shard channel
against its slot (a channel of another slot is published locally, to nobody), so the shared hash tag is
what makes this correct. The directory's index sets (``<prefix>:index:*``) live in other slots and are
only ever written by plain commands, never inside a script with room keys.

Durability is Redis's: with ``appendonly yes``, the AOF is written before the reply leaves Redis, so
an acked message survives a crash of the Redis *process*; ``appendfsync always`` also survives an OS
crash or power loss, ``everysec`` may lose the last second then. docs/backends.md has the table.

Modules, one job each: ``connection`` (URL options, the client and pool, the error boundary), ``keys`` (a
room's key names), ``scripts`` (the Lua transactions), ``directory`` (rooms, members, attributes, read
positions), ``store`` (the message log and the atomic append), ``bus`` (which channel is followed where),
``listener`` (one pub/sub connection and its reader).
"""

from __future__ import annotations

from .bus import RedisBus
from .connection import connect_redis, parse_redis_url
from .store import RedisStore

__all__ = ["RedisBus", "RedisStore", "connect_redis", "parse_redis_url"]
