"""Where push subscriptions live: the Directory every node shares, as attributes of the pseudo-room ``~roost-push``.

Like API keys and consumers (apikeys.py, hooks/registry.py): every engine keeps them with no backend code, in
the engine that keeps the messages, so a restart or another node loses nothing. ``~`` is outside the
room-name alphabet: no request names the room and no room list shows it. Namespaces:

* ``subs:<user>``, field = subscription id (16 hex digits of the SHA-256 of its endpoint, so registering the
  same browser again replaces it): the ``Device`` (endpoint and keys). Written by the HTTP API (the user) and
  by the dispatcher, which deletes a subscription the push service says is gone (404/410).
* ``users``, field = user: the time (ms) the user's first device was registered; the dispatcher follows the
  streams and direct conversations of these users only, from that time on.
* ``cursor``, field = room: the last seq the dispatcher handled in that room and the room's epoch. Written by
  the node holding the dispatcher's lease only.
* ``vapid``, field ``key``: the server's VAPID private key (vapid.py).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

import msgspec

from ..hooks.registry import Cursor, decode_cursor, encode_cursor
from ..ports import Directory

__all__ = ["ROOM", "Device", "Subscriptions", "device_id"]

log = logging.getLogger(__name__)

ROOM: Final = "~roost-push"
OWNER: Final = "~roost"
NS_USERS: Final = "users"
NS_CURSOR: Final = "cursor"
NS_VAPID: Final = "vapid"


def _subs_ns(user: str) -> str:
    return f"subs:{user}"


def device_id(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()[:16]


class Device(msgspec.Struct, frozen=True):
    """One browser's PushSubscription: where to POST and the keys to encrypt for (RFC 8291)."""

    endpoint: str
    p256dh: str
    auth: str
    created_at: int = 0


_encode: Final = msgspec.json.Encoder().encode
_decode_device: Final = msgspec.json.Decoder(Device).decode


class Subscriptions:
    """Devices, the users who have some, and the dispatcher's cursors: no cache, every call reads the Directory."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def ensure_room(self) -> None:
        await self.directory.create_room(ROOM, OWNER, {"kind": "internal"})  # False once it exists

    async def devices(self, user: str) -> dict[str, Device]:
        out = {}
        for key, raw in (await self.directory.room_attrs(ROOM, _subs_ns(user))).items():
            try:
                out[key] = _decode_device(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                log.warning("ignored an unreadable push subscription %s of %s", key, user)
        return out

    async def put(self, user: str, device: Device, since_ms: int) -> str:
        await self.ensure_room()
        key = device_id(device.endpoint)
        await self.directory.set_room_attr(ROOM, _subs_ns(user), key, _encode(device).decode())
        if user not in await self.users():
            await self.directory.set_room_attr(ROOM, NS_USERS, user, str(since_ms))
        return key

    async def delete(self, user: str, key: str) -> bool:
        """Remove one device (False if it was not there); the user leaves ``users`` with their last device."""
        devices = await self.devices(user)
        if key not in devices:
            return False
        await self.directory.set_room_attr(ROOM, _subs_ns(user), key, None)
        if len(devices) == 1:
            await self.directory.set_room_attr(ROOM, NS_USERS, user, None)
        return True

    async def users(self) -> dict[str, int]:
        """user -> since when (ms) their pushes are due."""
        out = {}
        for user, raw in (await self.directory.room_attrs(ROOM, NS_USERS)).items():
            try:
                out[user] = int(raw)
            except ValueError:
                log.warning("ignored an unreadable push user entry %s", user)
        return out

    async def cursors(self) -> dict[str, Cursor]:
        out = {}
        for room, raw in (await self.directory.room_attrs(ROOM, NS_CURSOR)).items():
            cursor = decode_cursor(raw)
            if cursor is not None:
                out[room] = cursor
        return out

    async def set_cursor(self, room: str, cursor: Cursor) -> None:
        await self.directory.set_room_attr(ROOM, NS_CURSOR, room, encode_cursor(cursor))

    async def vapid_key(self) -> str | None:
        return (await self.directory.room_attrs(ROOM, NS_VAPID)).get("key")

    async def set_vapid_key(self, value: str) -> None:
        await self.ensure_room()
        await self.directory.set_room_attr(ROOM, NS_VAPID, "key", value)
