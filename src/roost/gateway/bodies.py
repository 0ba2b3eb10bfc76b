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
    "AdminDeleteQuery",
    "AdminRoom",
    "AdminRooms",
    "Appended",
    "AttachmentLink",
    "AttachmentQuery",
    "Banned",
    "ConsumerCreated",
    "ConsumerDeleted",
    "ConsumerDetail",
    "ConsumerInfo",
    "ConsumerList",
    "DeleteQuery",
    "EditRequest",
    "ErrorAnswer",
    "ErrorBody",
    "HistoryAnswer",
    "HistoryQuery",
    "Invites",
    "KeyCreated",
    "KeyInfo",
    "KeyList",
    "KeyRevoked",
    "Login",
    "LoginAnswer",
    "Member",
    "Members",
    "MessageQuery",
    "NewConsumer",
    "NewKey",
    "NewMessage",
    "NewRoom",
    "NotifyAnswer",
    "NotifyChoice",
    "PendingInvite",
    "Reaction",
    "ReadAnswer",
    "ReadMark",
    "ReadyAnswer",
    "ReadyCheck",
    "Receipts",
    "RetentionAnswer",
    "RetentionPolicy",
    "RevokedTokens",
    "RewindRequest",
    "RoleAnswer",
    "RoleChange",
    "RoomCreated",
    "RoomDetail",
    "RoomRef",
    "RoomUser",
    "Rooms",
    "SearchAnswer",
    "SearchQuery",
    "SearchResult",
    "Status",
    "SyncAnswer",
    "SyncEntry",
    "SyncRequest",
    "Unread",
    "Upload",
    "UploadQuery",
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
    reply_to: Seq | None = None
    """The seq of the message this one replies to (docs/protocol.md section 22)."""
    thread: Seq | None = None
    """The seq of a thread's root: the message is a reply in that thread."""
    attachments: list[str] = []
    """Ids of my uploads to this room (``POST /api/rooms/{room}/attachments``) the message carries (docs/protocol.md,
    "Attachments"); the server fills in their names, types and sizes."""


class NewKey(msgspec.Struct):
    principal: str
    scopes: list[str]
    name: str = ""


class NewConsumer(msgspec.Struct):
    url: str
    """http:// or https://: every matching event is POSTed there, signed (redirects are not followed)."""
    rooms: str = "*"
    """A glob over room names: ``*``, ``?``, ``[...]`` (fnmatch, case-sensitive)."""
    kinds: list[str] | None = None
    """Room kinds: ``public``, ``private``, ``direct``; absent: public and private (direct only when asked)."""
    events: list[str] | None = None
    """Event classes: ``messages``, ``edits``, ``deletes``, ``reactions``, ``membership``; absent: all."""
    from_: int | None = msgspec.field(default=None, name="from")
    """Deliver the events with seq > this in every matching room; absent: from now (each room's head now;
    rooms created later from their first event)."""
    max_failures: int | None = None
    """Consecutive failed deliveries before the consumer is paused; absent: the server's
    ``consumer_max_failures``."""


class RewindRequest(msgspec.Struct):
    seq: int
    """Deliver again (or skip to) the events after this seq."""
    room: str | None = None
    """That room only; absent: every room of the consumer."""


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
    thread: Seq | None = None
    """Only the thread of this root: the root and its replies (docs/protocol.md section 22)."""


class MessageQuery(HistoryQuery, kw_only=True):
    """The seed's ``GET /api/messages``: the room by ``room_id``, then as ``HistoryQuery``."""

    room_id: str


class DeleteQuery(msgspec.Struct):
    cmid: str | None = None
    """The delete's own idempotency key; without it one is derived from the target."""
    erase: bool = False
    """``true``: an erasure, the text also leaves the server's store (docs/protocol.md, R-ERASE-1)."""


class AdminDeleteQuery(msgspec.Struct):
    erase: bool = False
    """``true``: an erasure, the text also leaves the server's store (docs/protocol.md, R-ERASE-1)."""


Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=100 * 366 * 86_400)]


class RetentionPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """A room's own retention: ``null`` (or absent) follows the server's default, 0 keeps for ever."""

    max_messages: Count | None = None
    """Keep the newest N messages."""
    max_age_s: Seconds | None = None
    """Drop messages older than this many seconds."""


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
    """The messages after ``read`` the user has to read: texts of others, not deleted (docs/protocol.md, R-READ-3)."""
    mentions: int = 0
    """How many of those mention the user, by name or with @room (R-MENTION-4)."""


class Rooms(msgspec.Struct):
    rooms: list[str]
    """The rooms the user is a member of."""
    public: list[str]
    unread: dict[str, Unread]
    notify: dict[str, str] = msgspec.field(default_factory=dict)
    """Room -> how it notifies the user (``all``, ``mentions``, ``none``), for the rooms where the user chose."""


class NotifyChoice(msgspec.Struct, forbid_unknown_fields=True):
    level: str
    """``all`` (every message), ``mentions`` (mentions only) or ``none``."""


class NotifyAnswer(msgspec.Struct):
    room: str
    level: str


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


class RetentionAnswer(msgspec.Struct):
    """What applies to the room (0: no limit), and the room's own values (``null``: the server's default)."""

    room: str
    max_messages: int
    max_age_s: int
    room_max_messages: int | None
    room_max_age_s: int | None


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


