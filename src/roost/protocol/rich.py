"""Rich messages: a text with structure: replies, threads, and the mentions the server parsed from it.

A plain text is stored as it always was: ``kind "text"``, the body is the text. A text that replies to another
message, belongs to a thread or mentions someone is stored with ``kind "rich"`` and a JSON body, as Matrix puts
``m.relates_to`` and ``m.mentions`` in an event's content::

    kind "rich"  body {"body": "sure", "reply_to": 12}            a reply quoting message 12 (m.in_reply_to)
    kind "rich"  body {"body": "agreed", "thread": 10}            a reply in the thread of message 10 (m.thread)
    kind "rich"  body {"body": "yes", "thread": 10, "reply_to": 14}   both: a reply to 14 within thread 10
    kind "rich"  body {"body": "@bob @room look", "mentions": ["bob"], "room": true}   what it mentions
    kind "rich"  body {"body": "", "attachments": [{"id": "9f..", "name": "cat.png", "type": "image/png",
                       "size": 48213, "width": 640, "height": 480}]}          files (docs/protocol.md, "Attachments")

The attachments are filled by the server from its own record of each upload when a send names their ids: a client
names ids, never metadata, so what a message says about a file (its name, type and size) is what the server made
of the bytes. A retried send names the same ids and so stores byte-equal content.

The mentions are parsed once, by the server, when the text is stored (``mentions_of``): a pure function of the
text, so a retried send stores byte-equal content, and no reader parses a text to know whom it mentions.

Why a kind of its own, and a JSON body: every store keeps ``(kind, body)`` and nothing else of a message's
content (SQLite and PostgreSQL columns, the Redis and NATS entries, the Kafka record), so a new kind needs no
schema change on any engine, and the stored event carries its relations through the one write path, catch-up,
history and every engine's erasure like any message. A plain text stays ``text`` (no cost, and older clients
show it as before); a client that does not know ``rich`` shows it neutrally (R-WIRE-4).

Threads are one level deep (as in Slack and Matrix): a thread's root is a message that is not itself in a
thread, and its seq names the thread. A deleted rich message is served as a tombstone that keeps its thread
(``{"thread": 10}``, or ``""`` outside a thread), so a deleted reply stays in its thread; its text is gone.

Sans-I/O: the server and both SDKs share the encoding (tests/vectors/relations.json).
"""

from __future__ import annotations

from typing import Final

import msgspec

from .inbox import Mentions, parse_mentions
from .types import KIND_DELETED, KIND_RICH, KIND_TEXT, Message

__all__ = [
    "KIND_RICH",
    "MAX_ATTACHMENTS",
    "MAX_STORED_MENTIONS",
    "TEXT_KINDS",
    "Attachment",
    "RichContent",
    "Tombstone",
    "decode_rich",
    "encode_rich",
    "mentions_of",
    "mentions_user",
    "text_of",
    "thread_of",
    "tombstone_body",
]

TEXT_KINDS: Final = frozenset({KIND_TEXT, KIND_RICH})
"""What a user sends and reads: the targets of edits, reactions, replies and threads."""
MAX_STORED_MENTIONS: Final = 50
"""User names a stored text lists in ``mentions`` at most: a protocol constant, not a setting, so the stored content
of a text never depends on the server's configuration (``max_mentions`` bounds who is told, at most these)."""


MAX_ATTACHMENTS: Final = 10
"""Attachments one message may carry at most: a protocol constant, so a stored message never depends on settings."""


class Attachment(msgspec.Struct, frozen=True, omit_defaults=True):
    """One file a message carries, as the server recorded it at upload (never as the client described it)."""

    id: str
    """The upload's id: ``GET /api/rooms/{room}/attachments/{id}`` serves it to the room's members."""
    name: str
    """The file name to show and to save as: sanitized by the server (no path, no control characters); text."""
    type: str
    """The media type the server sniffed from the bytes: image/png, image/jpeg, image/gif, image/webp,
    application/pdf, text/plain or application/octet-stream."""
    size: int
    """Bytes."""
    width: int | None = None
    """Pixels, for an image that decoded."""
    height: int | None = None


class RichContent(msgspec.Struct, frozen=True, omit_defaults=True):
    """The body of a ``rich`` message: compact JSON, fields in this order, absent when not set."""

    body: str
    """The text, with the same limits as a plain ``send``."""
    reply_to: int | None = None
    """The seq of the message this one replies to (quoted by clients), in the same room."""
    thread: int | None = None
    """The seq of the thread's root: this message is a reply in that thread."""
    mentions: tuple[str, ...] = ()
    """The user names the text mentions (``@name``), parsed by the server, in order, at most
    ``MAX_STORED_MENTIONS``; members or not (who is told is the server's business)."""
    room: bool = False
    """The text mentions the whole room (``@room`` or ``@here``)."""
    attachments: tuple[Attachment, ...] = ()
    """The files the message carries, in the order the send named them (at most ``MAX_ATTACHMENTS``)."""


class Tombstone(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a deleted rich message keeps: its thread, so that it stays there as "message deleted"."""

    thread: int | None = None


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(RichContent)
_tombstone: Final = msgspec.json.Decoder(Tombstone)


def encode_rich(content: RichContent) -> str:
    """The stored body: byte-equal for equal content, so a retried send is answered as a duplicate."""
    return _encoder.encode(content).decode()


def decode_rich(message: Message) -> RichContent | None:
    """The content of a ``rich`` message, or None for another kind or a body that does not parse."""
    if message.kind != KIND_RICH:
        return None
    try:
        content: RichContent = _decoder.decode(message.body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
        return None
    return content


def text_of(message: Message) -> str | None:
    """The text of a ``text`` or ``rich`` message as stored (before edits); None for other kinds."""
    if message.kind == KIND_TEXT:
        return message.body
    content = decode_rich(message)
    return None if content is None else content.body


def thread_of(message: Message) -> int | None:
    """The thread a message is a reply in: a ``rich`` one's ``thread``, or a tombstone's (kind ``deleted``
    with body ``{"thread": N}``); None for every other message."""
    if message.kind == KIND_RICH:
        content = decode_rich(message)
        return None if content is None else content.thread
    if message.kind == KIND_DELETED and message.body.startswith("{"):
        try:
            return _tombstone.decode(message.body).thread
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
            return None
    return None


def tombstone_body(message: Message) -> str:
    """The body a deleted text is served with: ``""``, or ``{"thread": N}`` for a reply in a thread (also when
    ``message`` is such a tombstone already: erasing twice stores the same)."""
    thread = thread_of(message)
    return "" if thread is None else _encoder.encode(Tombstone(thread)).decode()


def mentions_of(text: str) -> Mentions:
    """Whom a text mentions, as the server stores it: the one parse of a text, on the write path only."""
    return parse_mentions(text, MAX_STORED_MENTIONS)


def mentions_user(message: Message, user: str) -> bool:
    """Does this stored message (as sent, before edits: an edit tells nobody) mention ``user``, by name or with
    ``@room``? Never one's own message."""
    content = decode_rich(message)
    if content is None or message.sender == user:
        return False
    return content.room or user in content.mentions
