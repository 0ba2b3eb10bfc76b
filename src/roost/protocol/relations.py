"""Relation events: edits, deletions and reactions, stored as ordinary messages of the room.

A relation event is a ``Message`` with its own seq in the room's one order, whose ``kind`` says what
it does and whose ``body`` is JSON naming the message it applies to (as Matrix puts ``m.relates_to``
inside the content)::

    kind "edit"     body {"target": 12, "body": "new text"}
    kind "delete"   body {"target": 12}            ({"target": 12, "erase": true}: an erasure, see below)
    kind "react"    body {"target": 12, "emoji": "👍"}
    kind "unreact"  body {"target": 12, "emoji": "👍"}

Every store already keeps ``kind`` and ``body``, so relations need no store change on any engine, and
they travel through the same persist-then-publish path and catch-up as text. A reader reaches the
final state by folding the room in seq order (``Timeline``): the last edit wins, a deletion is final
(later edits are ignored), and for each ``(user, emoji)`` on a target the last react/unreact wins.

When the server hands out a deleted message again (history, catch-up), it is a *tombstone*: kind
``deleted``, body ``""``; an edit of a deleted message keeps its kind but its body loses the text
(``{"target": 12, "body": ""}``). ``redact`` does both; the server applies it on every read path. A delete
with ``erase`` also has the store replace the target and its edits by those tombstones (``tombstones``), so
the text leaves the store's storage too; readers see the same either way.

Sans-I/O: no sockets, no clock. The server and the SDK share this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import msgspec

from .rich import TEXT_KINDS, decode_rich, mentions_user, thread_of, tombstone_body
from .types import KIND_DELETED, KIND_TEXT, Message

__all__ = [
    "KIND_DELETE",
    "KIND_DELETED",
    "KIND_EDIT",
    "KIND_REACT",
    "KIND_UNREACT",
    "MAX_EMOJI_BYTES",
    "RELATION_KINDS",
    "DeleteContent",
    "EditContent",
    "Folded",
    "ReactContent",
    "Relations",
    "Timeline",
    "counts_as_unread",
    "decode_content",
    "encode_content",
    "erases",
    "fold",
    "react_cmid",
    "redact",
    "tombstones",
]

KIND_EDIT: Final = "edit"
KIND_DELETE: Final = "delete"
KIND_REACT: Final = "react"
KIND_UNREACT: Final = "unreact"

RELATION_KINDS: Final = frozenset({KIND_EDIT, KIND_DELETE, KIND_REACT, KIND_UNREACT})
MAX_EMOJI_BYTES: Final = 32


class EditContent(msgspec.Struct, frozen=True, omit_defaults=True):
    target: int
    body: str
    mentions: tuple[str, ...] = ()
    """Whom the new text mentions (parsed by the server, as a ``rich`` message's): shown, never told."""
    room: bool = False


class DeleteContent(msgspec.Struct, frozen=True, omit_defaults=True):
    target: int
    erase: bool = False
    """The deletion also erased the text from the store (absent, not false, in a plain delete's body)."""


class ReactContent(msgspec.Struct, frozen=True):
    target: int
    emoji: str


_Content = EditContent | DeleteContent | ReactContent
_CONTENT_OF: Final[dict[str, type[_Content]]] = {
    KIND_EDIT: EditContent,
    KIND_DELETE: DeleteContent,
    KIND_REACT: ReactContent,
    KIND_UNREACT: ReactContent,
}
_encoder: Final = msgspec.json.Encoder()
_decoders: Final = {kind: msgspec.json.Decoder(cls) for kind, cls in _CONTENT_OF.items()}


def encode_content(content: _Content) -> str:
    """The body of a relation event: compact JSON with fields in a fixed order, so a retry is byte-equal."""
    return _encoder.encode(content).decode()


def decode_content(message: Message) -> _Content | None:
    """The content of a relation event, or None for other kinds and for a body that does not parse."""
    decoder = _decoders.get(message.kind)
    if decoder is None:
        return None
    try:
        content: _Content = decoder.decode(message.body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
        return None
    return content


def react_cmid(kind: str, target: int, emoji: str, generation: int) -> str:
    """The idempotency key of a react/unreact: derived, so a retry or a double click is one event.

    ``generation`` counts the user's earlier ``unreact`` events of this emoji on this target, so
    react, unreact, react again are three distinct events while two concurrent reacts are one.
    """
    digest = hashlib.blake2b(emoji.encode(), digest_size=8).hexdigest()
    return f"~{kind}-{target}-{digest}-{generation}"


@dataclass(slots=True)
class _Reaction:
    last: int
    """The seq of the latest react/unreact seen for this (target, user, emoji)."""
    on: bool
    unreacts: int


@dataclass(slots=True)
class Relations:
    """Relation events indexed by target. Feed each seq at most once, in any order (merged by seq)."""

    keep_edits: bool = True
    deletes: dict[int, Message] = field(default_factory=dict)
    """target -> the first (lowest seq) delete event of it."""
    edits: dict[int, dict[str, Message]] = field(default_factory=dict)
    """target -> sender -> that sender's latest edit event of it (only with ``keep_edits``)."""
    reactions: dict[int, dict[tuple[str, str], _Reaction]] = field(default_factory=dict)
    edited: dict[int, list[int]] = field(default_factory=dict)
    """target -> the seqs of every edit event of it, by anyone (what an erasure of the target also erases)."""

    def add(self, message: Message) -> None:
        content = decode_content(message)
        if content is None:
            return
        target = content.target
        if message.kind == KIND_DELETE:
            known = self.deletes.get(target)
            if known is None or message.seq < known.seq:
                self.deletes[target] = message
        elif message.kind == KIND_EDIT:
            self.edited.setdefault(target, []).append(message.seq)
            if self.keep_edits:
                by_sender = self.edits.setdefault(target, {})
                known = by_sender.get(message.sender)
                if known is None or message.seq > known.seq:
                    by_sender[message.sender] = message
        elif isinstance(content, ReactContent):
            key = (message.sender, content.emoji)
            per_target = self.reactions.setdefault(target, {})
            state = per_target.get(key)
            on = message.kind == KIND_REACT
            unreact = 0 if on else 1
            if state is None:
                per_target[key] = _Reaction(message.seq, on, unreact)
            else:
                state.unreacts += unreact
                if message.seq > state.last:
                    state.last, state.on = message.seq, on

    def deleted(self, target: int) -> Message | None:
        return self.deletes.get(target)

    def reaction(self, target: int, user: str, emoji: str) -> tuple[bool, int]:
        """``(reacted now, how many unreacts so far)`` for ``user``'s ``emoji`` on ``target``."""
        state = self.reactions.get(target, {}).get((user, emoji))
        return (False, 0) if state is None else (state.on, state.unreacts)

    def counts(self, target: int) -> dict[str, tuple[str, ...]]:
        """emoji -> the users whose reaction stands, sorted; emojis nobody holds are left out."""
        users: dict[str, list[str]] = {}
        for (user, emoji), state in self.reactions.get(target, {}).items():
            if state.on:
                users.setdefault(emoji, []).append(user)
        return {emoji: tuple(sorted(names)) for emoji, names in sorted(users.items())}


def redact(message: Message, relations: Relations) -> Message:
    """The message as it may be served now: a deleted text becomes a tombstone (a reply in a thread keeps its
    thread, ``rich.tombstone_body``), an edit of it loses its text."""
    if message.kind in TEXT_KINDS and relations.deleted(message.seq) is not None:
        return msgspec.structs.replace(message, kind=KIND_DELETED, body=tombstone_body(message))
    if message.kind == KIND_EDIT:
        content = decode_content(message)
        if isinstance(content, EditContent) and content.body and relations.deleted(content.target) is not None:
            return msgspec.structs.replace(message, body=encode_content(EditContent(content.target, "")))
    return message


def erases(delete: Message) -> bool:
    """Did this ``delete`` event erase its target (``"erase": true`` in its body)?"""
    content = decode_content(delete)
    return isinstance(content, DeleteContent) and content.erase


def tombstones(target: Message, edits: list[int]) -> list[tuple[int, str, str]]:
    """``(seq, kind, body)`` an erasure stores for a deleted ``target`` (as stored) and its edit events: what
    ``redact`` serves for them, so an erased message reads exactly as a deleted one."""
    emptied = encode_content(EditContent(target.seq, ""))
    first = (target.seq, KIND_DELETED, tombstone_body(target))
    return [first, *((seq, KIND_EDIT, emptied) for seq in sorted(set(edits)))]


@dataclass(frozen=True, slots=True)
class Folded:
    """One message as an app shows it: ``body`` is the latest edit's text ("" once deleted)."""

    seq: int
    sender: str
    ts: int
    kind: str
    """``text`` (also while edited), ``deleted``, or a non-relation kind (``join``, ``leave``, ...)."""
    body: str
    edited: bool = False
    deleted: bool = False
    reactions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """emoji -> users; the count is the tuple's length."""
    reply_to: int | None = None
    """The seq of the message this one replies to (a ``rich`` message's ``reply_to``): quote it."""
    thread: int | None = None
    """The root of the thread this message is a reply in (also once deleted): shown in that thread, not in the
    room's main timeline."""
    replies: int = 0
    """For a thread's root: its replies the timeline holds that are not deleted."""
    last_reply: int | None = None
    """For a thread's root: the seq of its newest such reply."""
    last_reply_ts: int | None = None
    mentions: tuple[str, ...] = ()
    """The user names its text mentions, as the server parsed them (the latest edit's, once edited)."""
    mentions_room: bool = False
    """Its text mentions the whole room (``@room``, ``@here``)."""

    @property
    def counts(self) -> dict[str, int]:
        return {emoji: len(users) for emoji, users in self.reactions.items()}


class Timeline:
    """Incremental fold of one room: ``add`` messages in any order (each seq once), ``view`` the result.

    An edit counts only when its sender is the target's sender (the server refuses others; the fold
    does not trust that). Relations whose target is not in the timeline are kept and apply once it
    arrives, so pages may be added newest first. Replies in a thread are in ``view`` with their ``thread``
    (an app shows them in the thread, ``thread(root)``), and each root counts the replies the timeline holds.
    """

    def __init__(self) -> None:
        self.relations = Relations()
        self.messages: dict[int, Message] = {}
        self.threads: dict[int, set[int]] = {}
        """root -> the seqs of the replies in its thread that the timeline holds (deleted ones too)."""
        self._seen: set[int] = set()

    def add(self, message: Message) -> None:
        if message.kind in RELATION_KINDS:
            if message.seq not in self._seen:  # a page read twice must not count an unreact twice
                self._seen.add(message.seq)
                self.relations.add(message)
        else:
            self.messages[message.seq] = message
            root = thread_of(message)
            if root is not None:
                self.threads.setdefault(root, set()).add(message.seq)

    def extend(self, messages: list[Message]) -> Timeline:
        for message in messages:
            self.add(message)
        return self

    def get(self, seq: int) -> Folded | None:
        message = self.messages.get(seq)
        return None if message is None else self._fold(message)

    def view(self) -> list[Folded]:
        """Every non-relation message, ascending by seq, with the relations applied."""
        return [self._fold(self.messages[seq]) for seq in sorted(self.messages)]

    def thread(self, root: int) -> list[Folded]:
        """The thread of ``root`` as the timeline holds it: the root (when held), then its replies by seq."""
        seqs = sorted(self.threads.get(root, ()))
        if root in self.messages:
            seqs.insert(0, root)
        return [self._fold(self.messages[seq]) for seq in seqs]

    def unread(self, read: int, user: str) -> int:
        """How many messages after the read position ``read`` ``user`` has to read [R-CLIENT-72]: texts by others
        that are not deleted; membership changes, relation events and one's own messages are nothing to read."""
        return sum(
            1
            for seq, message in self.messages.items()
            if seq > read and counts_as_unread(message, user) and self.relations.deleted(seq) is None
        )

    def mentioned(self, read: int, user: str) -> int:
        """How many of those unread messages mention ``user`` (by name or ``@room``, as sent: an edit tells
        nobody), for a "2 mentions" badge apart from the unread count [R-CLIENT-75]."""
        return sum(
            1
            for seq, message in self.messages.items()
            if seq > read and mentions_user(message, user) and self.relations.deleted(seq) is None
        )

    def _deleted(self, message: Message) -> bool:
        return message.kind == KIND_DELETED or (
            message.kind in TEXT_KINDS and self.relations.deleted(message.seq) is not None
        )

    def _fold(self, message: Message) -> Folded:
        rel = self.relations
        if self._deleted(message):
            thread = thread_of(message)
            return Folded(message.seq, message.sender, message.ts, KIND_DELETED, "", deleted=True, thread=thread)
        if message.kind not in TEXT_KINDS:
            return Folded(message.seq, message.sender, message.ts, message.kind, message.body)
        body, reply_to, thread, edited = message.body, None, None, False
        named: tuple[str, ...] = ()
        everyone = False
        content = decode_rich(message)
        if content is not None:
            body, reply_to, thread = content.body, content.reply_to, content.thread
            named, everyone = content.mentions, content.room
        edit = rel.edits.get(message.seq, {}).get(message.sender)
        if edit is not None:
            edit_content = decode_content(edit)
            if isinstance(edit_content, EditContent) and edit_content.body:
                body, edited = edit_content.body, True
                named, everyone = edit_content.mentions, edit_content.room
        replies = [self.messages[s] for s in sorted(self.threads.get(message.seq, ())) if s in self.messages]
        replies = [r for r in replies if not self._deleted(r)]
        last = replies[-1] if replies else None
        return Folded(
            message.seq,
            message.sender,
            message.ts,
            KIND_TEXT,
            body,
            edited=edited,
            reactions=rel.counts(message.seq),
            reply_to=reply_to,
            thread=thread,
            replies=len(replies),
            last_reply=None if last is None else last.seq,
            last_reply_ts=None if last is None else last.ts,
            mentions=named,
            mentions_room=everyone,
        )


def counts_as_unread(message: Message, user: str) -> bool:
    """Is this stored message something ``user`` has to read (as served: a deleted one is a tombstone by then)?
    A text (``text`` or ``rich``) by someone else; not a membership change (``join``, ``leave``, ...), a relation
    event (an edit, a reaction), a tombstone, or one of the user's own messages (sent from another device)
    [R-CLIENT-72]."""
    return message.kind in TEXT_KINDS and message.sender != user


def fold(messages: list[Message]) -> list[Folded]:
    """The final state of a list of messages (a room's history, in any order): see ``Timeline``."""
    return Timeline().extend(messages).view()