class ConsumerInfo(msgspec.Struct):
    """A durable event consumer as listed: never its secret."""

    id: str
    url: str
    rooms: str
    kinds: list[str]
    events: list[str]
    from_: int | None = msgspec.field(name="from")
    """As asked at creation: null for now (the heads then), or the seq deliveries began after."""
    owner: str | None
    """The API key's principal; null for an administrator's consumer."""
    key: str | None
    """The id of the API key that created it; null for an administrator's."""
    created_by: str
    created_at: int
    state: str
    """``active`` or ``paused`` (after ``max_failures`` failures in a row, until resumed)."""
    failures: int
    """Consecutive failed deliveries (0 after a success)."""
    last_error: str
    max_failures: int
    lag: int
    """Events after its cursors up to the heads of its rooms, as of the last scan of the node delivering it."""
    holder: str
    """The node delivering it, as of its last takeover."""


class ConsumerCreated(ConsumerInfo):
    """The only answer that holds the consumer's signing secret."""

    secret: str


class ConsumerDetail(ConsumerInfo):
    cursors: dict[str, int]
    """Room -> the last seq delivered (or left out by the filter) there."""


class ConsumerList(msgspec.Struct):
    consumers: list[ConsumerInfo]


class ConsumerDeleted(msgspec.Struct):
    id: str
    deleted: bool


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


# ---- invitations (the per-user stream, docs/protocol.md section 19) -----------------------------


class PendingInvite(msgspec.Struct):
    room: str
    by: str
    """Who invited the user."""


class Invites(msgspec.Struct):
    invites: list[PendingInvite]
    """The user's pending invitations, by room name."""


# ---- Web Push (gateway/push.py) --------------------------------------------------------------------------


class VapidKeyInfo(msgspec.Struct):
    public_key: str
    """The server's VAPID public key (an uncompressed P-256 point, base64url): the page's
    ``applicationServerKey`` for ``pushManager.subscribe``."""


class NewPushSubscription(msgspec.Struct):
    """The browser's ``PushSubscription.toJSON()``, as it is."""

    endpoint: str
    """The push service's URL for this browser: https:// (http:// on a loopback address only when the server
    allows it, ``push_allow_http``); at most 2048 characters."""
    keys: dict[str, str]
    """``p256dh``: the browser's P-256 public key (base64url, 65 bytes); ``auth``: its auth secret (base64url,
    16 bytes)."""
    expiration_time: float | None = msgspec.field(default=None, name="expirationTime")
    """Ignored (the push service says when a subscription is gone: 404/410)."""


class PushSubscriptionInfo(msgspec.Struct):
    id: str
    """16 hex digits of the endpoint's SHA-256: registering the same endpoint again replaces it."""
    endpoint: str
    created_at: int
    """Unix seconds."""


class PushSubscriptionList(msgspec.Struct):
    subscriptions: list[PushSubscriptionInfo]


class PushSubscriptionDeleted(msgspec.Struct):
    id: str
    deleted: bool
# ---- search (docs/protocol.md, "Search") ---------------------------------------------------------


class SearchQuery(msgspec.Struct, kw_only=True):
    q: str
    """The query: words (all must match), "quoted phrases", prefix* (R-SEARCH-3); at most 256 characters."""
    room: str | None = None
    """Search this room only (a member's); absent: every room of the user."""
    limit: Seq | None = None
    """Results per page: 20 when absent, clamped to 1-100."""
    before: Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None = None
    """The ``next`` of the previous answer: the page after it."""


class SearchResult(msgspec.Struct):
    room: str
    seq: int
    """The message's seq: open the room there (history ``before=seq+1`` and ``after=seq``)."""
    sender: str
    ts: int
    snippet: str
    """The message's text (its latest edit) around the first match, whitespace collapsed: plain text, not markup."""
    highlights: list[tuple[int, int]]
    """``[start, end)`` of each matched word in ``snippet``, in Unicode code points (not UTF-16 units)."""


class SearchAnswer(msgspec.Struct):
    results: list[SearchResult]
    """Newest first."""
    next: int | None
    """Set when more may follow: send it as ``before`` for the next page."""


# ---- attachments (docs/protocol.md, "Attachments") ------------------------------------------------


class UploadQuery(msgspec.Struct, kw_only=True):
    name: str
    """The file's name as the client knows it: only a label (the server shows and serves a sanitized one)."""


class Upload(msgspec.Struct, omit_defaults=True):
    """An upload as the server recorded it: what a message naming its ``id`` will carry (``rich.Attachment``)."""

    id: str
    """Name it in a send's ``attachments`` (within ``attachment_orphan_s``, else it is removed)."""
    name: str
    """The sanitized display name: no path, no control characters; show it as text."""
    type: str
    """Sniffed from the bytes: image/png, image/jpeg, image/gif, image/webp, application/pdf, text/plain or
    application/octet-stream."""
    size: int
    width: int | None = None
    """Pixels, for an image."""
    height: int | None = None


class AttachmentQuery(msgspec.Struct, kw_only=True):
    thumb: bool = False
    """true: the image's thumbnail (at most 320 pixels square; the image itself when it is that small)."""
    user: str | None = None
    """With ``exp`` and ``sig``: a signed link (``/link``) instead of the ``Authorization`` header."""
    exp: int | None = None
    """The link's expiry, in unix seconds."""
    sig: str | None = None
    """The link's signature."""


class AttachmentLink(msgspec.Struct):
    """Signed links to one file, for elements that cannot send a header (``<img src>``, a download link)."""

    url: str
    """The file; its path and query, on this server."""
    thumb: str | None
    """Its thumbnail, for an image; else null."""
    expires: int
    """When both stop working (unix seconds): ask again after that."""
