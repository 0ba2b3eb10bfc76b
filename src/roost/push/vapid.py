"""The server's VAPID key pair (RFC 8292): made once, by one node, and kept in the Directory for every node.

A push service ties a subscription to the public key the page subscribed with (``applicationServerKey``), so
every node must sign with the same key, for ever: the first node that needs it makes it while holding the
lease ``push:vapid`` (two nodes starting at once must not each make one and hand out different public keys),
stores it (``subscriptions.NS_VAPID``), and every node reads it from there once and keeps it in memory. The
key is the library's (py-vapid): P-256, the JWT signed ES256 with ``aud`` the endpoint's origin, ``exp`` 12 h
ahead and ``sub`` the operator's contact (``push_subject``).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid

from ..ports import Leases
from .subscriptions import Subscriptions

__all__ = ["VapidKey", "load_or_create"]

_LEASE: Final = "push:vapid"
_EXP_S: Final = 12 * 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class VapidKey:
    def __init__(self, vapid: Vapid, subject: str) -> None:
        self._vapid = vapid
        self.subject = subject
        public = vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key: str = _b64(public)
        """The uncompressed P-256 point, base64url: the page's ``applicationServerKey``."""

    def authorization(self, endpoint: str) -> str:
        """``vapid t=<JWT>,k=<public key>`` for a request to ``endpoint`` (aud = its origin)."""
        parts = urlsplit(endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}", "exp": int(time.time()) + _EXP_S, "sub": self.subject}
        header: str = self._vapid.sign(claims)["Authorization"]
        return header


def _private(vapid: Vapid) -> str:
    der = vapid.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _b64(der)


async def load_or_create(subs: Subscriptions, leases: Leases, holder: str, subject: str) -> VapidKey:
    """The stored key, or a new one stored under the lease (another node making it meanwhile: wait for it)."""
    for _ in range(100):
        stored = await subs.vapid_key()
        if stored is not None:
            return VapidKey(Vapid.from_der(stored.encode()), subject)
        if await leases.lease(_LEASE, holder, 10_000) is None:
            await asyncio.sleep(0.1)  # another node is making it: read it again shortly
            continue
        try:
            if await subs.vapid_key() is None:
                vapid = Vapid()
                vapid.generate_keys()
                await subs.set_vapid_key(_private(vapid))
        finally:
            await leases.release(_LEASE, holder)
    raise TimeoutError("the VAPID key was neither found nor made in time")
