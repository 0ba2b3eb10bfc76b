"""The HTTP API's request and answer bodies, as msgspec Structs.

The handlers decode requests into these and encode answers from them, and the OpenAPI document's schemas
are generated from them (openapi.py): a field exists on the wire exactly when it exists here. Field names
and order are the wire's; the WebSocket's own types (``Message``) are reused where the answer carries one.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..protocol.types import MAX_SEQ, Message

__all__ = [
    "AdminRoom",
    "AdminRooms",
    "Appended",
    "Banned",
    "DeleteQuery",
    "EditRequest",
    "ErrorAnswer",
    "ErrorBody",
    "HistoryAnswer",
    "HistoryQuery",
    "KeyCreated",
    "KeyInfo",
    "KeyList",
    "KeyRevoked",
    "Login",
    "LoginAnswer",
    "Member",
    "Members",
    "MessageQuery",
    "NewKey",
    "NewMessage",
    "NewRoom",
    "Reaction",
    "ReadAnswer",
    "ReadMark",
    "ReadyAnswer",
    "ReadyCheck",
    "Receipts",
    "RevokedTokens",
    "RoleAnswer",
    "RoleChange",
    "RoomCreated",
    "RoomDetail",
    "RoomRef",
    "RoomUser",
    "Rooms",
    "Status",
    "SyncAnswer",
    "SyncEntry",
    "SyncRequest",
    "Unread",
    "UserRef",
]

Seq = Annotated[int, msgspec.Meta(ge=-MAX_SEQ, le=MAX_SEQ)]
"""A seq or cursor in a query: exact in every JSON parser (the service checks the finer range)."""


# ---- errors -----------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, omit_defaults=True):
    code: int
    """A code of roost.protocol.codes (44xx, 45xx); the HTTP status is ``code - 4000``."""
    reason: str
    retry_after_s: float | None = None
    """Only with 429 and 503: seconds to wait before retrying (also in the ``Retry-After`` header)."""


class ErrorAnswer(msgspec.Struct):
    """Every error of the API, and each failed room of a sync [R-HTTP-1]."""

    error: ErrorBody


# ---- requests ---------------------------------------------------------------------------------


class Login(msgspec.Struct):
    name: str


class NewRoom(msgspec.Struct):
    room: str
    kind: str = "public"
    """``public``, or ``private`` (members by invitation)."""


class UserRef(msgspec.Struct):
    user: str


class RoleChange(msgspec.Struct):
    user: str
    role: str
    """``admin`` or ``member``."""


class NewMessage(msgspec.Struct):
    cmid: str
    body: str
    as_: str | None = msgspec.field(default=None, name="as")
    """``system``: post as the reserved sender (an API key with ``publish:system``)."""


class NewKey(msgspec.Struct):
    principal: str
    scopes: list[str]
    name: str = ""


class EditRequest(msgspec.Struct):
    cmid: str
    body: str


class Reaction(msgspec.Struct):
    emoji: str


class ReadMark(msgspec.Struct):
    seq: int


class SyncRequest(msgspec.Struct):
    rooms: dict[str, int]
    """Room -> the cursor (the last seq the client holds)."""
    limit: int = 100


class HistoryQuery(msgspec.Struct):
    """``after``/``before`` are seqs; ``since_ts`` (or its seed name ``last_sync_timestamp``) a time in ms."""

    after: Seq | None = None
    before: Seq | None = None
    since_ts: Seq | None = None
    last_sync_timestamp: Seq | None = None
    limit: Seq | None = None


class MessageQuery(HistoryQuery, kw_only=True):
    """The seed's ``GET /api/messages``: the room by ``room_id``, then as ``HistoryQuery``."""

    room_id: str


class DeleteQuery(msgspec.Struct):
    cmid: str | None = None
    """The delete's own idempotency key; without it one is derived from the target."""


# ---- answers ----------------------------------------------------------------------------------


class Status(msgspec.Struct):
    status: str


class ReadyCheck(msgspec.Struct):
    ok: bool
    error: str | None
    last_ok_s_ago: float | None
    last_progress_s_ago: float | None


class ReadyAnswer(msgspec.Struct):
    """``/readyz``: 200 when ``ready``, else 503 with the same body naming what fails."""

    ready: bool
    node: str
    draining: bool
    shedding: bool
    checks: dict[str, ReadyCheck]
    warnings: list[str]


class LoginAnswer(msgspec.Struct):
    user: str
    token: str
    insecure: bool


class Unread(msgspec.Struct):
    head: int
    read: int
    unread: int


class Rooms(msgspec.Struct):
    rooms: list[str]
    """The rooms the user is a member of."""
    public: list[str]
    unread: dict[str, Unread]


class RoomCreated(msgspec.Struct):
    room: str
    kind: str


class RoomRef(msgspec.Struct):
    room: str


class RoomUser(msgspec.Struct):
    room: str
    user: str


class RoleAnswer(msgspec.Struct):
    room: str
    user: str
    role: str


class Member(msgspec.Struct):
    user: str
    role: str


class Members(msgspec.Struct):
    room: str
    kind: str
    members: list[Member]


class AdminRoom(msgspec.Struct):
    room: str
    kind: str
    owner: str
    members: int


class AdminRooms(msgspec.Struct):
    rooms: list[AdminRoom]


class RoomDetail(msgspec.Struct):
    room: str
    kind: str
    owner: str
    members: list[Member]
    bans: list[str]
    invites: list[str]


class Banned(msgspec.Struct):
    room: str
    user: str
    banned: bool


class Appended(msgspec.Struct):
    """A stored message; ``duplicate`` when this answers a retry of one stored before."""

    message: Message
    duplicate: bool


class RevokedTokens(msgspec.Struct):
    user: str
    revoked_before: int
    """Unix seconds: every token of the user issued at or before it is void."""


class KeyInfo(msgspec.Struct):
    """A key as listed: never its secret, nor the hash of it."""

    id: str
    principal: str
    scopes: list[str]
    name: str
    created: int
    created_by: str


class KeyCreated(msgspec.Struct):
    """The only answer that holds the key's secret (``key``)."""

    id: str
    key: str
    principal: str
    scopes: list[str]
    name: str
    created: int
    created_by: str


class KeyList(msgspec.Struct):
    keys: list[KeyInfo]


class KeyRevoked(msgspec.Struct):
    id: str
    revoked: bool


class HistoryAnswer(msgspec.Struct):
    room: str
    messages: list[Message]
    has_more: bool
    epoch: str
    head: int
    first: int


class ReadAnswer(msgspec.Struct):
    room: str
    read: int


class Receipts(msgspec.Struct):
    room: str
    readers: dict[str, int]
    """Member -> the seq they have read up to."""


SyncEntry = Annotated[
    msgspec.Raw,
    msgspec.Meta(
        extra_json_schema={
            "anyOf": [{"$ref": "#/components/schemas/HistoryAnswer"}, {"$ref": "#/components/schemas/ErrorAnswer"}]
        }
    ),
]
"""A room of a sync: its page (``HistoryAnswer``) or its error (``ErrorAnswer``), encoded by the handler.
msgspec cannot describe a union of two untagged Structs, so the schema names both here (openapi.py
checks that these references resolve)."""


class SyncAnswer(msgspec.Struct):
    rooms: dict[str, SyncEntry]
    next: dict[str, int]
    """The rooms to ask for again, with the cursor to send."""
