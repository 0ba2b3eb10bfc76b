"""The power-loss filesystem itself: what survives a loss is exactly what was made durable.

Each test writes through a real FUSE mount (``roost.chaos.powerfs``), loses power (the filesystem's process
is killed, the mount detached) and mounts the same backing directory again.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.chaos.powerfs import PowerFS


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[PowerFS]:
    disk = PowerFS(tmp_path / "backing", tmp_path / "mnt")
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()


def power_cycle(fs: PowerFS) -> Path:
    fs.lose_power()
    fs.mount()
    return fs.mountpoint


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, *, sync: bool, flags: int = os.O_CREAT | os.O_WRONLY | os.O_TRUNC) -> None:
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_a_write_without_fsync_is_gone_after_a_power_loss(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "f", b"durable", sync=True)
    fsync(m)
    write(m / "f", b" and volatile", sync=False, flags=os.O_WRONLY | os.O_APPEND)
    assert (m / "f").read_bytes() == b"durable and volatile"  # the page cache: every reader sees it
    assert power_cycle(fs).joinpath("f").read_bytes() == b"durable"


def test_a_write_with_fsync_is_kept(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "f", b"x" * 10_000, sync=True)
    fsync(m)
    write(m / "f", b"y" * 5000, sync=True, flags=os.O_WRONLY)  # overwrite part of it, then fsync
    assert power_cycle(fs).joinpath("f").read_bytes() == b"y" * 5000 + b"x" * 5000


def test_a_new_file_whose_directory_was_not_fsynced_is_gone(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "f", b"data synced, name not", sync=True)
    assert not power_cycle(fs).joinpath("f").exists()


def test_a_rename_without_a_directory_fsync_is_undone(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "old", b"content", sync=True)
    fsync(m)
    os.rename(m / "old", m / "new")
    m = power_cycle(fs)
    assert sorted(os.listdir(m)) == ["old"]
    assert (m / "old").read_bytes() == b"content"
    os.rename(m / "old", m / "new")
    fsync(m)
    assert sorted(os.listdir(power_cycle(fs))) == ["new"]


def test_an_unlink_without_a_directory_fsync_is_undone(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "f", b"still here", sync=True)
    fsync(m)
    os.unlink(m / "f")
    assert power_cycle(fs).joinpath("f").read_bytes() == b"still here"


def test_a_truncation_is_durable_only_after_fsync(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "f", b"0123456789", sync=True)
    fsync(m)
    os.truncate(m / "f", 4)
    assert power_cycle(fs).joinpath("f").read_bytes() == b"0123456789"
    fd = os.open(fs.mountpoint / "f", os.O_WRONLY)
    os.ftruncate(fd, 4)
    os.fsync(fd)
    os.close(fd)
    assert power_cycle(fs).joinpath("f").read_bytes() == b"0123"


def test_subdirectories_need_their_own_fsync_and_their_parent_s(fs: PowerFS) -> None:
    m = fs.mountpoint
    os.mkdir(m / "d")
    write(m / "d" / "f", b"deep", sync=True)
    fsync(m / "d")
    assert not power_cycle(fs).joinpath("d").exists()  # "d" itself was never made durable in "/"
    m = fs.mountpoint
    os.mkdir(m / "d")
    fsync(m)
    write(m / "d" / "f", b"deep", sync=True)
    fsync(m / "d")
    assert power_cycle(fs).joinpath("d", "f").read_bytes() == b"deep"


def test_a_clean_unmount_keeps_only_what_was_made_durable_too(fs: PowerFS) -> None:
    """Unmounting is not a flush: the filesystem never writes what a program did not sync."""
    m = fs.mountpoint
    write(m / "f", b"synced", sync=True)
    fsync(m)
    write(m / "g", b"never synced", sync=False)
    fs.unmount()
    fs.mount()
    assert sorted(os.listdir(fs.mountpoint)) == ["f"]


def sqlite_rows(path: Path, synchronous: str, count: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    db.commit()
    for i in range(count):
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.commit()
    # No close: a power loss does not let the program checkpoint.


def test_sqlite_with_synchronous_full_keeps_every_commit(fs: PowerFS) -> None:
    sqlite_rows(fs.mountpoint / "t.db", "FULL", 200)
    db = sqlite3.connect(power_cycle(fs) / "t.db")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (200,)
    db.close()


def test_sqlite_with_synchronous_off_loses_commits_it_reported_done(fs: PowerFS) -> None:
    """The filesystem catches a program that reports a write done before it is durable."""
    sqlite_rows(fs.mountpoint / "t.db", "FULL", 10)
    sqlite_rows(fs.mountpoint / "t.db", "OFF", 200)
    db = sqlite3.connect(power_cycle(fs) / "t.db")
    assert db.execute("SELECT count(*) FROM t").fetchone() == (10,)
    db.close()


@pytest.fixture
def journaled(tmp_path: Path) -> Iterator[PowerFS]:
    disk = PowerFS(tmp_path / "backing", tmp_path / "mnt", metadata="journaled")
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()


def test_journaled_metadata_is_committed_by_any_fsync(journaled: PowerFS) -> None:
    """Like ext4's journal: one file's fsync makes every earlier name change durable, not others' data."""
    m = journaled.mountpoint
    os.makedirs(m / "a" / "b")
    write(m / "a" / "b" / "unsynced", b"data never synced", sync=False)
    os.rename(m / "a" / "b" / "unsynced", m / "a" / "b" / "renamed")
    write(m / "synced", b"kept", sync=True)
    m = power_cycle(journaled)
    assert (m / "synced").read_bytes() == b"kept"
    assert (m / "a" / "b" / "renamed").read_bytes() == b""  # its name is durable, its data is not
    assert not (m / "a" / "b" / "unsynced").exists()


def test_journaled_metadata_without_any_fsync_is_gone(journaled: PowerFS) -> None:
    m = journaled.mountpoint
    os.makedirs(m / "a" / "b")
    write(m / "a" / "f", b"x", sync=False)
    assert os.listdir(power_cycle(journaled)) == []


def test_a_full_disk_refuses_what_needs_space_and_keeps_the_rest(fs: PowerFS) -> None:
    m = fs.mountpoint
    write(m / "f", b"x" * 5000, sync=True)
    fsync(m)
    fs.fill()
    with pytest.raises(OSError) as grow:
        write(m / "f", b"more", sync=False, flags=os.O_WRONLY | os.O_APPEND)
    assert grow.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as new:
        write(m / "g", b"", sync=False)
    assert new.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as directory:
        os.mkdir(m / "d")
    assert directory.value.errno == errno.ENOSPC
    assert os.statvfs(m).f_bavail == 0
    write(m / "f", b"y" * 100, sync=True, flags=os.O_WRONLY)  # rewriting space it holds still works
    assert (m / "f").read_bytes() == b"y" * 100 + b"x" * 4900

    fs.drain()
    write(m / "f", b"z", sync=True, flags=os.O_WRONLY | os.O_APPEND)
    write(m / "g", b"g", sync=True)
    fsync(m)
    assert os.statvfs(m).f_bavail > 0
    assert power_cycle(fs).joinpath("f").read_bytes() == b"y" * 100 + b"x" * 4900 + b"z"
    assert (m / "g").read_bytes() == b"g"
