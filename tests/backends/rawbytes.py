"""Reading what an engine stored, byte for byte, for the erasure suite (test_erasure.py): the bytes a test can
reach of a namespace, with Redis's compressed strings expanded so a text inside them can be searched for."""

from __future__ import annotations

from pathlib import Path

__all__ = ["files_under", "lzf_expanded"]


def files_under(root: Path) -> bytes:
    """Every byte of every file below ``root``."""
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _lzf(data: bytes, size: int) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data) and len(out) < size:
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        ref = len(out) - ((ctrl & 0x1F) << 8) - 1
        if length == 7:
            length += data[i]
            i += 1
        ref -= data[i]
        i += 1
        if ref < 0:
            raise ValueError("not LZF")
        for _ in range(length + 2):
            out.append(out[ref])
            ref += 1
    return bytes(out)


def _length(data: bytes, i: int) -> tuple[int, int]:
    kind = data[i] >> 6
    if kind == 0:
        return data[i] & 0x3F, i + 1
    if kind == 1:
        return ((data[i] & 0x3F) << 8) | data[i + 1], i + 2
    if data[i] == 0x80:
        return int.from_bytes(data[i + 1 : i + 5], "big"), i + 5
    if data[i] == 0x81:
        return int.from_bytes(data[i + 1 : i + 9], "big"), i + 9
    raise ValueError("not a length")


def lzf_expanded(data: bytes) -> bytes:
    """``data`` followed by every LZF-compressed string found in it, expanded. Redis's ``DUMP``, its RDB files and
    the RDB preamble of its AOF compress strings over 20 bytes (a stream's listpacks among them), so a text in
    them is not visible as such; every position that looks like a compressed string (0xC3, two lengths) is
    tried: a false start only adds bytes that are searched in vain."""
    found = [data]
    for i in range(len(data)):
        if data[i] != 0xC3:
            continue
        try:
            packed, j = _length(data, i + 1)
            size, j = _length(data, j)
            if 0 < packed <= len(data) - j and 0 < size < 1 << 26:
                found.append(_lzf(data[j : j + packed], size))
        except (ValueError, IndexError):
            continue
    return b"".join(found)
