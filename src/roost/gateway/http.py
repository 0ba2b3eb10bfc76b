"""HTTP API: health, development login, rooms, membership, history, multi-room sync, send, edit, delete and
react; admin. Each handler is declared with ``@route`` (routes.py): that table is both the routing and the
OpenAPI document (openapi.py).

Errors are JSON ``{"error": {"code": 44xx, "reason": "..."}}`` with the HTTP status given by the
code's last three digits. Every route but ``/healthz``, ``/``, ``/api/openapi.json`` and ``/api/login`` (and
the probes in gateway/health.py) needs ``Authorization: Bearer <token>``, a user's JWT or an API key
(apikeys.py), which each route checks against the one scope it declares (``user_of``). Routes under
``/api/admin/`` need a server administrator: a token with ``"roles": ["admin"]``, or a user named by
``--admin``; anyone else, and every API key, gets 4403.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
from aiohttp import web

from ..apikeys import PUBLISH, PUBLISH_SYSTEM, ROOMS_READ, ROOMS_WRITE, ApiKeys, KeyRecord, require
from ..auth import Identity, TokenAuthority
from ..gateway.session import SERVER_ERRORS
from ..metrics import code_label
from ..ports import Appended as StoredMessage
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import AuthError, NotFound, ProtocolError, RoostError, retry_after
from ..protocol.types import SYSTEM_SENDER, valid_user
from ..revocation import Revocations
from ..service import ChatService, HistoryResult, RoomInfo
from ..service.retention import Policy
from .bodies import (
    AdminDeleteQuery,
    AdminRoom,
    AdminRooms,
    Appended,
    Banned,
    DeleteQuery,
    EditRequest,
    ErrorAnswer,
    ErrorBody,
    HistoryAnswer,
    HistoryQuery,
    Invites,
    KeyCreated,
    KeyInfo,
    KeyList,
    KeyRevoked,
    Login,
    LoginAnswer,
    Member,
    Members,
    MessageQuery,
    NewKey,
    NewMessage,
    NewRoom,
    NotifyAnswer,
    NotifyChoice,
    PendingInvite,
    Reaction,
    ReadAnswer,
    ReadMark,
    Receipts,
    RetentionAnswer,
    RetentionPolicy,
    RevokedTokens,
    RoleAnswer,
    RoleChange,
    RoomCreated,
    RoomDetail,
    RoomRef,
    Rooms,
    RoomUser,
    Status,
    SyncAnswer,
    SyncRequest,
    Unread,
    UserRef,
)
from .credentials import identify
from .routes import ADMIN, PUBLIC, Answer, Body, Query, bind, declaration, route

__all__ = ["HttpApi"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_json: Final = msgspec.json.Encoder()


def _respond(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(payload), status=status, content_type="application/json")


def error_response(exc: RoostError) -> web.Response:
    status = int(exc.code) - 4000
    wait = retry_after(exc)
    response = _respond(ErrorAnswer(ErrorBody(int(exc.code), exc.reason, wait)), status=status)
    if wait is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _history_answer(room: str, result: HistoryResult) -> HistoryAnswer:
    p = result.page.position
    return HistoryAnswer(room, result.page.messages, result.has_more, p.epoch, p.head, p.first)


def _seq_param(request: web.Request) -> int:
    """The ``{seq}`` of a message path; the service checks its range."""
    try:
        return int(request.match_info["seq"])
    except ValueError:
        raise ProtocolError("the message seq must be an integer", Code.BAD_FRAME) from None


def _appended(appended: StoredMessage, created: int = 201) -> Answer[Appended]:
    """``{"message", "duplicate"}``, as for a send: ``created`` when stored now, 200 for a retry."""
    return Answer(Appended(appended.message, appended.duplicate), 200 if appended.duplicate else created)


def _retention(room: str, policy: Policy) -> RetentionAnswer:
    return RetentionAnswer(room, policy.max_messages, policy.max_age_s, policy.room_max_messages, policy.room_max_age_s)


def _members(info: RoomInfo) -> list[Member]:
    return [Member(u, r) for u, r in sorted(info.members.items())]


def _key_info(key_id: str, record: KeyRecord) -> KeyInfo:
    """A key as listed: never its secret, nor the hash of it."""
    return KeyInfo(key_id, record.principal, record.scopes, record.name, record.created, record.by)


_NAME_RULE: Final = "1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)"


class HttpApi:
    """The JSON API's handlers; ``@route`` declares each one (routes.py), and ``bind`` serves them."""

    def __init__(
        self,
        service: ChatService,
        tokens: TokenAuthority,
        dev_login: bool,
        admins: tuple[str, ...] = (),
        revocations: Revocations | None = None,
        keys: ApiKeys | None = None,
    ) -> None:
        self.service = service
        self.keys = keys
        self.revocations = revocations
        self.tokens = tokens
        self.dev_login = dev_login
        self.admins = frozenset(admins)

    def routes(self) -> list[web.RouteDef]:
        return bind(self)

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RoostError as exc:
            self.service.metrics.errors.labels(code_label(int(exc.code)), "http").inc()
            if exc.code >= Code.INTERNAL:
                SERVER_ERRORS.warning(str(int(exc.code)), "answered %d over HTTP: %s", int(exc.code), exc.reason)
            return error_response(exc)

    async def user_of(self, request: web.Request) -> str:
        """The credential's user, if it may do the scope its route declares [R-HTTP-80]: a user's token may
        do all a user may, an API key what its scopes say; 4403 otherwise, checked before the route reads or
        writes anything."""
        identity = await self.identity_of(request)
        require(identity, declaration(request).auth)
        return identity.user

    async def identity_of(self, request: web.Request) -> Identity:
        """The bearer token's or API key's identity; 4401 if missing, invalid, expired or revoked (read on every
        request, no cache). The caller checks the scope."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing bearer token", Code.UNAUTHORIZED)
        return await identify(token, self.tokens, self.keys, self.revocations)

    async def admin_of(self, request: web.Request) -> str:
        """The requesting user, if a server administrator; else 4403 (4401 without a valid token). Never an
        API key, whatever its principal (R-SEC-85)."""
        identity = await self.identity_of(request)
        if identity.key is not None:
            raise AuthError("API keys cannot use the admin API", Code.FORBIDDEN)
        if not (identity.admin or identity.user in self.admins):
            raise AuthError("the admin API needs an administrator", Code.FORBIDDEN)
        return identity.user

    @route("GET", "/healthz", "the process answers (the older name of /livez)", auth=PUBLIC)
    async def healthz(self, request: web.Request) -> Status:
        return Status("ok")

    @route(
        "POST",
        "/api/login",
        "development login: a token for any valid user name",
        auth=PUBLIC,
        errors=(Code.FORBIDDEN,),
    )
    async def login(self, request: web.Request, body: Body[Login]) -> LoginAnswer:
        """Only on a server in development mode (no key configured); 403 otherwise."""
        if not self.dev_login:
            raise AuthError("development login is disabled on this server", Code.FORBIDDEN)
        name = (await body.read()).name
        return LoginAnswer(name, self.tokens.issue(name), True)

    @route("GET", "/api/rooms", "the user's rooms, the public rooms and the unread counts", auth=ROOMS_READ)
    async def list_rooms(self, request: web.Request) -> Rooms:
        user = await self.user_of(request)
        mine = await self.service.rooms_of(user)
        unread = await self.service.unread(user)
        counts = {room: Unread(c["head"], c["read"], c["unread"], c["mentions"]) for room, c in unread.items()}
        return Rooms(mine, await self.service.public_rooms(), counts, await self.service.notify.levels(user))

    @route(
        "POST",
        "/api/rooms",
        "create a room",
        auth=ROOMS_WRITE,
        statuses=(201,),
        errors=(Code.CONFLICT, Code.TOO_MANY_ROOMS, Code.RATE_LIMITED),
    )
    async def create_room(self, request: web.Request, body: Body[NewRoom]) -> RoomCreated:
        user = await self.user_of(request)
        new = await body.read()
        await self.service.create_room(user, new.room, new.kind)
        return RoomCreated(new.room, new.kind)

    @route(
        "POST",
        "/api/rooms/{room}/join",
        "join a room (idempotent)",
        auth=ROOMS_WRITE,
        errors=(Code.TOO_MANY_ROOMS, Code.RATE_LIMITED),
    )
    async def join(self, request: web.Request) -> RoomRef:
        user = await self.user_of(request)
        room = request.match_info["room"]
        await self.service.join(user, room)
        return RoomRef(room)

    @route(
        "POST", "/api/rooms/{room}/leave", "leave a room (idempotent)", auth=ROOMS_WRITE, errors=(Code.RATE_LIMITED,)
    )
    async def leave(self, request: web.Request) -> RoomRef:
        user = await self.user_of(request)
        room = request.match_info["room"]
        await self.service.leave(user, room)
        return RoomRef(room)

    @route(
        "GET",
        "/api/rooms/{room}/messages",
        "a page of a room's history",
        auth=ROOMS_READ,
        errors=(Code.RESYNC_REQUIRED,),
    )
    async def history(self, request: web.Request, query: Query[HistoryQuery]) -> HistoryAnswer:
        """``after``/``before`` are seqs; ``since_ts`` (``last_sync_timestamp``) a time in ms: approximate."""
        user = await self.user_of(request)
        return await self._history(user, request.match_info["room"], query.read())

    @route(
        "GET",
        "/api/messages",
        "a page of a room's history (the seed's call)",
        auth=ROOMS_READ,
        errors=(Code.UNKNOWN_ROOM, Code.RESYNC_REQUIRED),
    )
    async def history_by_room_id(self, request: web.Request, query: Query[MessageQuery]) -> HistoryAnswer:
        """The seed's own call, ``GET /api/messages?room_id=...&last_sync_timestamp=...``: the same page."""
        user = await self.user_of(request)
        q = query.read()
        return await self._history(user, q.room_id, q)

    async def _history(self, user: str, room: str, q: HistoryQuery) -> HistoryAnswer:
        if q.since_ts is not None and q.last_sync_timestamp is not None:
            raise ProtocolError("give since_ts or last_sync_timestamp, not both", Code.BAD_FRAME)
        since_ts = q.since_ts if q.last_sync_timestamp is None else q.last_sync_timestamp
        after, before = q.after, q.before
        limit = 50 if q.limit is None else q.limit
        if since_ts is not None:
            if after is not None or before is not None or q.thread is not None:
                raise ProtocolError("since_ts (last_sync_timestamp) goes alone", Code.BAD_FRAME)
            # One lookup of the highest seq stamped before the time, then an ordinary page after it.
            after = await self.service.seq_before_time(user, room, since_ts)
        result = await self.service.history(user, room, after=after, before=before, limit=limit, thread=q.thread)
        return _history_answer(room, result)

    @route(
        "POST",
        "/api/rooms/{room}/messages",
        "send a message (idempotent by cmid)",
        auth=PUBLISH,
        statuses=(201, 200),
        errors=(Code.CONFLICT, Code.TOO_LARGE, Code.RATE_LIMITED),
    )
    async def send(self, request: web.Request, body: Body[NewMessage]) -> Answer[Appended]:
        """As the credential's user, or with ``"as": "system"`` as the reserved sender ``system`` (an API key
        with ``publish:system`` only, R-SEC-84); the scope is checked before anything is stored."""
        identity = await self.identity_of(request)
        room = request.match_info["room"]
        new = await body.read()
        if new.as_ is None or new.as_ == identity.user:
            require(identity, PUBLISH)
            appended = await self.service.send(
                identity.user,
                room,
                new.cmid,
                new.body,
                reply_to=new.reply_to,
                thread=new.thread,
                attachments=new.attachments,
            )
        elif new.as_ == SYSTEM_SENDER:
            if identity.scopes is None:
                raise AuthError("only an API key with the scope 'publish:system' posts as system", Code.FORBIDDEN)
            require(identity, PUBLISH_SYSTEM)
            appended = await self.service.send_system(
                identity.user,
                room,
                new.cmid,
                new.body,
                reply_to=new.reply_to,
                thread=new.thread,
                attachments=new.attachments,
            )
        else:
            raise AuthError("a message is sent as its sender (or as system, by an API key)", Code.FORBIDDEN)
        return _appended(appended)

    @route(
        "POST",
        "/api/rooms/{room}/messages/{seq}/edit",
        "replace the text of my message",
        auth=PUBLISH,
        statuses=(201, 200),
        errors=(Code.CONFLICT, Code.TOO_LARGE, Code.RATE_LIMITED),
    )
    async def edit(self, request: web.Request, body: Body[EditRequest]) -> Answer[Appended]:
        user = await self.user_of(request)
        room, target = request.match_info["room"], _seq_param(request)
        change = await body.read()
        return _appended(await self.service.edit(user, room, target, change.body, change.cmid))

    @route(
        "DELETE",
        "/api/rooms/{room}/messages/{seq}",
        "delete a message (mine, or any as a moderator)",
        auth=PUBLISH,
        errors=(Code.CONFLICT, Code.RATE_LIMITED),
    )
    async def delete(self, request: web.Request, query: Query[DeleteQuery]) -> Answer[Appended]:
        """``DELETE`` answers 200 whether it stored the delete now or answers a retry (``duplicate``). With
        ``?erase=true`` the text also leaves the server's store (an erasure)."""
        user = await self.user_of(request)
        room, target = request.match_info["room"], _seq_param(request)
        q = query.read()
        return _appended(await self.service.delete(user, room, target, q.cmid, erase=q.erase), created=200)

    @route(
        "POST",
        "/api/rooms/{room}/messages/{seq}/reactions",
        "react to a message",
        auth=PUBLISH,
        statuses=(201, 200),
        errors=(Code.CONFLICT, Code.TOO_LARGE, Code.RATE_LIMITED),
    )
    async def react(self, request: web.Request, body: Body[Reaction]) -> Answer[Appended]:
        user = await self.user_of(request)
        room, target = request.match_info["room"], _seq_param(request)
        emoji = (await body.read()).emoji
        return _appended(await self.service.react(user, room, target, emoji))

    @route(
        "DELETE",
        "/api/rooms/{room}/messages/{seq}/reactions/{emoji}",
        "take back my reaction",
        auth=PUBLISH,
        errors=(Code.CONFLICT, Code.TOO_LARGE, Code.RATE_LIMITED),
    )
    async def unreact(self, request: web.Request) -> Answer[Appended]:
        user = await self.user_of(request)
        room, target, emoji = request.match_info["room"], _seq_param(request), request.match_info["emoji"]
        return _appended(await self.service.react(user, room, target, emoji, remove=True), created=200)

    @route(
        "POST", "/api/sync", "the backlogs of many rooms after their cursors", auth=ROOMS_READ, errors=(Code.TOO_LARGE,)
    )
    async def sync(self, request: web.Request, body: Body[SyncRequest]) -> SyncAnswer:
        """``{"rooms": {room: cursor}}`` in; each room's backlog after its cursor out, with ``has_more``, within
        ``max_sync_bytes`` over all rooms; ``next`` names the rooms to ask for again, with their cursors."""
        user = await self.user_of(request)
        wanted = await body.read()
        if len(wanted.rooms) > 100:
            raise ProtocolError("at most 100 rooms per sync", Code.TOO_LARGE)
        result = await self.service.sync(user, wanted.rooms, wanted.limit)
        out: dict[str, msgspec.Raw] = {}
        for room, entry in result.rooms.items():
            if isinstance(entry, RoostError):
                out[room] = msgspec.Raw(_json.encode(ErrorAnswer(ErrorBody(int(entry.code), entry.reason))))
            else:
                out[room] = msgspec.Raw(_json.encode(_history_answer(room, entry)))
        return SyncAnswer(out, result.next)

    @route("POST", "/api/rooms/{room}/read", "move my read position forward", auth=ROOMS_READ)
    async def mark_read(self, request: web.Request, body: Body[ReadMark]) -> ReadAnswer:
        user = await self.user_of(request)
        room = request.match_info["room"]
        seq = (await body.read()).seq
        return ReadAnswer(room, await self.service.mark_read(user, room, seq))

    @route(
        "PUT",
        "/api/rooms/{room}/notify",
        "how a room notifies me: all, mentions or none",
        auth=ROOMS_READ,
        errors=(Code.RATE_LIMITED,),
    )
    async def set_notify(self, request: web.Request, body: Body[NotifyChoice]) -> NotifyAnswer:
        """Kept per user on the server (``GET /api/rooms`` lists them in ``notify``) and told to the user's devices
        with a ``notify`` event of their stream. The room is checked before the body."""
        user, room = await self.user_of(request), request.match_info["room"]
        self.service.rooms.refuse_inbox(user, room)
        await self.service.check_member(user, room)
        self.service.sends.check(user)
        level = (await body.read()).level
        return NotifyAnswer(room, await self.service.notify.set_level(user, room, level))

    @route("GET", "/api/rooms/{room}/receipts", "how far each member has read", auth=ROOMS_READ)
    async def receipts(self, request: web.Request) -> Receipts:
        user = await self.user_of(request)
        room = request.match_info["room"]
        return Receipts(room, await self.service.receipts(user, room))

    @route("GET", "/api/rooms/{room}/members", "a room's members and their roles (for members)", auth=ROOMS_READ)
    async def members(self, request: web.Request) -> Members:
        """A room's members and their roles, for its members."""
        user = await self.user_of(request)
        room = request.match_info["room"]
        await self.service.check_member(user, room)
        info = await self.service.room_info(room)
        return Members(room, info.kind, _members(info))

    @route(
        "POST",
        "/api/rooms/{room}/invite",
        "owner or admin: allow a user to join",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def invite(self, request: web.Request, body: Body[UserRef]) -> RoomUser:
        return await self._moderate(request, body, self.service.invite)

    @route(
        "POST",
        "/api/rooms/{room}/kick",
        "owner or admin: remove a member",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def kick(self, request: web.Request, body: Body[UserRef]) -> RoomUser:
        return await self._moderate(request, body, self.service.kick)

    @route(
        "POST",
        "/api/rooms/{room}/members",
        "API keys: make a user a member now",
        auth=ROOMS_WRITE,
        errors=(Code.TOO_MANY_ROOMS, Code.RATE_LIMITED),
    )
    async def add_member(self, request: web.Request, body: Body[UserRef]) -> RoomUser:
        """An API key's principal (owner or admin of the room) makes a user a member: an invitation and the
        user's join (R-SEC-88). A user's token gets 4403: users invite, and the invitee joins."""
        identity = await self.identity_of(request)
        if identity.scopes is None:
            raise AuthError("only an API key adds members: invite the user instead", Code.FORBIDDEN)
        require(identity, declaration(request).auth)
        room = request.match_info["room"]
        user = (await body.read()).user
        await self.service.add_member(identity.user, room, user)
        return RoomUser(room, user)

    @route(
        "POST",
        "/api/rooms/{room}/ban",
        "owner or admin: remove a user and refuse them",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def ban(self, request: web.Request, body: Body[UserRef]) -> RoomUser:
        return await self._moderate(request, body, self.service.ban)

    @route(
        "POST", "/api/rooms/{room}/unban", "owner or admin: lift a ban", auth=ROOMS_WRITE, errors=(Code.RATE_LIMITED,)
    )
    async def unban(self, request: web.Request, body: Body[UserRef]) -> RoomUser:
        return await self._moderate(request, body, self.service.unban)

    async def _moderate(
        self, request: web.Request, body: Body[UserRef], action: Callable[[str, str, str], Awaitable[None]]
    ) -> RoomUser:
        """``POST /api/rooms/{room}/<action>`` with ``{"user": ...}``: the service checks the roles."""
        user, room = await self.user_of(request), request.match_info["room"]
        target = (await body.read()).user
        await action(user, room, target)
        return RoomUser(room, target)

    @route(
        "POST",
        "/api/rooms/{room}/role",
        "owner: make a member admin, or member again",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def role(self, request: web.Request, body: Body[RoleChange]) -> RoleAnswer:
        user, room = await self.user_of(request), request.match_info["room"]
        change = await body.read()
        await self.service.set_role(user, room, change.user, change.role)
        return RoleAnswer(room, change.user, change.role)

    @route(
        "POST",
        "/api/dm",
        "open (create on first use) the direct conversation with a user",
        auth=ROOMS_WRITE,
        errors=(Code.UNKNOWN_ROOM, Code.TOO_MANY_ROOMS, Code.RATE_LIMITED),
    )
    async def dm(self, request: web.Request, body: Body[UserRef]) -> RoomRef:
        user = await self.user_of(request)
        other = (await body.read()).user
        return RoomRef(await self.service.dm(user, other))

    # ---- invitations (the per-user stream, docs/protocol.md section 19) -----------------------

    @route("GET", "/api/invites", "my pending invitations", auth=ROOMS_READ)
    async def invites(self, request: web.Request) -> Invites:
        """Each invitation the user holds and has not used, declined or lost (revoked, a ban)."""
        user = await self.user_of(request)
        return Invites([PendingInvite(room, by) for room, by in await self.service.invitations_of(user)])

    @route(
        "POST",
        "/api/rooms/{room}/decline",
        "decline my invitation to a room",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def decline(self, request: web.Request) -> RoomRef:
        """404 when the user holds no invitation to the room (whether or not it exists)."""
        user, room = await self.user_of(request), request.match_info["room"]
        await self.service.decline(user, room)
        return RoomRef(room)

    @route(
        "DELETE",
        "/api/rooms/{room}/invites/{user}",
        "revoke an invitation (who made it, or an owner or admin)",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def revoke_invite(self, request: web.Request) -> RoomUser:
        """200 also when the user holds no invitation (nothing to revoke)."""
        actor, room, user = await self.user_of(request), request.match_info["room"], request.match_info["user"]
        await self.service.revoke_invite(actor, room, user)
        return RoomUser(room, user)

    # ---- admin ------------------------------------------------------------------------------

    @route("GET", "/api/admin/rooms", "every room with its kind, owner and member count", auth=ADMIN)
    async def admin_rooms(self, request: web.Request) -> AdminRooms:
        """Every room with its kind, owner and member count."""
        await self.admin_of(request)
        out = []
        for room in await self.service.all_rooms():
            info = await self.service.room_info(room)
            out.append(AdminRoom(room, info.kind, info.owner, len(info.members)))
        return AdminRooms(out)

    @route("GET", "/api/admin/rooms/{room}", "a room's members, roles, bans and invitations", auth=ADMIN)
    async def admin_room(self, request: web.Request) -> RoomDetail:
        await self.admin_of(request)
        info = await self.service.room_info(request.match_info["room"])
        return RoomDetail(info.room, info.kind, info.owner, _members(info), info.bans, info.invites)

    @route(
        "POST",
        "/api/admin/rooms/{room}/bans",
        "ban a user from a room, whatever their role",
        auth=ADMIN,
        errors=(Code.RATE_LIMITED,),
    )
    async def admin_ban(self, request: web.Request, body: Body[UserRef]) -> Banned:
        admin, room = await self.admin_of(request), request.match_info["room"]
        user = (await body.read()).user
        await self.service.ban(admin, room, user, as_admin=True)
        return Banned(room, user, True)

    @route("DELETE", "/api/admin/rooms/{room}/bans/{user}", "lift a ban", auth=ADMIN, errors=(Code.RATE_LIMITED,))
    async def admin_unban(self, request: web.Request) -> Banned:
        admin, room, user = await self.admin_of(request), request.match_info["room"], request.match_info["user"]
        await self.service.unban(admin, room, user, as_admin=True)
        return Banned(room, user, False)

    @route(
        "DELETE",
        "/api/admin/rooms/{room}/messages/{seq}",
        "remove a message as an administrator",
        auth=ADMIN,
        errors=(Code.CONFLICT, Code.RATE_LIMITED),
    )
    async def admin_delete(self, request: web.Request, query: Query[AdminDeleteQuery]) -> Answer[Appended]:
        """Remove a message as a server administrator: a sequenced ``delete`` by the admin (a tombstone); with
        ``?erase=true`` an erasure."""
        admin = await self.admin_of(request)
        room, target = request.match_info["room"], _seq_param(request)
        erase = query.read().erase
        return _appended(await self.service.delete(admin, room, target, moderator=True, erase=erase), created=200)

    # ---- retention --------------------------------------------------------------------------

    @route("GET", "/api/rooms/{room}/retention", "the room's retention policy (for members)", auth=ROOMS_READ)
    async def retention(self, request: web.Request) -> RetentionAnswer:
        user, room = await self.user_of(request), request.match_info["room"]
        return _retention(room, await self.service.retention_policy(user, room))

    @route(
        "PUT",
        "/api/rooms/{room}/retention",
        "owner or admin: set the room's retention policy",
        auth=ROOMS_WRITE,
        errors=(Code.RATE_LIMITED,),
    )
    async def set_retention(self, request: web.Request, body: Body[RetentionPolicy]) -> RetentionAnswer:
        """``null`` (or absent) follows the server's default; 0 keeps for ever. A change is a ``retention`` event.
        The room is checked before the body (which refuses unknown fields): an unknown room is 404 whatever it says."""
        user, room = await self.user_of(request), request.match_info["room"]
        await self.service.check_member(user, room)
        new = await body.read()
        return _retention(room, await self.service.set_retention(user, room, new.max_messages, new.max_age_s))

    @route("PUT", "/api/admin/rooms/{room}/retention", "set any room's retention policy", auth=ADMIN)
    async def admin_set_retention(self, request: web.Request, body: Body[RetentionPolicy]) -> RetentionAnswer:
        admin, room = await self.admin_of(request), request.match_info["room"]
        await self.service.rooms.require_room(room)
        new = await body.read()
        policy = await self.service.set_retention(admin, room, new.max_messages, new.max_age_s, as_admin=True)
        return _retention(room, policy)

    @route("POST", "/api/admin/users/{user}/revoke-tokens", "void every token of a user issued up to now", auth=ADMIN)
    async def admin_revoke(self, request: web.Request) -> RevokedTokens:
        """Void every token of the user issued up to now (this second included), on every node."""
        await self.admin_of(request)
        user = request.match_info["user"]
        if not valid_user(user):
            raise ProtocolError(f"user names are {_NAME_RULE}", Code.BAD_FRAME)
        if self.revocations is None:
            raise AuthError("this server does not keep revocations", Code.FORBIDDEN)
        return RevokedTokens(user, await self.revocations.revoke(user))

    def _keys(self) -> ApiKeys:
        if self.keys is None:
            raise AuthError("this server does not keep API keys", Code.FORBIDDEN)
        return self.keys

    @route("POST", "/api/admin/apikeys", "create an API key (its secret is shown once)", auth=ADMIN, statuses=(201,))
    async def admin_create_key(self, request: web.Request, body: Body[NewKey]) -> KeyCreated:
        """A new API key: the only answer that holds its secret (``key``); only its sha256 is stored."""
        admin = await self.admin_of(request)
        new = await body.read()
        if not valid_user(new.principal):
            raise ProtocolError(f"the principal is a user name: {_NAME_RULE}", Code.BAD_FRAME)
        issued = await self._keys().create(new.principal, new.scopes, new.name, admin)
        info = _key_info(issued.id, issued.record)
        return KeyCreated(info.id, issued.key, info.principal, info.scopes, info.name, info.created, info.created_by)

    @route("GET", "/api/admin/apikeys", "every API key, without its secret", auth=ADMIN)
    async def admin_keys(self, request: web.Request) -> KeyList:
        """Every key, without its secret or hash."""
        await self.admin_of(request)
        keys = await self._keys().all()
        return KeyList([_key_info(key_id, keys[key_id]) for key_id in sorted(keys)])

    @route("DELETE", "/api/admin/apikeys/{id}", "revoke an API key on every node", auth=ADMIN)
    async def admin_revoke_key(self, request: web.Request) -> KeyRevoked:
        await self.admin_of(request)
        key_id = request.match_info["id"]
        if not await self._keys().revoke(key_id):
            raise NotFound(f"no API key {key_id!r}", Code.UNKNOWN_ROOM)
        return KeyRevoked(key_id, True)


def frame_error(exc: RoostError) -> bytes:
    return frames.encode(frames.Error(code=int(exc.code), reason=exc.reason))
