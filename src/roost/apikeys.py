"""API keys: an application acts as a named service principal (a bot user), limited to the scopes it was given.

Why keys and not long-lived JWTs: an operator must be able to list what was handed out and revoke one key
without touching the others or the principal's own tokens, and a key must carry limits (scopes) that a
token for a user does not have.

Format ``rk_<id>_<secret>``: ``id`` is 16 hex digits (it names the key in lists and revocations), ``secret``
is ``secrets.token_urlsafe(32)`` (256 random bits). Only ``sha256(secret)`` is stored: a key is random, so a
fast hash is enough (nothing to brute-force from a dictionary), and it is compared with
``hmac.compare_digest``. The secret is shown once, when the key is created.

Where it is kept: in the Directory every node shares, as attributes (namespace ``keys``, field = id, value
= the JSON record) of the pseudo-room ``~roost-apikeys``, created on first use with no member but the
pseudo-user ``~roost``. ``~`` is outside the room-name alphabet, so no request can name that room, and the
room lists leave it out (service/rooms.py). Every engine stores room attributes, so no backend code is
needed. There is no cache on the node: each request with a key reads the record, so deleting it (a
revocation) holds on every node as soon as the write returns. Open WebSocket connections authenticated
with a key are closed by ``ApiKeyWatch``: the bus notice at once, and a re-read every
``revocation_check_s`` for a notice the bus lost.

A key's ``issued_at`` is its creation time, so revoking its principal's tokens (revocation.py) voids the
keys created up to then as well.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

import msgspec

from .auth import Identity
from .notices import NoticeWatch
from .ports import Bus, Directory
from .protocol.codes import Code
from .protocol.errors import AuthError, ProtocolError, RoostError

__all__ = [
    "CHANNEL",
    "CONSUMERS",
    "PREFIX",
    "SCOPES",
    "ApiKeyWatch",
    "ApiKeys",
    "KeyRecord",
    "is_api_key",
    "require",
]

log = logging.getLogger(__name__)

ROOMS_READ: Final = "rooms:read"
ROOMS_WRITE: Final = "rooms:write"
PUBLISH: Final = "publish"
PUBLISH_SYSTEM: Final = "publish:system"
WS: Final = "ws"
CONSUMERS: Final = "consumers"
SCOPES: Final = (ROOMS_READ, ROOMS_WRITE, PUBLISH, PUBLISH_SYSTEM, WS, CONSUMERS)
"""What a key may do (docs/security.md, "API keys"): read rooms; create rooms and manage membership; post as
its principal; post as ``system``; use the WebSocket as its principal; register durable event consumers
(webhooks) of the rooms its principal is a member of (roost.hooks)."""

PREFIX: Final = "rk_"
KEYS_ROOM: Final = "~roost-apikeys"
KEYS_NS: Final = "keys"
OWNER: Final = "~roost"
CHANNEL: Final = "~roost-apikeys"
MAX_NAME: Final = 64

_ID_HEX: Final = 16


class KeyRecord(msgspec.Struct, frozen=True):
    """What is stored per key: never the secret, only its sha256."""

    principal: str
    scopes: list[str]
    sha256: str
    created: int
    """Seconds since the epoch (the key's ``issued_at`` against its principal's revocation)."""
    name: str = ""
    by: str = ""
    """The administrator who created it."""


class Issued(NamedTuple):
    id: str
    key: str
    """``rk_<id>_<secret>``: returned once, never stored."""
    record: KeyRecord


_encode: Final = msgspec.json.Encoder().encode
_decode_record: Final = msgspec.json.Decoder(KeyRecord).decode


def is_api_key(token: str) -> bool:
    """Is this bearer credential an API key (rather than a JWT, which never starts with ``rk_``)?"""
    return token.startswith(PREFIX)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse(key: str) -> tuple[str, str] | None:
    key_id, sep, secret = key.removeprefix(PREFIX).partition("_")
    if not sep or len(key_id) != _ID_HEX or not secret or any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id, secret


def require(identity: Identity, scope: str) -> None:
    """4403 unless the credential may do ``scope``: a user's token may do everything a user may; a key only
    what its scopes list."""
    if identity.scopes is not None and scope not in identity.scopes:
        raise AuthError(f"this API key lacks the scope {scope!r}", Code.FORBIDDEN)


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise ProtocolError(f"scopes must be a non-empty list of {', '.join(SCOPES)}", Code.BAD_FRAME)
    return [s for s in SCOPES if s in scopes]


class ApiKeys:
    """Create, list, revoke and verify keys, in the Directory (no cache: every check reads the record)."""

    def __init__(self, directory: Directory, bus: Bus, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.bus = bus
        self.clock = clock

    async def create(self, principal: str, scopes: list[str], name: str = "", by: str = "") -> Issued:
        """A new key for ``principal`` (a valid user name, checked by the caller) with ``scopes``."""
        ordered = check_scopes(scopes)
        if len(name) > MAX_NAME or not name.isprintable():
            raise ProtocolError(f"a key's name is at most {MAX_NAME} printable characters", Code.BAD_FRAME)
        key_id, secret = secrets.token_hex(_ID_HEX // 2), secrets.token_urlsafe(32)
        record = KeyRecord(principal, ordered, _digest(secret), int(self.clock()), name, by)
        await self.directory.create_room(KEYS_ROOM, OWNER, {"kind": "internal"})  # False once it exists
        await self.directory.set_room_attr(KEYS_ROOM, KEYS_NS, key_id, _encode(record).decode())
        return Issued(key_id, f"{PREFIX}{key_id}_{secret}", record)

    async def all(self) -> dict[str, KeyRecord]:
        """Every key by id (unreadable records are left out and logged)."""
        out = {}
        for key_id, raw in (await self.directory.room_attrs(KEYS_ROOM, KEYS_NS)).items():
            try:
                out[key_id] = _decode_record(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.warning("ignored an unreadable API key record %s", key_id)
        return out

    async def revoke(self, key_id: str) -> bool:
        """Delete the record (the revocation, on every node at once); False for an unknown id. The bus notice
        only hurries the closing of open WebSocket connections."""
        if key_id not in await self.all():
            return False
        await self.directory.set_room_attr(KEYS_ROOM, KEYS_NS, key_id, None)
        try:
            await self.bus.publish(CHANNEL, key_id.encode())
        except RoostError as exc:  # the periodic check closes them instead
            log.warning("revocation of API key %s not announced on the bus (%s)", key_id, exc)
        return True

    async def identify(self, key: str) -> Identity:
        """The key's principal and scopes; 4401 for a malformed, unknown, revoked or wrong key."""
        parsed = _parse(key)
        if parsed is None:
            raise AuthError("invalid API key", Code.UNAUTHORIZED)
        key_id, secret = parsed
        raw = (await self.directory.room_attrs(KEYS_ROOM, KEYS_NS)).get(key_id)
        if raw is None:
            raise AuthError("unknown or revoked API key", Code.UNAUTHORIZED)
        try:
            record = _decode_record(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("API key %s has an unreadable record: refused", key_id)
            raise AuthError("invalid API key", Code.UNAUTHORIZED) from None
        if not hmac.compare_digest(_digest(secret), record.sha256):
            raise AuthError("invalid API key", Code.UNAUTHORIZED)
        return Identity(record.principal, float("inf"), False, float(record.created), frozenset(record.scopes), key_id)


def _outside(live: set[str]) -> Callable[[str], bool]:
    """ "Is this key id void?" for a sweep: it is when its record is gone."""
    return lambda key_id: key_id not in live


class ApiKeyWatch(NoticeWatch):
    """On every node: closes the WebSocket connections of a revoked key, when the bus announces it and every
    ``interval_s`` from the Directory (for a notice the bus lost). ``enforce`` gets "is this key id void"."""

    what = "API key"

    def __init__(
        self,
        keys: ApiKeys,
        enforce: Callable[[Callable[[str], bool]], Awaitable[None]],
        interval_s: float,
        active: Callable[[], bool],
    ) -> None:
        super().__init__(keys.bus, CHANNEL, interval_s, active)
        self.keys = keys
        self.enforce = enforce

    def on_notice(self, data: bytes) -> Awaitable[None] | None:
        revoked = data.decode(errors="replace")
        return self.enforce(lambda key_id: key_id == revoked)

    async def check(self) -> None:
        live = set(await self.keys.all())
        await self.enforce(_outside(live))
