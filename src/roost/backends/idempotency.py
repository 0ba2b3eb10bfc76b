"""The idempotency digest: what makes a retry "the same message" where only its key and a digest are kept.

A retried ``(room, sender, cmid)`` is answered with the original when its kind and body are the same, and
refused (``Conflict``) when they differ. Where a store keeps the key without the body (after retention, or
always), it compares this digest instead: SHA-256 over ``kind NUL body``. Each engine keeps the encoding its
existing data has, which tests/backends/test_idempotency.py pins against what each engine really stores:

* SQLite, PostgreSQL: all 32 bytes (``trimmed_ids.digest``);
* Redis, NATS: the first 16 bytes as 32 hex characters (``seq:ts:digest`` in the ``idem`` hash or bucket);
* Kafka: the first 16 bytes, in memory only (rebuilt from the log at every start).
"""

from __future__ import annotations

import hashlib
from typing import Literal

__all__ = ["body_digest"]


def body_digest(body: str, kind: str, size: Literal[16, 32] = 32) -> bytes:
    """SHA-256 of ``kind NUL body``: its first ``size`` bytes."""
    return hashlib.sha256(f"{kind}\x00{body}".encode()).digest()[:size]
