"""Token revocation: "every token of USER issued at or before T is void", honoured by every node at once.

Why a minimum issued-at per user and not a list of tokens: a server admin revoking a banned user does not
know which tokens exist (an identity provider issues them), and one number per user stays small.

Where it is kept: in the Directory every engine already shares, as the read position of the pseudo-user
``~roost`` in the pseudo-room ``~roost-revoked:<user>`` (``mark_read``: kept for any room name, never
lowered, on every engine; ``~`` is outside the room-name alphabet, so no user can name or read these).
Revocation only ever moves T forward, which is what ``mark_read`` guarantees. There is no cache on the node:
every authentication (each HTTP request, each WebSocket ``auth``) reads the user's T, one small lookup
(``readers`` of the user's own pseudo-room), so a revocation written through any node holds on every node
as soon as the write returns.

Open connections: the revoking node publishes ``{"user", "before"}`` on the bus channel
``~roost-revocations``; every node closes that user's connections whose token is void with 4401 when it
arrives (milliseconds). The bus is at-most-once, so each node also re-reads every revocation (one read of
``~roost``'s positions) every ``Limits.revocation_check_s`` (default 10 s) and closes what the bus missed.

A token without ``iat`` cannot show it is newer than a revocation: it is void once its user has one.
While the store is unreachable, authentication lets tokens through rather than fail (``Revocations.check``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from .auth import Identity
from .notices import NoticeWatch
from .ports import Bus, Directory
from .protocol.codes import Code
from .protocol.errors import AuthError, RoostError, Unavailable

__all__ = ["CHANNEL", "RevocationWatch", "Revocations"]

log = logging.getLogger(__name__)

ROOM_PREFIX: Final = "~roost-revoked:"
READER: Final = "~roost"
CHANNEL: Final = "~roost-revocations"


class _Notice(msgspec.Struct, frozen=True):
    user: str
    before: int


_encode: Final = msgspec.json.Encoder().encode
_decode: Final = msgspec.json.Decoder(_Notice).decode


def void(identity: Identity, before: int) -> bool:
    """Is a token with this identity revoked by "issued at or before ``before``"? (0: no revocation)."""
    return before > 0 and (identity.issued_at is None or identity.issued_at <= before)


class Revocations:
    """Write and read the per-user minimum issued-at in the Directory."""

    def __init__(self, directory: Directory, bus: Bus, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.bus = bus
        self.clock = clock
        self._warned = -1e9

    async def revoke(self, user: str) -> int:
        """Void every token of ``user`` issued up to now (this second included); return that time.

        The write is the revocation; the bus notice only hurries the closing of open connections."""
        before = await self.directory.mark_read(ROOM_PREFIX + user, READER, int(self.clock()))
        try:
            await self.bus.publish(CHANNEL, _encode(_Notice(user, before)))
        except RoostError as exc:  # the periodic check closes them instead
            log.warning("revocation of %s not announced on the bus (%s): closed at the next check", user, exc)
        return before

    async def before(self, user: str) -> int:
        """The user's revocation time in seconds since the epoch; 0 if never revoked."""
        return (await self.directory.readers(ROOM_PREFIX + user)).get(READER, 0)

    async def check(self, identity: Identity) -> None:
        """Raise 4401 if the token is revoked.

        With the store unreachable the token is let through (logged): authentication does not add a
        dependency on the store that clients did not have before (a reconnect during an outage, which then
        subscribes as soon as the store is back). The periodic check closes a void connection once the
        store answers again, within ``revocation_check_s``; every read and write needs the store anyway."""
        try:
            before = await self.before(identity.user)
        except Unavailable as exc:
            now = time.monotonic()
            if now - self._warned >= 10.0:
                self._warned = now
                log.warning("revocations unreadable (%s): tokens let through until the store answers", exc.reason)
            return
        if void(identity, before):
            raise AuthError("token revoked: sign in again", Code.UNAUTHORIZED)

    async def all(self) -> dict[str, int]:
        """Every revoked user and their time (for the periodic check of open connections)."""
        positions = await self.directory.read_positions(READER)
        return {room.removeprefix(ROOM_PREFIX): t for room, t in positions.items() if room.startswith(ROOM_PREFIX)}


class RevocationWatch(NoticeWatch):
    """On every node: hands revocations to ``enforce`` (close the void connections) as the bus announces
    them, and every ``interval_s`` from the Directory, for what the bus lost."""

    what = "revocation"

    def __init__(
        self,
        revocations: Revocations,
        enforce: Callable[[dict[str, int]], Awaitable[None]],
        interval_s: float,
        active: Callable[[], bool],
    ) -> None:
        super().__init__(revocations.bus, CHANNEL, interval_s, active)
        self.revocations = revocations
        self.enforce = enforce

    def on_notice(self, data: bytes) -> Awaitable[None] | None:
        try:
            notice = _decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("ignored a malformed revocation notice")
            return None
        return self.enforce({notice.user: notice.before})

    async def check(self) -> None:
        await self.enforce(await self.revocations.all())
