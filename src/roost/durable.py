"""Files and directories that survive a power loss, not only a crash of the process.

A directory entry (a new file, a new directory, a rename) is on disk only once its parent directory is
fsynced; until then a power cut can undo it even when the file's own data was fsynced. SQLite fsyncs the
directory it creates its files in, but not that directory's own entry in its parent: a data directory made
by Roost's first start would vanish with everything in it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["make_dirs", "write_file"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose every new entry is durable (each new directory's parent is fsynced)."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # made meanwhile by another process; its maker syncs it
        fsync_dir(directory.parent)


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a power loss leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
