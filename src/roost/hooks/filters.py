"""Which rooms and which events a consumer takes.

Rooms: a glob over the room's name (``fnmatchcase``: ``*``, ``?``, ``[...]``; case matters, as in room
names) and the room's kind. Direct conversations are left out unless ``direct`` is asked for: a webhook is
usually for channels, and a conversation between two people should reach a third party only when the
operator says so. Events: the message's ``kind`` (protocol/types.py, protocol/relations.py) mapped to one of
five classes; a kind this server does not know yet (a later version's) maps to none, so it is skipped
rather than sent to a receiver written for the classes it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from ..protocol.relations import KIND_DELETE, KIND_DELETED, KIND_EDIT, KIND_REACT, KIND_UNREACT
from ..protocol.types import (
    KIND_BAN,
    KIND_INVITE,
    KIND_JOIN,
    KIND_KICK,
    KIND_LEAVE,
    KIND_RETENTION,
    KIND_RICH,
    KIND_ROLE,
    KIND_TEXT,
    KIND_UNBAN,
    KIND_UNINVITE,
)

__all__ = [
    "DEFAULT_KINDS",
    "EVENTS",
    "MAX_PATTERN",
    "ROOM_KINDS",
    "Filter",
    "event_class",
]

MESSAGES: Final = "messages"
EDITS: Final = "edits"
DELETES: Final = "deletes"
REACTIONS: Final = "reactions"
MEMBERSHIP: Final = "membership"
EVENTS: Final = (MESSAGES, EDITS, DELETES, REACTIONS, MEMBERSHIP)
"""The event classes a consumer may ask for (all of them by default)."""

ROOM_KINDS: Final = ("public", "private", "direct")
DEFAULT_KINDS: Final = ("public", "private")
"""Direct conversations only when asked for."""
MAX_PATTERN: Final = 256

_CLASS_OF_KIND: Final = {
    KIND_TEXT: MESSAGES,
    KIND_RICH: MESSAGES,  # a reply, a reply in a thread, or a text with mentions: its text and relations
    KIND_DELETED: MESSAGES,  # a text message already deleted when it is delivered: its tombstone
    KIND_EDIT: EDITS,
    KIND_DELETE: DELETES,
    KIND_REACT: REACTIONS,
    KIND_UNREACT: REACTIONS,
    **{
        kind: MEMBERSHIP
        for kind in (KIND_JOIN, KIND_LEAVE, KIND_INVITE, KIND_UNINVITE, KIND_KICK, KIND_BAN, KIND_UNBAN, KIND_ROLE)
    },
    KIND_RETENTION: MEMBERSHIP,  # who may do what in the room, and how long it keeps: its administration
}


def event_class(kind: str) -> str | None:
    """The event class of a message ``kind``; None for a kind this server does not know."""
    return _CLASS_OF_KIND.get(kind)


@dataclass(frozen=True, slots=True)
class Filter:
    rooms: str = "*"
    kinds: tuple[str, ...] = DEFAULT_KINDS
    events: tuple[str, ...] = EVENTS

    def room_named(self, room: str) -> bool:
        """Does the name match the pattern? (The kind is checked apart: it needs a Directory read.)"""
        return fnmatchcase(room, self.rooms)

    def room(self, room: str, kind: str) -> bool:
        return kind in self.kinds and fnmatchcase(room, self.rooms)

    def event(self, kind: str) -> bool:
        """Is a message of this kind delivered (rather than skipped, its cursor moved past it)?"""
        cls = event_class(kind)
        return cls is not None and cls in self.events
