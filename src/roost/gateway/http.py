"""HTTP API: health, development login, rooms, membership, history, multi-room sync, send, edit, delete and
react; admin.

Errors are JSON ``{"error": {"code": 44xx, "reason": "..."}}`` with the HTTP status given by the
code's last three digits. Every route but ``/healthz``, ``/`` and ``/api/login`` (and the probes in
gateway/health.py) needs ``Authorization: Bearer <token>``, a user's JWT or an API key (apikeys.py), which
each route checks against the one scope it needs (``user_of``). Routes under ``/api/admin/`` need a server
administrator: a token with ``"roles": ["admin"]``, or a user named by ``--admin``; anyone else, and every
API key, gets 4403.
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
from ..ports import Appended
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import AuthError, NotFound, ProtocolError, RoostError, retry_after
from ..protocol.types import MAX_SEQ, SYSTEM_SENDER, Message, valid_user
from ..revocation import Revocations
from ..service import ChatService, HistoryResult, RoomInfo
from .credentials import identify

__all__ = ["HttpApi"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Login(msgspec.Struct):
    name: str


class _NewRoom(msgspec.Struct):
    room: str
    kind: str = "public"


class _UserRef(msgspec.Struct):
    user: str


class _RoleChange(msgspec.Struct):
    user: str
    role: str


class _NewMessage(msgspec.Struct):
    cmid: str
    body: str
    as_: str | None = msgspec.field(default=None, name="as")


class _NewKey(msgspec.Struct):
    principal: str
    scopes: list[str]
    name: str = ""


class _EditRequest(msgspec.Struct):
    cmid: str
    body: str


class _Reaction(msgspec.Struct):
    emoji: str


class _ReadMark(msgspec.Struct):
    seq: int


class _SyncRequest(msgspec.Struct):
    rooms: dict[str, int]
    limit: int = 100


_json: Final = msgspec.json.Encoder()


def _respond(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(payload), status=status, content_type="application/json")


def error_response(exc: RoostError) -> web.Response:
    status = int(exc.code) - 4000
    error: dict[str, Any] = {"code": int(exc.code), "reason": exc.reason}
    wait = retry_after(exc)
    if wait is None:
        return _respond({"error": error}, status=status)
    error["retry_after_s"] = wait
    response = _respond({"error": error}, status=status)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _history_json(room: str, result: HistoryResult) -> dict[str, Any]:
    p = result.page.position
    return {
        "room": room,
        "messages": result.page.messages,
        "has_more": result.has_more,
        "epoch": p.epoch,
        "head": p.head,
        "first": p.first,
    }


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError(f"{name} must be an integer", Code.BAD_FRAME) from None
    if abs(value) > MAX_SEQ:
        raise ProtocolError(f"{name} is out of range", Code.BAD_FRAME)
    return value


def _since_param(request: web.Request) -> int | None:
    """``since_ts``, or its name in the seed's API, ``last_sync_timestamp`` (ms since the Unix epoch)."""
    since_ts = _int_param(request, "since_ts")
    seed = _int_param(request, "last_sync_timestamp")
    if since_ts is not None and seed is not None:
        raise ProtocolError("give since_ts or last_sync_timestamp, not both", Code.BAD_FRAME)
    return since_ts if seed is None else seed


def _seq_param(request: web.Request) -> int:
    """The ``{seq}`` of a message path; the service checks its range."""
    try:
        return int(request.match_info["seq"])
    except ValueError:
        raise ProtocolError("the message seq must be an integer", Code.BAD_FRAME) from None


def _appended(appended: Appended, created: int = 201) -> web.Response:
    """``{"message", "duplicate"}``, as for a send: ``created`` when stored now, 200 for a retry."""
    payload = {"message": appended.message, "duplicate": appended.duplicate}
    return _respond(payload, status=200 if appended.duplicate else created)


async def _body(request: web.Request, kind: type[Any]) -> Any:
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(f"invalid request body: {exc}", Code.BAD_FRAME) from None


def _room_json(info: RoomInfo) -> dict[str, Any]:
    return {
        "room": info.room,
        "kind": info.kind,
        "owner": info.owner,
        "members": [{"user": u, "role": r} for u, r in sorted(info.members.items())],
        "bans": info.bans,
        "invites": info.invites,
    }


def _key_json(record: KeyRecord) -> dict[str, Any]:
    """A key as listed: never its secret, nor the hash of it."""
    return {
        "principal": record.principal,
        "scopes": record.scopes,
        "name": record.name,
        "created": record.created,
        "created_by": record.by,
    }


