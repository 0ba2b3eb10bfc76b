"""Blobs on the node's own disk: ``DATA_DIR/attachments/<id>/{blob,thumb,meta.json}``.

The embedded default: no other service. Each part is written to a temporary name in the blob's folder, fsynced,
renamed into place and the folder fsynced, so a crash leaves the old part or the new one, never half of one. The
disk is this node's: with several nodes, each sees only what was uploaded to it, so scale-out needs the S3 engine
(node.py logs it at startup and ``/readyz`` lists it among its warnings).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import BinaryIO, Final, ParamSpec, TypeVar

from ..protocol.errors import Unavailable
from .port import BlobMeta, Opened, Part, decode_meta, encode_meta, valid_id

__all__ = ["LocalBlobs"]

CHUNK: Final = 256 * 1024
P = ParamSpec("P")
T = TypeVar("T")


async def _blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` in a thread; a failing disk is 4503, as a failing engine is."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as exc:
        raise Unavailable(f"attachment store: {exc.strerror or exc}") from None


class LocalBlobs:
    shared = False

    def __init__(self, folder: Path, spool: str = ".spool") -> None:
        self.folder = folder
        self.spool = folder / spool

    async def start(self) -> LocalBlobs:
        await _blocking(self._prepare)
        return self

    def _prepare(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        for stale in self.spool.iterdir():  # uploads cut short by a stop or a crash
            with contextlib.suppress(OSError):
                stale.unlink()

    def _dir(self, blob_id: str) -> Path:
        if not valid_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.folder / blob_id

    async def put(self, blob_id: str, part: Part, source: Path) -> None:
        await _blocking(self._put_file, self._dir(blob_id), part, source)

    async def put_meta(self, meta: BlobMeta) -> None:
        await _blocking(_put_bytes, self._dir(meta.id), "meta.json", encode_meta(meta))

    async def meta(self, blob_id: str) -> BlobMeta | None:
        if not valid_id(blob_id):
            return None
        raw = await _blocking(_read_or_none, self._dir(blob_id) / "meta.json")
        return None if raw is None else decode_meta(raw)

    async def open(self, blob_id: str, part: Part) -> Opened | None:
        if not valid_id(blob_id):
            return None
        handle = await _blocking(_open_or_none, self._dir(blob_id) / part)
        if handle is None:
            return None
        return Opened(os.fstat(handle.fileno()).st_size, _chunks(handle))

    async def ids(self) -> list[str]:
        return await _blocking(lambda: sorted(p.name for p in self.folder.iterdir() if valid_id(p.name)))

    async def remove(self, blob_id: str) -> None:
        await _blocking(_remove_folder, self._dir(blob_id))

    async def aclose(self) -> None:
        return None

    def _put_file(self, folder: Path, part: str, source: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{part}.tmp"
        if source.parent == self.spool:
            os.replace(source, temp)  # the spool is in the same file system: no copy
        else:
            shutil.copyfile(source, temp)
        _fsync(temp)
        os.replace(temp, folder / part)
        _fsync(folder)


def _put_bytes(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{name}.tmp"
    with temp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, folder / name)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _remove_folder(folder: Path) -> None:
    if not folder.exists():
        return
    (folder / "meta.json").unlink(missing_ok=True)  # first: a crash halfway leaves no record to serve from
    _fsync(folder)
    shutil.rmtree(folder, ignore_errors=True)


async def _chunks(handle: BinaryIO) -> AsyncGenerator[bytes, None]:
    try:
        while chunk := await _blocking(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()
