"""The per-user stream (the *inbox*): one sequenced pseudo-room per user for what happens to that user.

Why a room: every guarantee a room has (a dense seq, catch-up from a cursor, exactly once and in order,
gap repair, 4410 when continuity is lost, retention) then holds for the stream with no new machinery, in
the server and in both SDKs. The room is named ``~u:<user>``: ``~`` is outside the room-name alphabet, so no
``create`` can take the name and only the server writes it (sender ``system``); only its user may read it.

An event is a stored message of that room whose ``kind`` says what happened and whose ``body`` is a small
JSON object (the Structs below; compact, fields in a fixed order, so a re-emission is byte-equal):

    invited    {"room", "by"}                    an invitation to ``room`` (pending until used or ended)
    uninvited  {"room", "by", "reason"}          it ended: declined, revoked or banned
    added      {"room", "by", "seq"}             the user is now a member (``seq``: their join event)
    removed    {"room", "by", "how", "seq"}      no longer a member: leave, kick or ban
    mention    {"room", "seq", "sender"}         message ``seq`` of ``room`` mentions the user
    read       {"room", "seq"}                   the user's read position in ``room`` rose to ``seq``
    notify     {"room", "level"}                 the user set how ``room`` notifies them: all, mentions, none

Mentions (``mentions``): ``@name`` where ``name`` is a user name, preceded by the start of the body or a
character that cannot be part of a name, with trailing dots left out (``@bob.`` ends a sentence). ``@room`` and
``@here`` mention every member of the room (``parse_mentions``), never a user of that name.

Idempotency keys (``cmid``) are derived from what caused the event (``event_cmid``), so a retried request
re-emits the same key and the store answers it as a duplicate: one event per cause. Sans-I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

import msgspec

from .types import Message, valid_user

__all__ = [
    "HOW_BAN",
    "HOW_KICK",
    "HOW_LEAVE",
    "INBOX_KINDS",
    "INBOX_PREFIX",
    "KIND_ADDED",
    "KIND_INVITED",
    "KIND_MENTION",
    "KIND_NOTIFY",
    "KIND_READ",
    "KIND_REMOVED",
    "KIND_UNINVITED",
    "LEVELS",
    "LEVEL_ALL",
    "LEVEL_MENTIONS",
    "LEVEL_NONE",
    "REASON_BANNED",
    "REASON_DECLINED",
    "REASON_REVOKED",
    "ROOM_MENTIONS",
    "Added",
    "InboxContent",
    "InboxEvent",
    "Invited",
    "Mention",
    "Mentions",
    "NotifyLevel",
    "ReadUpTo",
    "Removed",
    "Uninvited",
    "decode_event",
    "encode_content",
    "event_cmid",
    "inbox_owner",
    "inbox_room",
    "is_inbox",
    "mentions",
    "parse_mentions",
]

INBOX_PREFIX: Final = "~u:"

KIND_INVITED: Final = "invited"
KIND_UNINVITED: Final = "uninvited"
KIND_ADDED: Final = "added"
KIND_REMOVED: Final = "removed"
KIND_MENTION: Final = "mention"
KIND_READ: Final = "read"
KIND_NOTIFY: Final = "notify"
INBOX_KINDS: Final = frozenset(
    {KIND_INVITED, KIND_UNINVITED, KIND_ADDED, KIND_REMOVED, KIND_MENTION, KIND_READ, KIND_NOTIFY}
)
LEVEL_ALL: Final = "all"
LEVEL_MENTIONS: Final = "mentions"
LEVEL_NONE: Final = "none"
LEVELS: Final = (LEVEL_ALL, LEVEL_MENTIONS, LEVEL_NONE)
"""How a room notifies its member: every message, mentions only, or not at all (a client's choice to show)."""

REASON_DECLINED: Final = "declined"
REASON_REVOKED: Final = "revoked"
REASON_BANNED: Final = "banned"
HOW_LEAVE: Final = "leave"
HOW_KICK: Final = "kick"
HOW_BAN: Final = "ban"


def inbox_room(user: str) -> str:
    """The stream of ``user``: ``~u:<user>`` (what ``welcome.inbox`` names; clients never build it)."""
    return f"{INBOX_PREFIX}{user}"


def inbox_owner(room: str) -> str | None:
    """The user whose stream ``room`` is, or None when ``room`` is not a stream's name."""
    if not room.startswith(INBOX_PREFIX):
        return None
    user = room[len(INBOX_PREFIX) :]
    return user if valid_user(user) else None


def is_inbox(room: str) -> bool:
    return inbox_owner(room) is not None


class Invited(msgspec.Struct, frozen=True):
    """An invitation to ``room`` by ``by``: pending until the user joins, declines it, or it is revoked."""

    room: str
    by: str


class Uninvited(msgspec.Struct, frozen=True):
    """The invitation to ``room`` ended without a join: ``declined`` by the user, ``revoked`` by ``by``, or the
    user was ``banned`` by ``by``."""

    room: str
    by: str
    reason: str


class Added(msgspec.Struct, frozen=True):
    """The user became a member of ``room``: they created or joined it (``by`` is themselves), someone opened a
    direct conversation with them or added them (``by`` is who). ``seq`` is their ``join`` event in the room:
    following the room from ``seq - 1`` shows everything since they are in it."""

    room: str
    by: str
    seq: int


class Removed(msgspec.Struct, frozen=True):
    """The user is no longer a member of ``room``: ``how`` is ``leave`` (``by`` is themselves), ``kick`` or
    ``ban`` (``by`` is the moderator). ``seq`` is the removing event in the room."""

    room: str
    by: str
    how: str
    seq: int


class Mention(msgspec.Struct, frozen=True):
    """Message ``seq`` of ``room``, from ``sender``, mentions the user. The text is not here: read it from the
    room (the user is a member: only members are told)."""

    room: str
    seq: int
    sender: str


class ReadUpTo(msgspec.Struct, frozen=True):
    """The user's read position in ``room`` rose to ``seq`` (on any device): unread counts agree everywhere."""

    room: str
    seq: int


class NotifyLevel(msgspec.Struct, frozen=True):
    """The user set how ``room`` notifies them (on any device): ``level`` is ``all``, ``mentions`` or ``none``."""

    room: str
    level: str


InboxContent = Invited | Uninvited | Added | Removed | Mention | ReadUpTo | NotifyLevel

CONTENT_OF: Final[dict[str, type[InboxContent]]] = {
    KIND_INVITED: Invited,
    KIND_UNINVITED: Uninvited,
    KIND_ADDED: Added,
    KIND_REMOVED: Removed,
    KIND_MENTION: Mention,
    KIND_READ: ReadUpTo,
    KIND_NOTIFY: NotifyLevel,
}
KIND_OF: Final[dict[type[InboxContent], str]] = {cls: kind for kind, cls in CONTENT_OF.items()}
_encoder: Final = msgspec.json.Encoder()
_decoders: Final = {kind: msgspec.json.Decoder(cls) for kind, cls in CONTENT_OF.items()}


def encode_content(content: InboxContent) -> str:
    """The body of an inbox event: compact JSON, fields in a fixed order, so a re-emission is byte-equal."""
    return _encoder.encode(content).decode()


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One event of the user's stream: its place in the stream and what it says (``None`` for a kind this
    version does not know, or a body that does not parse: shown neutrally, never an error)."""

    seq: int
    ts: int
    kind: str
    content: InboxContent | None


def decode_event(message: Message) -> InboxEvent:
    """The typed event a message of an inbox carries."""
    decoder = _decoders.get(message.kind)
    content: InboxContent | None = None
    if decoder is not None:
        try:
            content = decoder.decode(message.body)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
            content = None
    return InboxEvent(message.seq, message.ts, message.kind, content)


def event_cmid(kind: str, room: str, cause: str | int) -> str:
    """The idempotency key of an inbox event: its kind, a digest of the room it is about, and what caused it
    in that room (a seq, or an invitation's 32 hex digits): at most 60 characters whatever the room's name."""
    digest = hashlib.blake2b(room.encode(), digest_size=8).hexdigest()
    return f"~{kind}-{digest}-{cause}"


_NAME_CHARS: Final = "A-Za-z0-9_.@-"
_MENTION_RE: Final = re.compile(rf"(?<![{_NAME_CHARS}])@([{_NAME_CHARS}]+)")


def mentions(body: str, limit: int) -> list[str]:
    """The distinct user names ``body`` mentions, in order of first appearance, at most ``limit`` of them.

    ``@name``: ``@`` at the start of the body or after a character that cannot be in a user name (so
    ``bob@example.com`` mentions nobody), then the longest run of name characters, without its trailing
    dots; it counts when that is a valid user name (1-64 characters, not ``system``)."""
    out: list[str] = []
    if limit <= 0 or "@" not in body:
        return out
    for match in _MENTION_RE.finditer(body):
        name = match.group(1).rstrip(".")
        if valid_user(name) and name not in out:
            out.append(name)
            if len(out) >= limit:
                break
    return out


ROOM_MENTIONS: Final = frozenset({"room", "here"})
"""``@room`` and ``@here``: every member of the room (the two are the same), never a user of that name."""


@dataclass(frozen=True, slots=True)
class Mentions:
    """What a text mentions: user names in order of first appearance, and whether it mentions the whole room."""

    names: tuple[str, ...] = ()
    room: bool = False

    def __bool__(self) -> bool:
        return bool(self.names) or self.room


def parse_mentions(body: str, limit: int) -> Mentions:
    """``mentions`` with ``@room``/``@here`` taken apart: at most ``limit`` distinct user names, in order, and
    whether the room is mentioned anywhere in ``body`` (the room mention does not count against ``limit``)."""
    users: list[str] = []
    room = False
    if "@" not in body:
        return Mentions()
    for match in _MENTION_RE.finditer(body):
        name = match.group(1).rstrip(".")
        if name in ROOM_MENTIONS:
            room = True
        elif len(users) < limit and valid_user(name) and name not in users:
            users.append(name)
        if room and len(users) >= limit:
            break
    return Mentions(tuple(users), room)
