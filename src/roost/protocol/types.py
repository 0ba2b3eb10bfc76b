"""The nouns of Roost: rooms, sequence numbers, positions, drafts and messages.

Vocabulary, one word per concept: a *room* has one order; *seq* is a message's dense 1-based number in
its room; the *epoch* names one incarnation of a room's history (it changes if the history is lost or
recreated, so an old cursor can never be mistaken for a new one); a *position* is ``(epoch, seq)``; a
*draft* is not yet stored; a *message* is stored and has a seq; *cmid* is the client's idempotency key.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

__all__ = [
    "KIND_BAN",
    "KIND_DELETED",
    "KIND_INVITE",
    "KIND_JOIN",
    "KIND_KICK",
    "KIND_LEAVE",
    "KIND_RETENTION",
    "KIND_RICH",
    "KIND_ROLE",
    "KIND_TEXT",
    "KIND_UNBAN",
    "KIND_UNINVITE",
    "MAX_SEQ",
    "REMOVING_KINDS",
    "RESERVED_USERS",
    "SYSTEM_SENDER",
    "Draft",
    "Message",
    "Page",
    "Position",
    "valid_cmid",
    "valid_room",
    "valid_user",
]

MAX_SEQ: Final = 2**53
"""The largest seq (or cursor) a request may name: exact in every JSON parser and every store's integer type."""

KIND_TEXT: Final = "text"
KIND_RICH: Final = "rich"
"""A text with structure: a reply, a reply in a thread, a text that mentions someone; its body is JSON with the
text in ``body`` (protocol/rich.py). For the webhooks' event classes it is a message, like ``text``."""
KIND_JOIN: Final = "join"
KIND_LEAVE: Final = "leave"
KIND_INVITE: Final = "invite"
KIND_KICK: Final = "kick"
KIND_BAN: Final = "ban"
KIND_UNBAN: Final = "unban"
KIND_ROLE: Final = "role"
KIND_UNINVITE: Final = "uninvite"
"""An invitation ended without a join (declined by the invited user, or revoked): ``sender`` is the user
who was invited, ``body`` ``{"by": who ended it}``."""
KIND_RETENTION: Final = "retention"
"""A room's retention policy changed: sent by who changed it, body ``{"by", "max_messages", "max_age_s"}``."""
KIND_DELETED: Final = "deleted"
"""What a deleted ``text`` (or ``rich``) message looks like when the server serves it again; stored as such only
by an erasure (the store then holds the tombstone instead of the text)."""
REMOVING_KINDS: Final = frozenset({KIND_LEAVE, KIND_KICK, KIND_BAN})
"""Membership events that take their ``sender`` (the member concerned) out of the room: that user's
subscriptions end after delivering one of these, on every node, exactly as after a ``leave``."""

SYSTEM_SENDER: Final = "system"
"""The sender of messages an application posts as the service itself (an API key with ``publish:system``):
reserved, so no token, login or key names it and a ``system`` message cannot be from a user."""
RESERVED_USERS: Final = frozenset({SYSTEM_SENDER})

_ROOM_RE: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
_USER_RE: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_CMID_RE: Final = re.compile(r"[\x21-\x7e]{1,64}")


def valid_room(room: str) -> bool:
    return _ROOM_RE.fullmatch(room) is not None


def valid_user(user: str) -> bool:
    """A name a user (or an API key's principal) may have: not a reserved one (``system``)."""
    return _USER_RE.fullmatch(user) is not None and user not in RESERVED_USERS


def valid_cmid(cmid: str) -> bool:
    return _CMID_RE.fullmatch(cmid) is not None


class Draft(msgspec.Struct, frozen=True):
    """A message that is not stored yet. ``(room, sender, cmid)`` is its idempotency key, forever."""

    room: str
    sender: str
    cmid: str
    body: str
    kind: str = KIND_TEXT


class Message(msgspec.Struct, frozen=True, tag="msg", tag_field="type"):
    """A stored message. Encoded as-is, it is the ``msg`` frame of the wire protocol."""

    room: str
    seq: int
    cmid: str
    sender: str
    body: str
    ts: int
    """Milliseconds since the Unix epoch, from the storing node's clock: for display only, never a cursor."""
    kind: str = KIND_TEXT


class Position(msgspec.Struct, frozen=True):
    """Where a room stands: its epoch, its newest seq (``head``), and the oldest seq it still holds."""

    epoch: str
    head: int
    first: int = 1


class Page(msgspec.Struct, frozen=True):
    """Messages with ``seq > after`` in ascending order, without holes, read in one snapshot with ``position``."""

    messages: list[Message]
    position: Position
