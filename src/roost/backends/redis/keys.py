"""Where a room lives in Redis: its key names, all under one hash tag (see ``roost.backends.redis``).

One place names the keys, so the scripts' ``KEYS[n]`` and the plain commands can never disagree on them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RoomKeys", "lease_keys", "text"]


class RoomKeys:
    """The keys of one room; built once per room and cached by the store."""

    __slots__ = ("erased", "idem", "live", "log", "members", "meta", "reads", "rewrite", "tag")

    def __init__(self, prefix: str, room: str) -> None:
        tag = f"{{{prefix}:{room}}}"
        self.tag = tag
        self.meta = f"{tag}:meta"
        self.log = f"{tag}:log"
        self.idem = f"{tag}:idem"
        self.members = f"{tag}:members"
        self.live = f"{tag}:live"
        self.reads = f"{tag}:reads"
        self.erased = f"{tag}:erased"
        """Hash: seq -> the tombstone frame of an erased message (its stream entry is gone)."""
        self.rewrite = f"{tag}:log-rewrite"
        """Where an erasure rebuilds the log before renaming it over ``log`` (exists only inside that script)."""

    def attrs(self, ns: str) -> str:
        """One hash per attribute namespace, in the room's hash slot (Redis Cluster: same node as the room)."""
        return f"{self.tag}:attr:{ns}"


def lease_keys(prefix: str, name: str) -> list[str]:
    """A lease's holder (a string with a PX expiry) and its token counter (never expires), under one hash tag:
    one slot, so one script may touch both on a cluster. Not ``:fence``: that is ``replication.py``'s key."""
    tag = f"{{{prefix}:lease:{name}}}"
    return [f"{tag}:holder", f"{tag}:token"]


def text(value: Any) -> str:
    """Redis answers bytes; room names, users and values are text."""
    return value.decode() if isinstance(value, bytes) else str(value)
