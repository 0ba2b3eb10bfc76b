"""Wire frames: JSON objects tagged by ``type``, carried in WebSocket text frames.

Rules:

* A client sends one JSON object per WebSocket frame.
* A server may pack several JSON objects into one WebSocket frame, separated by ``\\n`` (JSON never
  contains a raw newline), so a busy connection pays one frame per batch. ``split()`` undoes this.
* Requests may carry an ``id``; the reply to it, and any error it causes (a decode error too, whenever
  the frame is a JSON object whose ``id`` is a string), carries the same value as ``ref``.
* ``decode_client()`` never lets a foreign exception out: bad input is a ``ProtocolError`` with a
  stable code, and nothing else happens.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .codes import Code
from .errors import ProtocolError
from .types import Message, Position

__all__ = [
    "Ack",
    "Auth",
    "Ban",
    "ClientFrame",
    "Create",
    "Decline",
    "Delete",
    "Dm",
    "Edit",
    "Error",
    "History",
    "HistoryPage",
    "Invite",
    "Join",
    "Kick",
    "Leave",
    "Live",
    "Ok",
    "Ping",
    "Pong",
    "PresenceEvent",
    "React",
    "Read",
    "Receipt",
    "Role",
    "Send",
    "ServerFrame",
    "Subscribe",
    "Subscribed",
    "Typing",
    "TypingEvent",
    "Unban",
    "Uninvite",
    "Unsubscribe",
    "Welcome",
    "decode_client",
    "decode_server",
    "encode",
    "peek_ref",
    "split",
]


class _Frame(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True):
    pass


# ---- client -> server -------------------------------------------------------------------------


class Auth(_Frame, tag="auth", frozen=True):
    token: str
    id: str | None = None


class Create(_Frame, tag="create", frozen=True):
    """Create a room: ``public`` (anyone may join) or ``private`` (by invitation)."""

    room: str
    kind: str = "public"
    id: str | None = None


class Dm(_Frame, tag="dm", frozen=True):
    """Open (create on first use) the direct conversation with ``user``; the ``ok`` names its room."""

    user: str
    id: str | None = None


class Invite(_Frame, tag="invite", frozen=True):
    """Owner or admin: allow ``user`` to join ``room`` (needed for a private room)."""

    room: str
    user: str
    id: str | None = None


class Uninvite(_Frame, tag="uninvite", frozen=True):
    """Revoke the invitation of ``user`` to ``room``: its inviter, or an owner or admin of the room."""

    room: str
    user: str
    id: str | None = None


class Decline(_Frame, tag="decline", frozen=True):
    """Decline my invitation to ``room``: it ends, and joining needs a new one."""

    room: str
    id: str | None = None


class Kick(_Frame, tag="kick", frozen=True):
    """Owner or admin: remove ``user`` (of a lower role) from ``room``."""

    room: str
    user: str
    id: str | None = None


class Ban(_Frame, tag="ban", frozen=True):
    """Owner or admin: remove ``user`` and refuse their joins and invitations until ``unban``."""

    room: str
    user: str
    id: str | None = None


class Unban(_Frame, tag="unban", frozen=True):
    room: str
    user: str
    id: str | None = None


class Role(_Frame, tag="role", frozen=True):
    """Owner only: make a member ``admin``, or ``member`` again."""

    room: str
    user: str
    role: str
    id: str | None = None


class Join(_Frame, tag="join", frozen=True):
    room: str
    id: str | None = None


class Leave(_Frame, tag="leave", frozen=True):
    room: str
    id: str | None = None


class Subscribe(_Frame, tag="subscribe", frozen=True):
    """Follow a room from ``after`` (a seq; ``None`` means from the current head) in ``epoch``."""

    room: str
    after: int | None = None
    epoch: str | None = None
    id: str | None = None


class Unsubscribe(_Frame, tag="unsubscribe", frozen=True):
    room: str
    id: str | None = None


class Send(_Frame, tag="send", frozen=True):
    """Store a text. With ``reply_to`` (a seq) it replies to that message; with ``thread`` (a root's seq) it is a
    reply in that thread; with ``attachments`` (ids of my uploads to the room) it carries those files: each makes it a
    ``rich`` message (protocol/rich.py)."""

    room: str
    cmid: str
    body: str
    id: str | None = None
    reply_to: int | None = None
    thread: int | None = None
    attachments: tuple[str, ...] = ()


class Edit(_Frame, tag="edit", frozen=True):
    """Replace the text of my message ``target``: stored as a ``kind: edit`` message with its own seq."""

    room: str
    target: int
    body: str
    cmid: str
    id: str | None = None


class Delete(_Frame, tag="delete", frozen=True):
    """Delete message ``target`` (mine, or any as a moderator): stored as a ``kind: delete`` message.

    Without ``cmid`` the key is derived from the target, so a retry is answered as a duplicate. ``erase``: the
    text (and its edits') also leaves the server's store, not only its answers (an erasure)."""

    room: str
    target: int
    cmid: str | None = None
    erase: bool = False
    id: str | None = None


class React(_Frame, tag="react", frozen=True):
    """Add (or with ``remove``, take back) my ``emoji`` on message ``target``: a ``react``/``unreact`` message."""

    room: str
    target: int
    emoji: str
    remove: bool = False
    id: str | None = None


class History(_Frame, tag="history", frozen=True):
    """Read a room: ``after`` a seq (ascending) or ``before`` a seq (the newest page below it); with ``thread``
    (a root's seq), only that thread: the root and its replies."""

    room: str
    after: int | None = None
    before: int | None = None
    limit: int = 50
    id: str | None = None
    thread: int | None = None


class Ping(_Frame, tag="ping", frozen=True):
    id: str | None = None


class Typing(_Frame, tag="typing", frozen=True):
    """No reply on success; ``id`` names the request in an error, as for every other frame."""

    room: str
    id: str | None = None


class Read(_Frame, tag="read", frozen=True):
    """I have read ``room`` up to ``seq`` (on any of my devices): moves my read position forward."""

    room: str
    seq: int
    id: str | None = None


ClientFrame = (
    Auth
    | Create
    | Join
    | Leave
    | Subscribe
    | Unsubscribe
    | Send
    | Edit
    | Delete
    | React
    | History
    | Ping
    | Typing
    | Read
    | Dm
    | Invite
    | Kick
    | Ban
    | Unban
    | Role
    | Uninvite
    | Decline
)

# ---- server -> client -------------------------------------------------------------------------


class Welcome(_Frame, tag="welcome", frozen=True):
    user: str
    session: str
    max_body_bytes: int
    max_frame_bytes: int
    ref: str | None = None
    inbox: str | None = None
    """The user's own event stream (``~u:<user>``): subscribe to it like a room; never build the name."""


class Ok(_Frame, tag="ok", frozen=True):
    ref: str | None
    room: str


class Subscribed(_Frame, tag="subscribed", frozen=True):
    """The subscription holds; the backlog after the cursor follows as ``msg`` frames, then ``live``."""

    ref: str | None
    room: str
    epoch: str
    head: int
    after: int
    """The backlog that follows starts at ``after + 1``: a client without a cursor takes this one."""


class Live(_Frame, tag="live", frozen=True):
    """Catch-up is complete up to ``seq``; every later message of the room follows live, in order."""

    room: str
    seq: int


class Ack(_Frame, tag="ack", frozen=True):
    """The message is durably stored as ``seq``. ``dup`` is true when this answers a retry."""

    ref: str | None
    room: str
    cmid: str
    seq: int
    ts: int
    dup: bool


class HistoryPage(_Frame, tag="history", frozen=True):
    ref: str | None
    room: str
    messages: list[Message]
    has_more: bool
    epoch: str
    head: int
    first: int


class Pong(_Frame, tag="pong", frozen=True):
    ref: str | None = None


class TypingEvent(_Frame, tag="typing", frozen=True):
    room: str
    user: str


class PresenceEvent(_Frame, tag="presence", frozen=True):
    """``user`` is now ``online`` (following ``room`` on some connection) or ``offline``. Never stored."""

    room: str
    user: str
    status: str


class Receipt(_Frame, tag="receipt", frozen=True):
    """``user`` has read ``room`` up to ``seq``. Ephemeral on the wire; the position itself is stored."""

    room: str
    user: str
    seq: int


class Error(_Frame, tag="error", frozen=True):
    code: int
    reason: str
    ref: str | None = None
    room: str | None = None
    retry_after_s: float | None = None
    epoch: str | None = None
    head: int | None = None
    first: int | None = None


ServerFrame = (
    Welcome
    | Ok
    | Subscribed
    | Live
    | Ack
    | HistoryPage
    | Pong
    | TypingEvent
    | PresenceEvent
    | Receipt
    | Error
    | Message
)

_client_decoder: Final[msgspec.json.Decoder[ClientFrame]] = msgspec.json.Decoder(ClientFrame)
_server_decoder: Final[msgspec.json.Decoder[ServerFrame]] = msgspec.json.Decoder(ServerFrame)
_encoder: Final = msgspec.json.Encoder()

encode: Final = _encoder.encode
"""Encode any frame (or Message) to JSON bytes."""


def decode_client(data: bytes | str) -> ClientFrame:
    """Decode one client frame, or raise ``ProtocolError(BAD_FRAME)`` saying what is wrong."""
    try:
        return _client_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid frame: {exc}", Code.BAD_FRAME) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}", Code.BAD_FRAME) from None
    except UnicodeError as exc:  # a str with lone surrogates, invalid UTF-8 inside a JSON string
        raise ProtocolError(f"invalid text: {exc}", Code.BAD_FRAME) from None
    except RecursionError:  # a few KB of nested arrays/objects, even in an ignored field
        raise ProtocolError("JSON nested too deeply", Code.BAD_FRAME) from None


class _Peek(msgspec.Struct):
    """Only the two fields an error names, each of any JSON type: a frame that failed to decode because
    ``room`` is a number still has a readable ``id``."""

    id: object = None
    room: object = None


_peek: Final = msgspec.json.Decoder(_Peek)


def peek_ref(data: bytes | str) -> tuple[str | None, str | None]:
    """``(id, room)`` of a frame that failed to decode, each where it is a string, so its error can name
    the request. Nothing when the frame is not a JSON object."""
    try:
        peeked = _peek.decode(data)
    except (msgspec.MsgspecError, UnicodeError, RecursionError):
        return None, None
    return named_by(peeked)


def named_by(peeked: _Peek) -> tuple[str | None, str | None]:
    """``(id, room)`` of a peeked frame, each where it is a string (any encoding's peek)."""
    return (peeked.id if isinstance(peeked.id, str) else None, peeked.room if isinstance(peeked.room, str) else None)


def decode_server(data: bytes | str) -> ServerFrame:
    try:
        return _server_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"invalid server frame: {exc}", Code.BAD_FRAME) from None


def split(data: bytes | str) -> list[bytes]:
    """The JSON objects of one server WebSocket frame."""
    raw = data.encode() if isinstance(data, str) else data
    return [part for part in raw.split(b"\n") if part]


def position_error(code: Code, reason: str, room: str, position: Position, ref: str | None) -> Error:
    return Error(
        code=int(code),
        reason=reason,
        ref=ref,
        room=room,
        epoch=position.epoch,
        head=position.head,
        first=position.first,
    )
