"""Raise this process's file-descriptor limit at startup: every connection is one descriptor.

Many systems start processes with a soft limit of 1024 under a much higher hard limit; a chat node
holding thousands of WebSockets needs the hard one. Past the limit ``accept()`` fails and asyncio stops
accepting for a second at a time, so health checks fail too (issue #17): the connection caps of
``gateway.connections`` are derived from what this returns.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Descriptors", "raise_fd_limit"]

_NR_OPEN = 1024 * 1024
"""The kernel's default ``fs.nr_open``: an unlimited hard limit still stops there."""


class Descriptors(NamedTuple):
    limit: int | None
    """The soft limit now in force; None where there is none (not POSIX, or unlimited)."""
    note: str
    """One line for the log, said once the node listens (a start that fails must stay one line)."""
    ok: bool
    """False when raising it was refused (the note is then a warning)."""


def raise_fd_limit() -> Descriptors:
    """Set the soft ``RLIMIT_NOFILE`` to the hard one where allowed."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return Descriptors(None, "file descriptors: no limit to raise on this system", True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return Descriptors(None, "file descriptors: unlimited", True)
    target = hard if hard != resource.RLIM_INFINITY else _NR_OPEN
    if soft >= target:
        return Descriptors(int(soft), f"file descriptors: limit {soft} (the hard limit)", True)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        return Descriptors(int(soft), f"file descriptors: cannot raise the limit {soft} to {target}: {exc}", False)
    note = f"file descriptors: raised the limit from {soft} to {target} (the hard limit)"
    return Descriptors(int(target), note, True)
