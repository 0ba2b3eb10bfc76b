"""Dispatch: what each client request does, once its turn has come, and the answer it gets.

One ``match`` over the typed client frames, each case a call into the service (or the connection's
``Follows``) and its reply (``ack``, ``ok``, ``history``, ``pong``) pushed to the outbox. Errors are
raised, not answered here: the session answers them with the request's ``ref`` (``Session._handle``).
When a request runs is the session's business (``Session.receive``: ordering and in-flight limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..ports import Appended
from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.errors import ProtocolError
from ..service import ChatService
from .follows import Follows
from .outbox import Outbox

__all__ = ["Dispatcher"]


class Dispatcher:
    def __init__(
        self,
        service: ChatService,
        follows: Follows,
        outbox: Outbox,
        user: str,
        encode: Callable[[Any], bytes] = frames.encode,
    ) -> None:
        self.service = service
        self.encode = encode
        """The connection's encoding of a frame (JSON, or MessagePack: ``roost.protocol.encoding``)."""
        self._metrics = service.metrics
        self.follows = follows
        self.outbox = outbox
        self.user = user

    async def dispatch(self, frame: frames.ClientFrame) -> None:
        user = self.user
        encode = self.encode
        match frame:
            case frames.Send(
                room=room, cmid=cmid, body=body, id=ref, reply_to=reply_to, thread=thread, attachments=files
            ):
                started = time.perf_counter()
                appended = await self.service.send(
                    user, room, cmid, body, reply_to=reply_to, thread=thread, attachments=files
                )
                m = appended.message
                self.outbox.push(encode(frames.Ack(ref, room, cmid, m.seq, m.ts, appended.duplicate)))
                self._metrics.send_ack_seconds.observe(time.perf_counter() - started)
            case frames.Edit(room=room, target=target, body=body, cmid=cmid, id=ref):
                self._ack(ref, await self.service.edit(user, room, target, body, cmid))
            case frames.Delete(room=room, target=target, cmid=cmid, erase=erase, id=ref):
                self._ack(ref, await self.service.delete(user, room, target, cmid, erase=erase))
            case frames.React(room=room, target=target, emoji=emoji, remove=remove, id=ref):
                self._ack(ref, await self.service.react(user, room, target, emoji, remove=remove))
            case frames.Subscribe(room=room, after=after, epoch=epoch, id=ref):
                await self.follows.subscribe(room, after, epoch, ref)
            case frames.Unsubscribe(room=room, id=ref):
                await self.follows.unfollow(room)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.History(room=room, after=after, before=before, limit=limit, id=ref, thread=thread):
                # Paced like a catch-up page [R-HIST-51]: read in the outbox's turn once what was queued before
                # has left, and not counted as live traffic, so a page (max_page_bytes and one message at
                # most) never makes the client a slow consumer, and one page is queued at a time.
                async with self.outbox.pacing:
                    await self.outbox.until_drained()
                    result = await self.service.history(
                        user, room, after=after, before=before, limit=limit, thread=thread
                    )
                    p = result.page.position
                    page = result.page.messages
                    reply = frames.HistoryPage(ref, room, page, result.has_more, p.epoch, p.head, p.first)
                    self.outbox.push(encode(reply), paced=True)
            case frames.Create(room=room, kind=kind, id=ref):
                await self.service.create_room(user, room, kind)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Dm(user=other, id=ref):
                self.outbox.push(encode(frames.Ok(ref, await self.service.dm(user, other))))
            case frames.Invite(room=room, user=other, id=ref):
                await self.service.invite(user, room, other)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Uninvite(room=room, user=other, id=ref):
                await self.service.revoke_invite(user, room, other)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Decline(room=room, id=ref):
                await self.service.decline(user, room)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Kick(room=room, user=other, id=ref):
                await self.service.kick(user, room, other)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Ban(room=room, user=other, id=ref):
                await self.service.ban(user, room, other)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Unban(room=room, user=other, id=ref):
                await self.service.unban(user, room, other)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Role(room=room, user=other, role=role, id=ref):
                await self.service.set_role(user, room, other, role)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Join(room=room, id=ref):
                await self.service.join(user, room)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Leave(room=room, id=ref):
                await self.follows.unfollow(room)
                await self.service.leave(user, room)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Typing(room=room):
                await self.service.typing(user, room)
            case frames.Read(room=room, seq=seq, id=ref):
                await self.service.mark_read(user, room, seq)
                self.outbox.push(encode(frames.Ok(ref, room)))
            case frames.Ping(id=ref):
                self.outbox.push(encode(frames.Pong(ref)))
            case frames.Auth():
                raise ProtocolError("already authenticated", Code.BAD_FRAME)

    def _ack(self, ref: str | None, appended: Appended) -> None:
        m = appended.message
        self.outbox.push(self.encode(frames.Ack(ref, m.room, m.cmid, m.seq, m.ts, appended.duplicate)))
