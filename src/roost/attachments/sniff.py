"""What a file is, read from its bytes: the client's ``Content-Type`` and file name are never trusted.

``sniff`` looks at the first bytes for the magic numbers of the types the page shows inline (PNG, JPEG, GIF, WebP,
PDF); anything else is ``text/plain`` when the whole file is UTF-8 without a NUL (``Texts`` decides while the upload
streams in), else ``application/octet-stream``, which is only ever served as a download. So an HTML or SVG file is
text or bytes, never a page of this origin; downloads carry ``X-Content-Type-Options: nosniff`` and a sandboxing
CSP as well (gateway/attachments.py).
"""

from __future__ import annotations

import codecs
from typing import Final

__all__ = ["IMAGE_TYPES", "INLINE_TYPES", "OCTETS", "SNIFF_BYTES", "TEXT", "Texts", "sniff"]

OCTETS: Final = "application/octet-stream"
TEXT: Final = "text/plain"
PDF: Final = "application/pdf"
IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Types that get a width, a height and a thumbnail (images.py)."""
INLINE_TYPES: Final = IMAGE_TYPES | {PDF}
"""Types served ``inline`` (the browser shows them); every other is ``attachment`` (a download)."""
SNIFF_BYTES: Final = 16
"""The bytes ``sniff`` reads at most."""


def sniff(head: bytes, text: bool) -> str:
    """The type of a file that starts with ``head``; ``text``: the whole file is UTF-8 without a NUL."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return PDF
    return TEXT if text else OCTETS


class Texts:
    """Is a stream UTF-8 without a NUL? Fed chunk by chunk as the upload arrives (no second read of the file)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.ok = True

    def feed(self, chunk: bytes, final: bool = False) -> None:
        if not self.ok:
            return
        if b"\x00" in chunk:
            self.ok = False
            return
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            self.ok = False
