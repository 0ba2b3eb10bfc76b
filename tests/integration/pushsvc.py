"""A push service of our own (RFC 8030), for the tests of roost.push: no public one is reachable here.

It accepts ``POST /push/<device>`` as a browser vendor's service would, and checks what such a service and the
browser check: the VAPID ``Authorization: vapid t=<JWT>,k=<key>`` (RFC 8292: an ES256 JWT verified with the
public key ``k``, ``aud`` the origin of the endpoint, ``exp`` in the future and within 24 hours, ``sub`` a
mailto: or https: contact), the headers ``TTL`` and ``Content-Encoding: aes128gcm``, and the body, which it
decrypts with the device's private key and auth secret (RFC 8291, http_ece), as the browser does. Each device
is a key pair made here with ``cryptography``, like a browser's ``pushManager.subscribe``. A request that fails
a check is answered 400 and recorded as such; the test sets other answers per device (410, 500...).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from roost.chaos.infra import free_port


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """A browser's subscription: its endpoint, its P-256 key pair and its auth secret."""

    name: str
    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the page."""
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64(public), "auth": b64(self.auth)},
        }


@dataclass(frozen=True)
class Got:
    device: str
    status: int
    payload: dict[str, Any] | None
    """The decrypted body, None when a check failed."""
    problem: str
    headers: dict[str, str]
    vapid_key: str
    claims: dict[str, Any]

    @property
    def event(self) -> tuple[str, int]:
        assert self.payload is not None
        return self.payload["room"], self.payload["seq"]


@dataclass
class PushService:
    port: int = field(default_factory=free_port)
    devices: dict[str, Device] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    """Per device, the statuses to answer next (one per request, the last one kept); 201 when none."""
    requests: list[Got] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def device(self, name: str) -> Device:
        made = self.devices[name] = Device(name, f"{self.origin}/push/{name}")
        return made

    async def start(self) -> PushService:
        app = web.Application()
        app.router.add_post("/push/{device}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self, device: str | None = None) -> list[Got]:
        """Requests answered 2xx whose checks passed (of one device, or all)."""
        return [
            g for g in self.requests if g.payload is not None and 200 <= g.status < 300 and device in (None, g.device)
        ]

    def events(self, device: str | None = None) -> set[tuple[str, int]]:
        return {g.event for g in self.delivered(device)}

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["device"]
        body = await request.read()
        headers = dict(request.headers)
        payload, problem, key, claims = None, "", "", {}
        try:
            key, claims = self._check_vapid(request.headers.get("Authorization", ""))
            if request.headers.get("Content-Encoding") != "aes128gcm":
                raise ValueError("Content-Encoding is not aes128gcm")
            if not request.headers.get("TTL", "").isdigit():
                raise ValueError("no TTL")
            device = self.devices[name]
            plain = http_ece.decrypt(body, private_key=device.key, auth_secret=device.auth, version="aes128gcm")
            payload = json.loads(plain)
        except Exception as exc:  # every failed check is the test's to see
            problem = f"{type(exc).__name__}: {exc}"
        queued = self.answers.get(name, [])
        status = 400 if problem else (queued.pop(0) if len(queued) > 1 else queued[0] if queued else 201)
        self.requests.append(Got(name, status, payload, problem, headers, key, claims))
        return web.Response(status=status)

    def _check_vapid(self, header: str) -> tuple[str, dict[str, Any]]:
        scheme, _, rest = header.partition(" ")
        if scheme != "vapid":
            raise ValueError(f"Authorization scheme {scheme!r} is not vapid")
        parts = dict(part.split("=", 1) for part in rest.split(","))
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(parts["k"]))
        claims: dict[str, Any] = jwt.decode(
            parts["t"], public, algorithms=["ES256"], audience=self.origin, options={"require": ["exp", "aud", "sub"]}
        )
        if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
            raise ValueError(f"exp {claims['exp']} is not within 24 h")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise ValueError(f"sub {claims['sub']!r}")
        return parts["k"], claims
