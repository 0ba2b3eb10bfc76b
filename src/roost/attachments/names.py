"""File names as the server shows and serves them: a display name made from what the client said, never a path.

The client's name is only ever a label: blobs are stored under ids the server makes (``port.new_id``), so no name
reaches a file system or a bucket key. Still, it is shown to other members and put in ``Content-Disposition``, so
``display_name`` keeps its last path component (``../../etc/passwd`` is ``passwd``), drops control and
format characters (bidirectional overrides that make ``exe.txt`` read ``txt.exe``), the characters Windows refuses
in file names, and leading dots, and cuts it to ``MAX_NAME_CHARS``; what is left empty becomes ``file``. HTML in
a name stays text: it is JSON on the wire and text nodes on the page (R-ATT-5), never markup.

``content_disposition`` follows RFC 6266: an ASCII ``filename`` fallback (quoted, only safe characters) and the
exact name as ``filename*=UTF-8''...`` (RFC 8187 percent-encoding), so no name can add a header parameter.
"""

from __future__ import annotations

import unicodedata
from typing import Final
from urllib.parse import quote

__all__ = ["MAX_NAME_CHARS", "content_disposition", "display_name"]

MAX_NAME_CHARS: Final = 200
"""A display name's length at most, in code points (the extension is kept when a longer one is cut)."""
_REFUSED: Final = frozenset('<>:"/\\|?*')
"""Characters no file name on a common system may hold; replaced by ``_`` (``<`` and ``>`` included, so a name
is harmless even where someone renders it as markup against the rules)."""


def display_name(raw: str) -> str:
    """The name shown and served for an upload the client called ``raw`` (see the module docstring)."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    kept = []
    for char in base:
        category = unicodedata.category(char)
        if category[0] in ("C", "Z") and char != " ":
            continue  # controls, format characters (bidi overrides), separators other than a plain space
        kept.append("_" if char in _REFUSED else char)
    name = " ".join("".join(kept).split()).lstrip(".").strip()
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        name = (
            stem[: MAX_NAME_CHARS - len(ext) - 1] + dot + ext if dot and 0 < len(ext) <= 16 else name[:MAX_NAME_CHARS]
        )
    return name or "file"


def content_disposition(name: str, inline: bool) -> str:
    """``attachment`` (or ``inline``) with an ASCII fallback and the exact UTF-8 name (RFC 6266, RFC 8187)."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in " ._-()[]+,") else "_" for c in name) or "file"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
