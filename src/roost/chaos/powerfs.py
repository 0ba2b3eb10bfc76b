"""A filesystem that forgets, at a power loss, everything that was not made durable: a test double for a disk.

``kill -9`` of a server leaves the kernel's page cache intact, so a write the server acknowledged before it
was ``fsync``ed still reaches the disk and no crash test can tell. Under this filesystem (FUSE, in the spirit
of Jepsen's LazyFS) nothing reaches its backing directory until it is made durable, so killing the
filesystem's own process loses exactly what a power cut would lose:

* File data is kept in memory; ``fsync``/``fdatasync`` of a file writes its dirty pages and its size to the
  backing directory.
* A name (create, rename, unlink, mkdir, link) is durable only once its directory is ``fsync``ed, as POSIX
  asks and careful programs do (SQLite, PostgreSQL). A file whose data was synced but whose name never was is
  gone after the loss; a rename that was not followed by a directory ``fsync`` is undone.

Two models of metadata (``metadata=``):

* ``posix`` (the default): as above, the strictest a POSIX filesystem may be.
* ``journaled``: like ext4 (``data=ordered``) or XFS, whose single journal commits every earlier name change
  with any ``fsync``: a file's ``fsync`` (or a directory's) makes every name created, renamed or removed
  before it durable, while file data still needs its own ``fsync``.

A power loss is: kill every process of the stack (``kill -9``), then :meth:`PowerFS.lose_power` (kill this
filesystem's process and detach the mount), then :meth:`PowerFS.mount` again on the same backing directory
and restart the stack. Durable state in the backing directory: ``meta.json`` (every durable directory's
entries and each node's mode and owner, replaced atomically) and ``data/<inode>`` (file contents). It runs
single-threaded: every operation sees the one consistent in-memory state.

A full disk: :meth:`PowerFS.fill` makes every operation that needs new space (a write or truncate that grows
a file, ``fallocate``, a new name) fail with ``ENOSPC`` and ``statfs`` report no free block, until
:meth:`PowerFS.drain`; what was written before stays readable and can still be synced. (The switch is a
signal to the filesystem's process, SIGUSR1 and SIGUSR2, seen by the next operation.)

    python -m roost.chaos.powerfs BACKING MOUNTPOINT [posix|journaled]
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PowerFS", "settle"]

PAGE = 4096
ROOT = 1
METADATA = ("posix", "journaled")


@dataclass
class _Node:
    ino: int
    mode: int
    uid: int
    gid: int
    data: bytearray = field(default_factory=bytearray)
    entries: dict[str, int] = field(default_factory=dict)
    target: str = ""
    nlink: int = 1
    mtime_ns: int = field(default_factory=time.time_ns)
    dirty: set[int] = field(default_factory=set)
    size_dirty: bool = False

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class _State:
    """The in-memory filesystem (what programs see) and the durable one in ``backing`` (what survives)."""

    def __init__(self, backing: Path, metadata: str = "posix") -> None:
        if metadata not in METADATA:
            raise ValueError(f"metadata must be one of {METADATA}")
        self.journaled = metadata == "journaled"
        self.full = False
        """Out of space: operations that need more fail with ENOSPC (``PowerFS.fill``)."""
        self.backing = backing
        self.data_dir = backing / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.meta_path = backing / "meta.json"
        root = {"mode": stat.S_IFDIR | 0o755, "uid": 0, "gid": 0}
        self.meta: dict[str, Any] = (
            json.loads(self.meta_path.read_text())
            if self.meta_path.exists()
            else {"next": ROOT + 1, "nodes": {str(ROOT): root}, "dirs": {}}
        )
        self.next_ino = int(self.meta["next"])
        self.nodes: dict[int, _Node] = {}
        self._load(ROOT)
        self._collect_garbage()

    # ---- loading the durable state ----------------------------------------------------------

    def _load(self, ino: int) -> _Node:
        if ino in self.nodes:
            node = self.nodes[ino]
            node.nlink += 1
            return node
        record = self.meta["nodes"][str(ino)]
        node = _Node(ino, int(record["mode"]), int(record["uid"]), int(record["gid"]), target=record.get("target", ""))
        self.nodes[ino] = node
        if node.is_dir:
            node.nlink = 2
            for name, child in self.meta["dirs"].get(str(ino), {}).items():
                if self._load(int(child)).is_dir:
                    node.nlink += 1
                node.entries[name] = int(child)
        elif stat.S_ISREG(node.mode):
            path = self.data_dir / str(ino)
            if path.exists():
                node.data = bytearray(path.read_bytes())
        return node

    def _collect_garbage(self) -> None:
        """Durable records and data files that no durable name reaches are gone for good."""
        self.meta["nodes"] = {k: v for k, v in self.meta["nodes"].items() if int(k) in self.nodes}
        self.meta["dirs"] = {k: v for k, v in self.meta["dirs"].items() if int(k) in self.nodes}
        for path in self.data_dir.iterdir():
            if not path.name.isdigit() or int(path.name) not in self.nodes:
                path.unlink()

    # ---- making things durable ----------------------------------------------------------------

    def sync_file(self, node: _Node) -> None:
        if not stat.S_ISREG(node.mode) or not (node.dirty or node.size_dirty):
            return
        path = self.data_dir / str(node.ino)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for page in sorted(node.dirty):
                start = page * PAGE
                if start < len(node.data):
                    os.pwrite(fd, bytes(node.data[start : start + PAGE]), start)
            os.ftruncate(fd, len(node.data))
        finally:
            os.close(fd)
        node.dirty.clear()
        node.size_dirty = False
        self._record(node)
        if self.journaled:
            self.sync_names()

    def sync_names(self) -> None:
        """The journal's commit: every directory as it is now."""
        for node in list(self.nodes.values()):
            if node.is_dir:
                self.meta["dirs"][str(node.ino)] = dict(node.entries)
                for child in node.entries.values():
                    self._record(self.nodes[child])
        self._write_meta()

    def sync_dir(self, node: _Node) -> None:
        if self.journaled:
            self.sync_names()
            return
        self.meta["dirs"][str(node.ino)] = dict(node.entries)
        for child in node.entries.values():
            self._record(self.nodes[child])
        self._record(node)
        self._write_meta()

    def _write_meta(self) -> None:
        self.meta["next"] = self.next_ino
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta))
        os.replace(tmp, self.meta_path)  # atomic against this process being killed

    def _record(self, node: _Node) -> None:
        record: dict[str, int | str] = {"mode": node.mode, "uid": node.uid, "gid": node.gid}
        if node.target:
            record["target"] = node.target
        self.meta["nodes"][str(node.ino)] = record

    # ---- the namespace ------------------------------------------------------------------------

    def lookup(self, path: str) -> _Node:
        node = self.nodes[ROOT]
        for part in (p for p in path.split("/") if p):
            if not node.is_dir or part not in node.entries:
                raise OSError(errno.ENOENT, path)
            node = self.nodes[node.entries[part]]
        return node

    def parent(self, path: str) -> tuple[_Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        directory = self.lookup(head or "/")
        if not directory.is_dir:
            raise OSError(errno.ENOTDIR, path)
        return directory, name

    def new_node(self, mode: int, uid: int, gid: int) -> _Node:
        node = _Node(self.next_ino, mode, uid, gid)
        self.next_ino += 1
        self.nodes[node.ino] = node
        return node


def _operations(state: _State) -> Any:
    import mfusepy as fuse

    def caller() -> tuple[int, int]:
        uid, gid, _pid = fuse.fuse_get_context()
        return int(uid), int(gid)

    class Operations(fuse.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.handles: dict[int, int] = {}
            self.next_fh = 1

        def _open(self, node: _Node) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = node.ino
            return fh

        def _space(self, path: str) -> None:
            if state.full:
                raise OSError(errno.ENOSPC, path)

        def _node(self, path: str | None, fh: int | None) -> _Node:
            if fh and fh in self.handles:
                return state.nodes[self.handles[fh]]
            assert path is not None
            return state.lookup(path)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
            node = self._node(path, fh)
            size = len(node.data) if stat.S_ISREG(node.mode) else len(node.target) if node.target else 4096
            return {
                "st_ino": node.ino,
                "st_mode": node.mode,
                "st_nlink": node.nlink,
                "st_uid": node.uid,
                "st_gid": node.gid,
                "st_size": size,
                "st_blocks": (size + 511) // 512,
                "st_atime": node.mtime_ns,
                "st_mtime": node.mtime_ns,
                "st_ctime": node.mtime_ns,
            }

        def access(self, path: str, amode: int) -> int:
            state.lookup(path)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            st = os.statvfs(state.backing)
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize")
            counts = {key: int(getattr(st, key)) for key in keys} | {"f_namemax": 255}
            return counts | ({"f_bavail": 0, "f_bfree": 0} if state.full else {})

        # -- directories --
        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *state.lookup(path).entries]

        def opendir(self, path: str) -> int:
            return self._open(state.lookup(path))

        def releasedir(self, path: str, fh: int) -> int:
            self.handles.pop(fh, None)
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            state.sync_dir(self._node(path, fh))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            directory, name = state.parent(path)
            if name in directory.entries:
                raise OSError(errno.EEXIST, path)
            self._space(path)
            node = state.new_node(stat.S_IFDIR | (mode & 0o7777), *caller())
            node.nlink = 2
            directory.entries[name] = node.ino
            directory.nlink += 1
            return 0

        def rmdir(self, path: str) -> int:
            directory, name = state.parent(path)
            node = state.lookup(path)
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            if node.entries:
                raise OSError(errno.ENOTEMPTY, path)
            del directory.entries[name]
            directory.nlink -= 1
            return 0

        # -- names --
        def create(self, path: str, mode: int, fi: Any = None) -> int:
            directory, name = state.parent(path)
            if name in directory.entries:
                node = state.nodes[directory.entries[name]]
            else:
                self._space(path)
                node = state.new_node(stat.S_IFREG | (mode & 0o7777), *caller())
                directory.entries[name] = node.ino
            return self._open(node)

        def mknod(self, path: str, mode: int, dev: int) -> int:
            if not stat.S_ISREG(mode):
                raise OSError(errno.EPERM, path)
            self.release(path, self.create(path, mode))
            return 0

        def unlink(self, path: str) -> int:
            directory, name = state.parent(path)
            node = state.lookup(path)
            if node.is_dir:
                raise OSError(errno.EISDIR, path)
            del directory.entries[name]
            node.nlink -= 1
            return 0

        def rename(self, old: str, new: str) -> int:
            source_dir, source_name = state.parent(old)
            node = state.lookup(old)
            target_dir, target_name = state.parent(new)
            if target_name in target_dir.entries:
                replaced = state.nodes[target_dir.entries[target_name]]
                if replaced.is_dir and replaced.entries:
                    raise OSError(errno.ENOTEMPTY, new)
                replaced.nlink -= 1
            del source_dir.entries[source_name]
            target_dir.entries[target_name] = node.ino
            if node.is_dir and source_dir is not target_dir:
                source_dir.nlink -= 1
                target_dir.nlink += 1
            return 0

        def link(self, target: str, source: str) -> int:
            node = state.lookup(source)
            directory, name = state.parent(target)
            if name in directory.entries:
                raise OSError(errno.EEXIST, target)
            directory.entries[name] = node.ino
            node.nlink += 1
            return 0

        def symlink(self, target: str, source: str) -> int:
            directory, name = state.parent(target)
            if name in directory.entries:
                raise OSError(errno.EEXIST, target)
            node = state.new_node(stat.S_IFLNK | 0o777, *caller())
            node.target = source
            directory.entries[name] = node.ino
            return 0

        def readlink(self, path: str) -> str:
            return state.lookup(path).target

        # -- attributes --
        def chmod(self, path: str, mode: int) -> int:
            node = state.lookup(path)
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            node = state.lookup(path)
            if uid != -1 and uid != 0xFFFFFFFF:
                node.uid = uid
            if gid != -1 and gid != 0xFFFFFFFF:
                node.gid = gid
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            state.lookup(path).mtime_ns = times[1] if times else time.time_ns()
            return 0

        # -- data --
        def open(self, path: str, flags: int) -> int:
            return self._open(state.lookup(path))

        def release(self, path: str, fh: int) -> int:
            self.handles.pop(fh, None)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return bytes(self._node(path, fh).data[offset : offset + size])

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            node = self._node(path, fh)
            end = offset + len(data)
            if end > len(node.data):
                self._space(path)
                node.data.extend(bytes(end - len(node.data)))
                node.size_dirty = True
            node.data[offset:end] = data
            node.dirty.update(range(offset // PAGE, (end - 1) // PAGE + 1))
            node.mtime_ns = time.time_ns()
            return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            node = self._node(path, fh)
            if length < len(node.data):
                del node.data[length:]
                node.dirty = {page for page in node.dirty if page * PAGE < length}
                if length % PAGE:
                    node.dirty.add(length // PAGE)
            else:
                if length > len(node.data):
                    self._space(path)
                start = len(node.data)
                node.data.extend(bytes(length - start))
                node.dirty.update(range(start // PAGE, max(start, length - 1) // PAGE + 1))
            node.size_dirty = True
            return 0

        def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
            if mode:
                raise OSError(errno.EOPNOTSUPP, path)
            node = self._node(path, fh)
            if offset + size > len(node.data):
                self.truncate(path, offset + size, fh)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            state.sync_file(self._node(path, fh))
            return 0

    return Operations()


def serve(backing: Path, mountpoint: Path, metadata: str = "posix") -> None:
    """Run the filesystem in this process, in the foreground, until it is killed or unmounted."""
    import warnings

    import mfusepy as fuse

    state = _State(backing, metadata)

    def out_of_space(full: bool) -> Any:
        def handler(_signum: int, _frame: Any) -> None:
            state.full = full

        return handler

    signal.signal(signal.SIGUSR1, out_of_space(True))
    signal.signal(signal.SIGUSR2, out_of_space(False))
    warnings.simplefilter("ignore", DeprecationWarning)
    fuse.FUSE(
        _operations(state),
        str(mountpoint),
        foreground=True,
        nothreads=True,
        allow_other=True,
        default_permissions=True,
        fsname="powerfs",
    )


def settle(root: Path) -> None:
    """Make every directory under ``root`` durable, as a journaling filesystem has done a few seconds after a
    program created them. For what the stack set up before the run (Redis 7.0 creates its ``appendonlydir``
    without syncing the directory that holds it: docs/reliability.md, "Power loss")."""
    for directory, _, _ in os.walk(root):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PowerFS:
    """The filesystem's process, seen from a test: mount it, lose power, mount it again."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path | None = None, metadata: str = "posix") -> None:
        if metadata not in METADATA:
            raise ValueError(f"metadata must be one of {METADATA}")
        self.metadata = metadata
        self.backing = backing
        self.mountpoint = mountpoint
        self.log = log or backing.with_name(backing.name + ".log")
        self.process: subprocess.Popen[bytes] | None = None

    def mount(self, within_s: float = 10.0) -> None:
        if shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"):
            raise RuntimeError(
                "power-loss and disk-full faults need FUSE: /dev/fuse and fusermount3 with libfuse3 "
                "(Debian: apt-get install fuse3; scripts/ensure-services.sh fuse does it)"
            )
        self._detach()  # a mount left by a killed run answers ENOTCONN to everything
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "roost.chaos.powerfs", str(self.backing), str(self.mountpoint), self.metadata],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + within_s
        while not self.mounted():
            if self.process.poll() is not None:
                raise RuntimeError(f"powerfs exited with {self.process.returncode}: see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"powerfs did not mount {self.mountpoint} in {within_s:g} s")
            time.sleep(0.02)  # a wait helper's poll

    def fill(self) -> None:
        """The disk is full from now on (every operation that needs space fails with ENOSPC)."""
        self._tell(signal.SIGUSR1)

    def drain(self) -> None:
        """Space again."""
        self._tell(signal.SIGUSR2)

    def _tell(self, signum: int) -> None:
        if self.process is None:
            raise RuntimeError("powerfs is not mounted")
        self.process.send_signal(signum)

    def lose_power(self) -> None:
        """Everything not made durable is gone. Kill the stack's processes first: nothing may write meanwhile."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None
        self._detach()

    def unmount(self) -> None:
        """A clean stop (not a power loss): what was made durable stays, nothing else is written."""
        self.lose_power()

    def _detach(self) -> None:
        # A mount whose process died answers ENOTCONN to everything (os.path.ismount included): ask the kernel.
        if self.mounted():
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=True, capture_output=True)

    def mounted(self) -> bool:
        target = str(self.mountpoint.resolve(strict=False))
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == target for line in mounts)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or (sys.argv[3:] and sys.argv[3] not in METADATA):
        sys.exit("usage: python -m roost.chaos.powerfs BACKING MOUNTPOINT [posix|journaled]")
    serve(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:])