class HttpApi:
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
        return [
            web.get("/healthz", self.healthz),
            web.post("/api/login", self.login),
            web.get("/api/rooms", self.list_rooms),
            web.post("/api/rooms", self.create_room),
            web.post("/api/rooms/{room}/join", self.join),
            web.post("/api/rooms/{room}/leave", self.leave),
            web.get("/api/rooms/{room}/messages", self.history),
            web.get("/api/messages", self.history_by_room_id),
            web.post("/api/rooms/{room}/messages", self.send),
            web.post("/api/rooms/{room}/messages/{seq}/edit", self.edit),
            web.delete("/api/rooms/{room}/messages/{seq}", self.delete),
            web.post("/api/rooms/{room}/messages/{seq}/reactions", self.react),
            web.delete("/api/rooms/{room}/messages/{seq}/reactions/{emoji}", self.unreact),
            web.post("/api/sync", self.sync),
            web.post("/api/rooms/{room}/read", self.mark_read),
            web.get("/api/rooms/{room}/receipts", self.receipts),
            web.get("/api/rooms/{room}/members", self.members),
            web.post("/api/rooms/{room}/invite", self.invite),
            web.post("/api/rooms/{room}/kick", self.kick),
            web.post("/api/rooms/{room}/members", self.add_member),
            web.post("/api/rooms/{room}/ban", self.ban),
            web.post("/api/rooms/{room}/unban", self.unban),
            web.post("/api/rooms/{room}/role", self.role),
            web.post("/api/dm", self.dm),
            web.get("/api/admin/rooms", self.admin_rooms),
            web.get("/api/admin/rooms/{room}", self.admin_room),
            web.post("/api/admin/rooms/{room}/bans", self.admin_ban),
            web.delete("/api/admin/rooms/{room}/bans/{user}", self.admin_unban),
            web.delete("/api/admin/rooms/{room}/messages/{seq}", self.admin_delete),
            web.post("/api/admin/users/{user}/revoke-tokens", self.admin_revoke),
            web.post("/api/admin/apikeys", self.admin_create_key),
            web.get("/api/admin/apikeys", self.admin_keys),
            web.delete("/api/admin/apikeys/{id}", self.admin_revoke_key),
        ]

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RoostError as exc:
            self.service.metrics.errors.labels(code_label(int(exc.code)), "http").inc()
            if exc.code >= Code.INTERNAL:
                SERVER_ERRORS.warning(str(int(exc.code)), "answered %d over HTTP: %s", int(exc.code), exc.reason)
            return error_response(exc)

    async def user_of(self, request: web.Request, scope: str) -> str:
        """The credential's user, if it may do ``scope`` [R-HTTP-80]: a user's token may do all a user may, an
        API key what its scopes say; 4403 otherwise, checked before the route reads or writes anything."""
        identity = await self.identity_of(request)
        require(identity, scope)
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

    async def healthz(self, request: web.Request) -> web.Response:
        return _respond({"status": "ok"})

    async def login(self, request: web.Request) -> web.Response:
        if not self.dev_login:
            raise AuthError("development login is disabled on this server", Code.FORBIDDEN)
        body: _Login = await _body(request, _Login)
        return _respond({"user": body.name, "token": self.tokens.issue(body.name), "insecure": True})

    async def list_rooms(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_READ)
        mine = await self.service.rooms_of(user)
        unread = await self.service.unread(user)
        return _respond({"rooms": mine, "public": await self.service.public_rooms(), "unread": unread})

    async def create_room(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_WRITE)
        body: _NewRoom = await _body(request, _NewRoom)
        await self.service.create_room(user, body.room, body.kind)
        return _respond({"room": body.room, "kind": body.kind}, status=201)

    async def dm(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_WRITE)
        body: _UserRef = await _body(request, _UserRef)
        return _respond({"room": await self.service.dm(user, body.user)})

    async def members(self, request: web.Request) -> web.Response:
        """A room's members and their roles, for its members."""
        user = await self.user_of(request, ROOMS_READ)
        room = request.match_info["room"]
        await self.service.check_member(user, room)
        info = await self.service.room_info(room)
        return _respond({"room": room, "kind": info.kind, "members": _room_json(info)["members"]})

    async def invite(self, request: web.Request) -> web.Response:
        return await self._moderate(request, self.service.invite)

    async def add_member(self, request: web.Request) -> web.Response:
        """An API key's principal (owner or admin of the room) makes a user a member: an invitation and the
        user's join (R-SEC-88). A user's token gets 4403: users invite, and the invitee joins."""
        identity = await self.identity_of(request)
        if identity.scopes is None:
            raise AuthError("only an API key adds members: invite the user instead", Code.FORBIDDEN)
        require(identity, ROOMS_WRITE)
        room = request.match_info["room"]
        body: _UserRef = await _body(request, _UserRef)
        await self.service.add_member(identity.user, room, body.user)
        return _respond({"room": room, "user": body.user})

    async def kick(self, request: web.Request) -> web.Response:
        return await self._moderate(request, self.service.kick)

    async def ban(self, request: web.Request) -> web.Response:
        return await self._moderate(request, self.service.ban)

    async def unban(self, request: web.Request) -> web.Response:
        return await self._moderate(request, self.service.unban)

    async def _moderate(self, request: web.Request, action: Callable[[str, str, str], Awaitable[None]]) -> web.Response:
        """``POST /api/rooms/{room}/<action>`` with ``{"user": ...}``: the service checks the roles."""
        user, room = await self.user_of(request, ROOMS_WRITE), request.match_info["room"]
        body: _UserRef = await _body(request, _UserRef)
        await action(user, room, body.user)
        return _respond({"room": room, "user": body.user})

    async def role(self, request: web.Request) -> web.Response:
        user, room = await self.user_of(request, ROOMS_WRITE), request.match_info["room"]
        body: _RoleChange = await _body(request, _RoleChange)
        await self.service.set_role(user, room, body.user, body.role)
        return _respond({"room": room, "user": body.user, "role": body.role})

    # ---- admin ------------------------------------------------------------------------------

    async def admin_rooms(self, request: web.Request) -> web.Response:
        """Every room with its kind, owner and member count."""
        await self.admin_of(request)
        out = []
        for room in await self.service.all_rooms():
            info = await self.service.room_info(room)
            out.append({"room": room, "kind": info.kind, "owner": info.owner, "members": len(info.members)})
        return _respond({"rooms": out})

    async def admin_room(self, request: web.Request) -> web.Response:
        await self.admin_of(request)
        return _respond(_room_json(await self.service.room_info(request.match_info["room"])))

    async def admin_ban(self, request: web.Request) -> web.Response:
        admin, room = await self.admin_of(request), request.match_info["room"]
        body: _UserRef = await _body(request, _UserRef)
        await self.service.ban(admin, room, body.user, as_admin=True)
        return _respond({"room": room, "user": body.user, "banned": True})

    async def admin_unban(self, request: web.Request) -> web.Response:
        admin, room, user = await self.admin_of(request), request.match_info["room"], request.match_info["user"]
        await self.service.unban(admin, room, user, as_admin=True)
        return _respond({"room": room, "user": user, "banned": False})

    async def admin_delete(self, request: web.Request) -> web.Response:
        """Remove a message as a server administrator: a sequenced ``delete`` by the admin (a tombstone)."""
        admin = await self.admin_of(request)
        room, target = request.match_info["room"], _seq_param(request)
        return _appended(await self.service.delete(admin, room, target, moderator=True), created=200)

    async def admin_revoke(self, request: web.Request) -> web.Response:
        """Void every token of the user issued up to now (this second included), on every node."""
        await self.admin_of(request)
        user = request.match_info["user"]
        if not valid_user(user):
            raise ProtocolError(
                "user names are 1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)", Code.BAD_FRAME
            )
        if self.revocations is None:
            raise AuthError("this server does not keep revocations", Code.FORBIDDEN)
        return _respond({"user": user, "revoked_before": await self.revocations.revoke(user)})

    def _keys(self) -> ApiKeys:
        if self.keys is None:
            raise AuthError("this server does not keep API keys", Code.FORBIDDEN)
        return self.keys

    async def admin_create_key(self, request: web.Request) -> web.Response:
        """A new API key: the only answer that holds its secret (``key``); only its sha256 is stored."""
        admin = await self.admin_of(request)
        body: _NewKey = await _body(request, _NewKey)
        if not valid_user(body.principal):
            raise ProtocolError(
                "the principal is a user name: 1-64 characters of A-Z a-z 0-9 _ . @ - (and not the reserved system)",
                Code.BAD_FRAME,
            )
        issued = await self._keys().create(body.principal, body.scopes, body.name, admin)
        return _respond({"id": issued.id, "key": issued.key, **_key_json(issued.record)}, status=201)

    async def admin_keys(self, request: web.Request) -> web.Response:
        """Every key, without its secret or hash."""
        await self.admin_of(request)
        keys = await self._keys().all()
        return _respond({"keys": [{"id": key_id, **_key_json(keys[key_id])} for key_id in sorted(keys)]})

    async def admin_revoke_key(self, request: web.Request) -> web.Response:
        await self.admin_of(request)
        key_id = request.match_info["id"]
        if not await self._keys().revoke(key_id):
            raise NotFound(f"no API key {key_id!r}", Code.UNKNOWN_ROOM)
        return _respond({"id": key_id, "revoked": True})

    async def join(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_WRITE)
        room = request.match_info["room"]
        await self.service.join(user, room)
        return _respond({"room": room})

    async def leave(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_WRITE)
        room = request.match_info["room"]
        await self.service.leave(user, room)
        return _respond({"room": room})

    async def history(self, request: web.Request) -> web.Response:
        """``after``/``before`` are seqs; ``since_ts`` (``last_sync_timestamp``) a time in ms: approximate."""
        return await self._history(request, request.match_info["room"])

    async def history_by_room_id(self, request: web.Request) -> web.Response:
        """The seed's own call, ``GET /api/messages?room_id=...&last_sync_timestamp=...``: the same page."""
        room = request.query.get("room_id")
        if not room:
            raise ProtocolError("room_id is required", Code.BAD_FRAME)
        return await self._history(request, room)

    async def _history(self, request: web.Request, room: str) -> web.Response:
        user = await self.user_of(request, ROOMS_READ)
        after = _int_param(request, "after")
        before = _int_param(request, "before")
        since_ts = _since_param(request)
        limit = _int_param(request, "limit")
        limit = 50 if limit is None else limit
        if since_ts is not None:
            if after is not None or before is not None:
                raise ProtocolError("since_ts (last_sync_timestamp) goes alone", Code.BAD_FRAME)
            # One lookup of the highest seq stamped before the time, then an ordinary page after it.
            after = await self.service.seq_before_time(user, room, since_ts)
        result = await self.service.history(user, room, after=after, before=before, limit=limit)
        return _respond(_history_json(room, result))

    async def send(self, request: web.Request) -> web.Response:
        """As the credential's user, or with ``"as": "system"`` as the reserved sender ``system`` (an API key
        with ``publish:system`` only, R-SEC-84); the scope is checked before anything is stored."""
        identity = await self.identity_of(request)
        room = request.match_info["room"]
        body: _NewMessage = await _body(request, _NewMessage)
        if body.as_ is None or body.as_ == identity.user:
            require(identity, PUBLISH)
            appended = await self.service.send(identity.user, room, body.cmid, body.body)
        elif body.as_ == SYSTEM_SENDER:
            if identity.scopes is None:
                raise AuthError("only an API key with the scope 'publish:system' posts as system", Code.FORBIDDEN)
            require(identity, PUBLISH_SYSTEM)
            appended = await self.service.send_system(identity.user, room, body.cmid, body.body)
        else:
            raise AuthError("a message is sent as its sender (or as system, by an API key)", Code.FORBIDDEN)
        message: Message = appended.message
        payload = {"message": message, "duplicate": appended.duplicate}
        return _respond(payload, status=200 if appended.duplicate else 201)

    async def edit(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, PUBLISH)
        room, target = request.match_info["room"], _seq_param(request)
        body: _EditRequest = await _body(request, _EditRequest)
        return _appended(await self.service.edit(user, room, target, body.body, body.cmid))

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE`` answers 200 whether it stored the delete now or answers a retry (``duplicate``)."""
        user = await self.user_of(request, PUBLISH)
        room, target = request.match_info["room"], _seq_param(request)
        cmid = request.query.get("cmid") or None
        return _appended(await self.service.delete(user, room, target, cmid), created=200)

    async def react(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, PUBLISH)
        room, target = request.match_info["room"], _seq_param(request)
        body: _Reaction = await _body(request, _Reaction)
        return _appended(await self.service.react(user, room, target, body.emoji))

    async def unreact(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, PUBLISH)
        room, target, emoji = request.match_info["room"], _seq_param(request), request.match_info["emoji"]
        return _appended(await self.service.react(user, room, target, emoji, remove=True), created=200)

    async def mark_read(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_READ)
        room = request.match_info["room"]
        body: _ReadMark = await _body(request, _ReadMark)
        return _respond({"room": room, "read": await self.service.mark_read(user, room, body.seq)})

    async def receipts(self, request: web.Request) -> web.Response:
        user = await self.user_of(request, ROOMS_READ)
        room = request.match_info["room"]
        return _respond({"room": room, "readers": await self.service.receipts(user, room)})

    async def sync(self, request: web.Request) -> web.Response:
        """``{"rooms": {room: cursor}}`` in; each room's backlog after its cursor out, with ``has_more``, within
        ``max_sync_bytes`` over all rooms; ``next`` names the rooms to ask for again, with their cursors."""
        user = await self.user_of(request, ROOMS_READ)
        body: _SyncRequest = await _body(request, _SyncRequest)
        if len(body.rooms) > 100:
            raise ProtocolError("at most 100 rooms per sync", Code.TOO_LARGE)
        result = await self.service.sync(user, body.rooms, body.limit)
        out: dict[str, Any] = {}
        for room, entry in result.rooms.items():
            if isinstance(entry, RoostError):
                out[room] = {"error": {"code": int(entry.code), "reason": entry.reason}}
            else:
                out[room] = _history_json(room, entry)
        return _respond({"rooms": out, "next": result.next})


def frame_error(exc: RoostError) -> bytes:
    return frames.encode(frames.Error(code=int(exc.code), reason=exc.reason))
