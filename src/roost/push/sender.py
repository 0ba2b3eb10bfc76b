"""One notification to one device: encrypt (RFC 8291, aes128gcm, by pywebpush/http-ece), sign (VAPID), POST
(RFC 8030), and say what the push service's answer means.

The POST is aiohttp's, not pywebpush's ``send``/``webpush_async``: those block the event loop (requests) or
leave the answer unread and unreleased on a shared session, and neither lets us refuse redirects or bound
what is read of the answer. The crypto stays the libraries': ``WebPusher.encode`` and ``Vapid.sign``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from enum import Enum
from typing import Final

import aiohttp
from pywebpush import WebPusher

from .subscriptions import Device
from .vapid import VapidKey

__all__ = ["Outcome", "Sender", "topic"]

_MAX_ERROR: Final = 200


class Outcome(Enum):
    DELIVERED = "delivered"
    """2xx: the push service took it."""
    GONE = "gone"
    """404 or 410: the subscription is dead (unsubscribed, expired): delete it, never try again."""
    RETRY = "retry"
    """429, a 5xx, no answer in time, a connection error: try again later."""
    REJECTED = "rejected"
    """Any other answer (400, 401, 403, 413, a redirect): trying again would get the same."""


def topic(room: str, seq: int) -> str:
    """RFC 8030 ``Topic`` (at most 32 base64url characters): the push service replaces a notification of the
    same event that it has not delivered yet, so a retried push is not shown twice even before the service
    worker's own deduplication."""
    digest = hashlib.sha256(f"{room}\n{seq}".encode()).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode()


class Sender:
    def __init__(self, http: aiohttp.ClientSession, key: VapidKey, ttl_s: int, timeout_s: float) -> None:
        self.http = http
        self.key = key
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s

    async def send(self, device: Device, payload: bytes, event_topic: str) -> tuple[Outcome, str]:
        """POST ``payload`` to the device; (what the answer means, a short description of a failure)."""
        subscription = {"endpoint": device.endpoint, "keys": {"p256dh": device.p256dh, "auth": device.auth}}
        body: bytes = WebPusher(subscription).encode(payload, "aes128gcm")["body"]
        headers = {
            "Authorization": self.key.authorization(device.endpoint),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(self.ttl_s),
            "Urgency": "high",
            "Topic": event_topic,
        }
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                self.http.post(device.endpoint, data=body, headers=headers, allow_redirects=False) as response,
            ):
                await response.content.read(1024)
                status = response.status
        except TimeoutError:
            return Outcome.RETRY, f"no answer in {self.timeout_s:.1f} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Outcome.RETRY, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR]
        if 200 <= status < 300:
            return Outcome.DELIVERED, ""
        if status in (404, 410):
            return Outcome.GONE, f"HTTP {status}"
        if status == 429 or status >= 500:
            return Outcome.RETRY, f"HTTP {status}"
        return Outcome.REJECTED, f"HTTP {status}"
