"""Signed, expiring download links: what an ``<img src>`` (which sends no ``Authorization`` header) fetches.

A link names the room, the file, the user it was made for, whether it is the thumbnail, and when it expires, with
an HMAC-SHA256 of those under a key derived from the node's token secret. It only stands in for the credential:
the download route still checks, at request time, that the user is a member of the room and the file is served to
them (service/attachments.py ``fetch``), so a link of a user who has left, or of a deleted message, fetches
nothing. Nodes that share ``--secret`` accept each other's links; nodes that each generated a secret in their data
directory accept only their own.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final
from urllib.parse import quote, urlencode

__all__ = ["LINK_TTL_S", "Links"]

LINK_TTL_S: Final = 600
"""How long a link is valid, in seconds."""


class Links:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"roost attachment links\x00" + secret).digest()

    def _mac(self, room: str, blob_id: str, user: str, thumb: bool, expires: int) -> str:
        message = "\x00".join((room, blob_id, user, "thumb" if thumb else "file", str(expires))).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def make(self, room: str, blob_id: str, user: str, thumb: bool, now_s: int) -> tuple[str, int]:
        """The link's path and query, and its expiry (unix seconds)."""
        expires = now_s + LINK_TTL_S
        query = {"user": user, "exp": str(expires), "sig": self._mac(room, blob_id, user, thumb, expires)}
        if thumb:
            query = {"thumb": "1", **query}
        path = f"/api/rooms/{quote(room, safe='')}/attachments/{quote(blob_id, safe='')}"
        return f"{path}?{urlencode(query)}", expires

    def check(self, room: str, blob_id: str, user: str, thumb: bool, expires: int, sig: str, now_s: int) -> bool:
        if expires < now_s or expires > now_s + LINK_TTL_S * 2:
            return False
        return hmac.compare_digest(self._mac(room, blob_id, user, thumb, expires), sig)
