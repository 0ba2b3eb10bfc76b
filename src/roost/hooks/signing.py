"""The signature of a delivery: ``Roost-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``f"{t}."`` followed by the raw body, keyed with the consumer's secret (the convention of the
common webhook senders): the receiver recomputes it over the bytes it received, before parsing them, and
refuses a timestamp older than a tolerance, so a captured delivery cannot be replayed later. Several ``v1=``
values may appear (a future secret rotation); a receiver accepts the delivery when one matches.

Sans-I/O and standard library only, so a receiver can copy it (docs/integration.md has a dozen-line one).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

__all__ = ["HEADER", "sign", "signature", "verify"]

HEADER: Final = "Roost-Signature"
VERSION: Final = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` + ``body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Roost-Signature`` header's value for ``body`` (now, unless ``timestamp`` is given)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{VERSION}={signature(secret, t, body)}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Is ``header`` a valid signature of ``body`` under ``secret``, made within ``tolerance_s`` of ``now``?

    False for a malformed header, a timestamp out of tolerance (either way: a clock far ahead is no better),
    or no matching ``v1`` value; compared in constant time."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == VERSION:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
