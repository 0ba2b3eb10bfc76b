"""Cut this process's own TCP connections, as a broken network would: the engine's driver sees them end.

Engine-agnostic: the connections are told apart by when they were opened (``connections()`` before and
after), not by engine internals or ports. Only sockets of this process are touched, never another's.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["connections", "cut"]


def connections() -> dict[int, int]:
    """Socket inode -> file descriptor of every established TCP connection of this process."""
    established: set[int] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01":  # TCP_ESTABLISHED
                established.add(int(fields[9]))
    out: dict[int, int] = {}
    for entry in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inode = int(target[len("socket:[") : -1])
            if inode in established:
                out[inode] = int(entry.name)
    return out


def cut(inodes: set[int]) -> int:
    """Shut down both directions of the connections ``inodes`` names; return how many were cut."""
    done = 0
    for inode, fd in connections().items():
        if inode in inodes:
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
                done += 1
            except OSError:
                pass
            finally:
                sock.close()
    return done
