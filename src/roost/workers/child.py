"""A worker of ``roost serve --workers N``: ``python -m roost.workers.child``, started by the parent (supervisor.py).

Its stdin's first line is a ``Handoff`` (JSON): the settings the parent resolved (flags, ``ROOST_*``, file; secrets
included, which is why they do not travel on the command line) and its place: its index and the descriptors of
the listening sockets it inherited (sockets.py). Then it runs a node exactly as ``roost serve`` does (the same
start, readiness, drain and exit; cli.serve_node), on those sockets, with its own node id: a fresh process draws
its own (logs.py).

It stops on SIGTERM or SIGINT (sent by the parent), and when its parent is gone however it ended: the end of
stdin (the parent held the pipe open), and on Linux ``PR_SET_PDEATHSIG``, which also covers a worker still
importing or opening an engine that does not answer. Exit status: 0 after a clean stop, ``USAGE`` (2) when its
settings are refused (a mistake restarting cannot mend: the parent does not restart it), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Final

import msgspec

from ..children import die_with_parent
from ..config import Settings
from .sockets import Handed

__all__ = ["USAGE", "Handoff", "main"]

USAGE: Final = 2

log = logging.getLogger("roost.workers")


class Handoff(msgspec.Struct, frozen=True):
    settings: Settings
    place: Handed
    log_level: str
    log_format: str
    parent: int
    """The parent's pid: a worker whose parent is already gone when it starts stops at once."""


async def parent_gone() -> None:
    """Returns at the end of stdin: the parent closed it, or died."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while await reader.read(65536):
            pass
    finally:
        transport.close()


def main() -> int:
    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # the parent is gone before it said anything
    handoff = msgspec.json.decode(line, type=Handoff)
    die_with_parent(handoff.parent)

    from ..cli import run_worker
    from ..logs import configure

    configure(handoff.log_level, handoff.log_format)
    return run_worker(handoff.settings, handoff.place.place())


if __name__ == "__main__":
    sys.exit(main())
