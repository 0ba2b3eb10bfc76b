"""HTTP routes of Web Push: the server's VAPID public key, and each user's own device registry.

Only a user's own token registers, lists or deletes devices: an API key is refused (4403), whatever its
scopes, since a device belongs to a person, not to an integration. Each user sees and deletes only their own
devices (another user's subscription id is 4404 like an unknown one). The work is roost.push's.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from ..config import Limits
from ..protocol.codes import Code
from ..protocol.errors import AuthError, NotFound, ProtocolError
from ..push.dispatcher import VapidKeySource
from ..push.subscriptions import Device, Subscriptions, device_id
from .bodies import (
    NewPushSubscription,
    PushSubscriptionDeleted,
    PushSubscriptionInfo,
    PushSubscriptionList,
    VapidKeyInfo,
)
from .http import HttpApi
from .routes import PUBLIC, Body, route

__all__ = ["USER", "PushApi", "check_device"]

USER: Final = "user"
"""A user's own token (never an API key)."""
_MAX_URL: Final = 2048
_LOOPBACK: Final = ("localhost",)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ProtocolError(f"keys.{what} is not base64url", Code.BAD_FRAME) from None


def _loopback(host: str) -> bool:
    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_device(new: NewPushSubscription, limits: Limits) -> Device:
    """[R-PUSH-2] A device the dispatcher can push to, or 4400 saying what is wrong (nothing stored)."""
    endpoint = new.endpoint
    if len(endpoint) > _MAX_URL:
        raise ProtocolError(f"endpoint is longer than {_MAX_URL} characters", Code.BAD_FRAME)
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ProtocolError("endpoint is not a URL", Code.BAD_FRAME) from None
    secure = parts.scheme == "https"
    local = parts.scheme == "http" and limits.push_allow_http and _loopback(host)
    if not host or not (secure or local) or parts.username is not None or parts.fragment:
        allowed = "https:// (or http:// on a loopback address)" if limits.push_allow_http else "https://"
        raise ProtocolError(f"endpoint must be an {allowed} URL with a host", Code.BAD_FRAME)
    if set(new.keys) != {"p256dh", "auth"}:
        raise ProtocolError("keys must hold p256dh and auth, nothing else", Code.BAD_FRAME)
    p256dh, auth = new.keys["p256dh"], new.keys["auth"]
    point = _b64(p256dh, "p256dh")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ProtocolError("keys.p256dh is not an uncompressed P-256 public key", Code.BAD_FRAME) from None
    if len(point) != 65 or len(_b64(auth, "auth")) != 16:
        raise ProtocolError("keys.p256dh must be 65 bytes and keys.auth 16 bytes", Code.BAD_FRAME)
    return Device(endpoint, p256dh, auth, int(time.time()))


class PushApi:
    def __init__(self, api: HttpApi, subs: Subscriptions, key: VapidKeySource, limits: Limits) -> None:
        self.api = api
        self.subs = subs
        self.key = key
        self.limits = limits

    async def user_of(self, request: web.Request) -> str:
        identity = await self.api.identity_of(request)
        if identity.key is not None:
            raise AuthError("push devices are registered with a user's own token, not an API key", Code.FORBIDDEN)
        return identity.user

    @route("GET", "/api/push/vapid", "the server's VAPID public key, for the page to subscribe with", auth=PUBLIC)
    async def vapid_key(self, request: web.Request) -> VapidKeyInfo:
        """[R-PUSH-1] The same key on every node and after every restart (made once, kept in the store)."""
        return VapidKeyInfo((await self.key.get()).public_key)

    @route(
        "POST",
        "/api/push/subscriptions",
        "register this browser's push subscription (a device) for the user",
        auth=USER,
        statuses=(201,),
        errors=(Code.TOO_MANY_ROOMS,),
    )
    async def add_push_subscription(
        self, request: web.Request, body: Body[NewPushSubscription]
    ) -> PushSubscriptionInfo:
        """[R-PUSH-2] The body is ``PushSubscription.toJSON()``; the same endpoint again replaces its entry. At most
        ``max_push_devices`` per user (4422)."""
        user = await self.user_of(request)
        device = check_device(await body.read(), self.limits)
        devices = await self.subs.devices(user)
        if device_id(device.endpoint) not in devices and len(devices) >= self.limits.max_push_devices:
            raise ProtocolError(
                f"{user} has {self.limits.max_push_devices} push devices already: delete one first",
                Code.TOO_MANY_ROOMS,
            )
        key = await self.subs.put(user, device, int(time.time() * 1000))
        return PushSubscriptionInfo(key, device.endpoint, device.created_at)

    @route("GET", "/api/push/subscriptions", "the user's own push subscriptions", auth=USER)
    async def push_subscriptions(self, request: web.Request) -> PushSubscriptionList:
        user = await self.user_of(request)
        devices = await self.subs.devices(user)
        return PushSubscriptionList(
            [PushSubscriptionInfo(k, d.endpoint, d.created_at) for k, d in sorted(devices.items())]
        )

    @route("DELETE", "/api/push/subscriptions/{id}", "delete one of the user's push subscriptions", auth=USER)
    async def delete_push_subscription(self, request: web.Request) -> PushSubscriptionDeleted:
        """Another user's subscription id is 4404, as an unknown one."""
        user = await self.user_of(request)
        key = request.match_info["id"]
        if not await self.subs.delete(user, key):
            raise NotFound(f"no push subscription {key!r}", Code.UNKNOWN_ROOM)
        return PushSubscriptionDeleted(key, True)
