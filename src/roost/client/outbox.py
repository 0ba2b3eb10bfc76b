"""The outbox: a send stays here, and is re-sent with the same client message id, until its durable ack.

The server's idempotency turns every re-send into the one stored message, so the outbox can re-send on
every reconnect and after every retryable refusal (4429, 4500, 4503, each waiting longer) without ever
storing twice; a final refusal fails the send.
"""

from __future__ import annotations

import asyncio

from ..protocol import frames
from ..protocol.codes import Code
from .backoff import retry_delay
from .core import ClientCore, Outgoing
from .errors import RequestFailed

__all__ = ["Outbox"]


class Outbox(ClientCore):
    """``send`` (in ``Client``) puts a message here; an ack (``Link._on_frame``) takes it out."""

    @property
    def unacked(self) -> int:
        return len(self._outbox)

    def _transmit(self, out: Outgoing) -> None:
        if self._ws is None or self._ws.closed or out.future.done() or out.cmid not in self._outbox:
            return
        frame = frames.Send(
            room=out.room,
            cmid=out.cmid,
            body=out.body,
            id=f"send:{out.cmid}",
            reply_to=out.reply_to,
            thread=out.thread,
            attachments=out.attachments,
        )
        self._spawn(self._write_quietly(frame))

    def _on_send_error(self, cmid: str, frame: frames.Error) -> None:
        out = self._outbox.get(cmid)
        if out is None:
            return
        code = Code(frame.code)
        if code.retryable:
            out.refusals += 1
            delay = retry_delay(frame.retry_after_s, out.refusals)
            out.not_before = asyncio.get_running_loop().time() + delay
            asyncio.get_running_loop().call_later(delay, self._transmit, out)
            return
        del self._outbox[cmid]
        if not out.future.done():
            out.future.set_exception(RequestFailed(frame.reason, code))
