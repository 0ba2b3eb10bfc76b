"""The attachment sweeper: every ``attachment_sweep_s`` one node removes the blobs nothing serves any more.

With a shared blob store (S3) one node at a time: a pass runs only while the node holds the lease ``attachments``
(``Leases``, as the retention task: roost/retention.py), ttl three intervals (at least 10 s). Blobs on a node's own
disk (``local``) are swept by that node, since no other sees them. A pass lists every blob and applies
``Attachments.sweep_one``: an upload no message named, ``attachment_orphan_s`` after it was made; a file whose
message was deleted (normally removed at the delete already: this catches a crash between the two) or dropped by
retention; a claim whose message was never stored. Removing is idempotent, so two sweepers during a lease handover
do no harm. With attachments off, or no blobs, nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Final

from ..logs import NODE_ID
from ..ports import Leases
from ..protocol.errors import RoostError
from ..service.attachments import Attachments, Sweep

__all__ = ["LEASE", "Sweeper"]

log = logging.getLogger(__name__)

LEASE: Final = "attachments"
RELEASE_WITHIN_S: Final = 1.0


class Sweeper:
    def __init__(self, leases: Leases, attachments: Attachments, interval_s: float, holder: str | None = None) -> None:
        self.leases = leases
        self.attachments = attachments
        self.interval_s = max(0.05, interval_s)
        self.ttl_ms = int(max(10.0, 3 * self.interval_s) * 1000)
        self.holder = holder or f"{NODE_ID}.{secrets.token_hex(4)}"
        self.passes = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.attachments.blobs is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(RoostError, TimeoutError):
            async with asyncio.timeout(RELEASE_WITHIN_S):
                await self.leases.release(LEASE, self.holder)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except RoostError as exc:
                log.warning("attachments: sweep not made: %s", exc)

    async def run_once(self) -> Sweep | None:
        """One pass if this node holds (or takes) the lease; None when another node holds it. Blobs on this node's own
        disk (not ``shared``) are swept by this node whatever the lease: no other node sees them."""
        blobs = self.attachments.blobs
        token = await self.leases.lease(LEASE, self.holder, self.ttl_ms) if blobs is not None and blobs.shared else 0
        if token is None:
            return None
        started = time.monotonic()
        done = await self.attachments.sweep()
        self.passes += 1
        log.info(
            "attachments: sweep over %d blobs: %d removed, %d sealed, %d failed, in %.2f s (lease token %d)",
            done.seen, done.removed, done.sealed, done.failed, time.monotonic() - started, token,
        )  # fmt: skip
        return done
